package caddymodule

import (
	"context"
	"errors"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// The collectors live as long as the process, so counters do not restart
// at a config reload; each config's metrics registry gets them at
// provisioning.
var (
	metricLogins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "two_factor", Name: "logins_total",
		Help: "Password steps of the login, by outcome (ok, failed). Attempts refused while throttled are counted in caddy_two_factor_throttled_total.",
	}, []string{"outcome"})
	metricCodes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "two_factor", Name: "codes_total",
		Help: "One-time codes checked (at login and on the Security pages), by method (totp, backup) and outcome (ok, failed).",
	}, []string{"method", "outcome"})
	metricThrottled = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "two_factor", Name: "throttled_total",
		Help: "Attempts refused with 429 because the account or the client must wait, by factor (password, totp, backup).",
	}, []string{"factor"})
	metricHashBudget = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "two_factor", Name: "hash_budget_refused_total",
		Help: "Password checks refused with 503 because password hashing was over its CPU budget (hash_cpu).",
	})
	metricBackupUsed = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "two_factor", Name: "backup_codes_used_total",
		Help: "Backup codes used up.",
	})
	metricEnrolled = &enrolledCollector{desc: prometheus.NewDesc("caddy_two_factor_enrolled_users",
		"Users with two-factor authentication on, in the stores this Caddy has open.", nil, nil)}
)

func init() {
	// Every series exists from the start, at zero.
	for _, o := range []string{"ok", "failed"} {
		metricLogins.WithLabelValues(o)
		for _, m := range []string{"totp", "backup"} {
			metricCodes.WithLabelValues(m, o)
		}
	}
	for _, f := range []factor{factorPassword, factorTOTP, factorBackup} {
		metricThrottled.WithLabelValues(string(f))
	}
}

// registerMetrics adds the collectors to a config's registry; the second
// handler of a config finds them there already.
func registerMetrics(reg *prometheus.Registry) {
	if reg == nil {
		return
	}
	for _, c := range []prometheus.Collector{metricLogins, metricCodes, metricThrottled, metricHashBudget, metricBackupUsed, metricEnrolled} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				caddy.Log().Named("http.handlers.two_factor").Error("registering metrics", zap.Error(err))
			}
		}
	}
}

// enrolledCollector counts, at each scrape, the users with the second
// factor on: a scan of keys in each open store, no values read.
type enrolledCollector struct {
	desc *prometheus.Desc
}

func (c *enrolledCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *enrolledCollector) Collect(ch chan<- prometheus.Metric) {
	var open []*sharedStore
	stores.Range(func(_, v any) bool {
		if s, ok := v.(*sharedStore); ok {
			open = append(open, s)
		}
		return true
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	total := 0
	for _, s := range open {
		n, err := s.CountEnrolled(ctx)
		if err != nil {
			// A store closing during a reload: its successor counts.
			continue
		}
		total += n
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(total))
}
