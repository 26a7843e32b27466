package caddymodule

import (
	"context"
	"errors"
	"time"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/gate"
	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// The collectors live as long as the process, so counters do not restart
// at a config reload; each config's metrics registry gets them at
// provisioning.
// metricEnrolled counts the enrolled users of the open stores at each
// scrape; the gate's counters are gate.Collectors.
var metricEnrolled = &enrolledCollector{desc: prometheus.NewDesc("caddy_two_factor_enrolled_users",
	"Users with two-factor authentication on, in the stores this Caddy has open.", nil, nil)}

// registerMetrics adds the collectors to a config's registry; the second
// handler of a config finds them there already.
func registerMetrics(reg *prometheus.Registry) {
	if reg == nil {
		return
	}
	for _, c := range append(gate.Collectors(), metricEnrolled) {
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
