package caddymodule

import (
	"context"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
)

// The store methods of the recent activity, made to fail like the others
// (TestFaultyStoreWrapsEveryMethod). Keeping an event is best effort: its
// failure is logged and the request goes on as if it had not failed
// (bestEffort, in the fault matrix); reading the events for the Security
// page fails the page like any store read.
func init() {
	wrappedMethods = append(wrappedMethods, "AddEvent", "Events")
	bestEffort["AddEvent"] = true
}

// bestEffort are the store methods whose failure must not change a
// request's answer.
var bestEffort = map[string]bool{}

func (f *faultyStore) AddEvent(ctx context.Context, u string, e store.Event) error {
	if err := f.call("AddEvent"); err != nil {
		return err
	}
	return f.Store.AddEvent(ctx, u, e)
}

func (f *faultyStore) Events(ctx context.Context, u string, limit int) ([]store.Event, error) {
	if err := f.call("Events"); err != nil {
		return nil, err
	}
	return f.Store.Events(ctx, u, limit)
}

func (b *brokenStore) AddEvent(ctx context.Context, u string, e store.Event) error {
	if err := b.fail(); err != nil {
		return err
	}
	return b.Store.AddEvent(ctx, u, e)
}

func (b *brokenStore) Events(ctx context.Context, u string, limit int) ([]store.Event, error) {
	if err := b.fail(); err != nil {
		return nil, err
	}
	return b.Store.Events(ctx, u, limit)
}

func (c *countingStore) AddEvent(ctx context.Context, u string, e store.Event) error {
	c.writes.Add(1)
	return c.Store.AddEvent(ctx, u, e)
}

func (c *countingStore) Events(ctx context.Context, u string, limit int) ([]store.Event, error) {
	c.reads.Add(1)
	return c.Store.Events(ctx, u, limit)
}
