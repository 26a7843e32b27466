package gate

import (
	"github.com/prometheus/client_golang/prometheus"
)

// The counters of the gate's events. They live as long as the process, so counters do not restart
// at a config reload; each config's metrics registry gets them at
// provisioning.
var (
	metricLogins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "two_factor", Name: "logins_total",
		Help: "Password steps of the login, by outcome (ok, failed). Attempts refused while throttled are counted in caddy_two_factor_throttled_total.",
	}, []string{"outcome"})
	metricCodes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "two_factor", Name: "codes_total",
		Help: "One-time codes and security-key assertions checked (at login and on the Security pages), by method (totp, backup, webauthn) and outcome (ok, failed).",
	}, []string{"method", "outcome"})
	metricThrottled = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "two_factor", Name: "throttled_total",
		Help: "Attempts refused with 429 because the account or the client must wait, by factor (password, totp, backup, webauthn).",
	}, []string{"factor"})
	metricHashBudget = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "two_factor", Name: "hash_budget_refused_total",
		Help: "Password checks refused with 503 because password hashing was over its CPU budget (hash_cpu).",
	})
	metricBackupUsed = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "two_factor", Name: "backup_codes_used_total",
		Help: "Backup codes used up.",
	})
	metricStepUp = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "two_factor", Name: "step_up_total",
		Help: "Requests of step_up and require_two_factor paths that needed more (step_up_required: a fresh code; two_factor_required: a second factor turned on), and step-up codes by outcome (ok, failed).",
	}, []string{"outcome"})
)

func init() {
	// Every series exists from the start, at zero.
	for _, o := range []string{"ok", "failed"} {
		metricLogins.WithLabelValues(o)
		for _, m := range []string{"totp", "backup"} {
			metricCodes.WithLabelValues(m, o)
		}
	}
	for _, o := range []string{ReasonStepUp, ReasonTwoFactor, "ok", "failed"} {
		metricStepUp.WithLabelValues(o)
	}
	for _, f := range []factor{factorPassword, factorTOTP, factorBackup} {
		metricThrottled.WithLabelValues(string(f))
	}
}

// Collectors are the gate's counters, for a metrics registry.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{metricLogins, metricCodes, metricThrottled, metricHashBudget, metricBackupUsed, metricKeys, metricStepUp}
}
