package caddymodule

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
func (h *Handler) errorPage(w http.ResponseWriter, status int, title, message string) error {
	return h.ui.Render(w, status, "error", ui.Page{
		Title: title, Message: message,
		BackLink: h.Prefix + "/security", BackText: "error.back_security",
	})
}

// throttled refuses an attempt while the account or client must wait. Its
// link leads back to the step that was refused (sub, under the prefix, with
// the catalogue key of the link's text): at the code step the session is
// still pending, so the way back is the code form, not the password form.
func (h *Handler) throttled(w http.ResponseWriter, wait time.Duration, sub, backText string) error {
	w.Header().Set("Retry-After", retryAfter(wait))
	return h.ui.Render(w, http.StatusTooManyRequests, "error", ui.Page{
		Title:    "error.throttled_title",
		Message:  "error.throttled",
		Wait:     wait,
		BackLink: h.Prefix + sub, BackText: backText,
	})
}

// unavailable is the page for a store that cannot be read or written, or
// for a password check refused because hashing is over its CPU budget.
func (h *Handler) unavailable(w http.ResponseWriter, err error) error {
	if wait, ok := users.OverBudget(err); ok {
		return h.busy(w, wait)
	}
	h.logRefusal(err)
	return h.ui.Render(w, http.StatusServiceUnavailable, "error", ui.Page{
		Title:    "error.unavailable_title",
		Message:  "error.unavailable",
		BackLink: h.Prefix + "/login", BackText: "error.back_login",
	})
}

// logRefusal says what failed when a request is refused with 503: the
// client went away (not the server's fault), the store, or something else
// (generating a QR code or a random value, sealing a secret: the error
// says which).
func (h *Handler) logRefusal(err error) {
	var se *store.Error
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		h.logger.Info("the client went away before the request was done", zap.Error(err))
	case errors.As(err, &se):
		h.logger.Error("store failed; refusing the request", zap.String("operation", se.Op), zap.Error(err))
	default:
		h.logger.Error("could not complete the request; refusing it", zap.Error(err))
	}
}

// busy refuses a password check that would wait too long for the hashing
// budget: nothing was checked, nothing counts against the account.
func (h *Handler) busy(w http.ResponseWriter, wait time.Duration) error {
	metricHashBudget.Inc()
	if h.users.Budget().LogDue() {
		h.logger.Warn("password hashing is over its CPU budget (hash_cpu); refusing logins until it refills",
			zap.Duration("retry_after", wait))
	}
	w.Header().Set("Retry-After", retryAfter(wait))
	return h.ui.Render(w, http.StatusServiceUnavailable, "error", ui.Page{
		Title:    "error.busy_title",
		Message:  "error.busy",
		Wait:     wait,
		BackLink: h.Prefix + "/login", BackText: "error.back_login",
	})
}

// denyCrossSite answers a state-changing request from another site.
func (h *Handler) denyCrossSite(w http.ResponseWriter, r *http.Request) {
	h.ui.SecurityHeaders(w)
	_ = h.errorPage(w, http.StatusForbidden, "error.cross_site_title", "error.cross_site")
}
