package gate

import (
	"context"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ui"
)

// Recent activity: the security events of a user that the Security page
// lists (logins, wrong codes, changes of the second factor and of the
// password, sessions ended), kept per user ID in the store for 30 days,
// at most store.MaxEventsPerUser of them.
//
// Writing one never fails the request: the change it records is made (or
// refused) in its own transaction before, and the audit log has it too.
// A failure to write one is logged as an error. Reading them for the page
// is a store read like the account's: its failure is the page's (503).

// activityShown bounds the events the Security page lists.
const activityShown = 50

// event keeps e in the recent activity of user (the user's key), with the
// time, the client's address and a summary of its browser.
func (g *Gate) event(r *http.Request, user string, e store.Event) {
	e.Time = g.now()
	e.Addr = g.clientIP(r)
	e.Agent = describeUserAgent(r.UserAgent())
	if err := g.db.AddEvent(context.WithoutCancel(r.Context()), user, e); err != nil {
		g.logger.Error("keeping a security event in the user's recent activity failed; the request goes on",
			zap.String("event", e.Kind), zap.Error(err))
	}
}

// withActivity puts the user's recent activity on the Security page p.
func (g *Gate) withActivity(ctx context.Context, p *ui.Page, user string) error {
	events, err := g.db.Events(ctx, user, activityShown)
	if err != nil {
		return err
	}
	p.Activity = make([]ui.ActivityItem, 0, len(events))
	for _, e := range events {
		p.Activity = append(p.Activity, activityItem(e))
	}
	return nil
}

// activityItem is an event as the page shows it.
func activityItem(e store.Event) ui.ActivityItem {
	at := e.Time.UTC()
	it := ui.ActivityItem{
		Kind: e.Kind, By: e.By, Step: e.Step, Method: e.Method,
		When: at.Format("2006-01-02 15:04 UTC"), ISO: at.Format(time.RFC3339),
		Address: e.Addr, Browser: e.Agent, Count: e.Count,
	}
	it.ClockMinutes, it.ClockAhead = driftMinutes(e.DriftSeconds)
	return it
}
