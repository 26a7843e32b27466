package gate

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ui"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/users"
	"go.uber.org/zap"
)

// errorPage renders a page that explains a refusal.
// title and message are message keys.
func (g *Gate) errorPage(w http.ResponseWriter, status int, title, message string) error {
	return g.ui.Render(w, status, "error", ui.Page{
		Title: title, Message: message,
		BackLink: g.prefix + "/security", BackText: "error.back_security",
	})
}

// throttled refuses an attempt while the account or client must wait. Its
// link leads back to the step that was refused (sub, under the prefix, with
// the catalogue key of the link's text): at the code step the session is
// still pending, so the way back is the code form, not the password form.
func (g *Gate) throttled(w http.ResponseWriter, wait time.Duration, sub, backText string) error {
	w.Header().Set("Retry-After", retryAfter(wait))
	return g.ui.Render(w, http.StatusTooManyRequests, "error", ui.Page{
		Title:    "error.throttled_title",
		Message:  "error.throttled",
		Wait:     wait,
		BackLink: g.prefix + sub, BackText: backText,
	})
}

// unavailable is the page for a store that cannot be read or written, or
// for a password check refused because hashing is over its CPU budget.
func (g *Gate) unavailable(w http.ResponseWriter, err error) error {
	if wait, ok := users.OverBudget(err); ok {
		return g.busy(w, wait)
	}
	g.logRefusal(err)
	return g.ui.Render(w, http.StatusServiceUnavailable, "error", ui.Page{
		Title:    "error.unavailable_title",
		Message:  "error.unavailable",
		BackLink: g.prefix + "/login", BackText: "error.back_login",
	})
}

// logRefusal says what failed when a request is refused with 503: the
// client went away (not the server's fault), the store, or something else
// (generating a QR code or a random value, sealing a secret: the error
// says which).
func (g *Gate) logRefusal(err error) {
	var se *store.Error
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		g.logger.Info("the client went away before the request was done", zap.Error(err))
	case errors.As(err, &se):
		g.logger.Error("store failed; refusing the request", zap.String("operation", se.Op), zap.Error(err))
	default:
		g.logger.Error("could not complete the request; refusing it", zap.Error(err))
	}
}

// busy refuses a password check that would wait too long for the hashing
// budget: nothing was checked, nothing counts against the account.
func (g *Gate) busy(w http.ResponseWriter, wait time.Duration) error {
	metricHashBudget.Inc()
	if g.users.Budget().LogDue() {
		g.logger.Warn("password hashing is over its CPU budget (hash_cpu); refusing logins until it refills",
			zap.Duration("retry_after", wait))
	}
	w.Header().Set("Retry-After", retryAfter(wait))
	return g.ui.Render(w, http.StatusServiceUnavailable, "error", ui.Page{
		Title:    "error.busy_title",
		Message:  "error.busy",
		Wait:     wait,
		BackLink: g.prefix + "/login", BackText: "error.back_login",
	})
}

// denyCrossSite answers a state-changing request from another site.
func (g *Gate) denyCrossSite(w http.ResponseWriter, r *http.Request) {
	g.ui.SecurityHeaders(w)
	_ = g.errorPage(w, http.StatusForbidden, "error.cross_site_title", "error.cross_site")
}
