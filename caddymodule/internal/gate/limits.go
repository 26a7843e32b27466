package gate

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
)

// factor names a separately counted kind of guess.
type factor string

const (
	factorPassword factor = store.FactorPassword
	factorTOTP     factor = store.FactorTOTP
	factorBackup   factor = store.FactorBackup
)

// reserve counts an attempt at the factor against the account (its
// canonical name, so every spelling shares one count) and the client's
// address (as Caddy resolves it, behind trusted_proxies only), in the
// handler's realm, before anything is checked. A wait above zero means the
// attempt is refused and nothing was counted. Every reservation must be
// settled: see settle.
func (g *Gate) reserve(r *http.Request, f factor, account string) (store.Reservation, time.Duration, error) {
	return g.attempts.Reserve(r.Context(), store.Guess{
		Realm: g.realm, Factor: string(f), Account: account, Client: g.clientIP(r),
	})
}

// settle records what came of a reserved attempt: a failure stays counted,
// a success clears the account's count of the factor (the client's is left
// to fade, so that an attacker's own account cannot clear it), and an
// attempt that was never checked is taken back. It runs even when the
// client has gone away.
func (g *Gate) settle(r *http.Request, res store.Reservation, o store.Outcome) {
	if err := g.attempts.Settle(context.WithoutCancel(r.Context()), res, o); err != nil {
		g.logger.Error("settling an attempt failed", zap.Error(err))
	}
}

// retryAfter renders a wait as whole seconds for the Retry-After header.
func retryAfter(d time.Duration) string {
	return strconv.FormatInt(int64(math.Ceil(d.Seconds())), 10)
}
