package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
)

func init() {
	caddy.RegisterModule(new(App))
	caddy.RegisterModule(SystemClock{})
}

// appID is the ID of the two_factor app.
const appID = "two_factor"

// App is the two_factor app. Caddy makes one per config: a handler loads it to learn which other handlers belong to the
// same config, so that two blocks of one config sharing a store are checked
// against each other while the handlers of the config being replaced are
// not; and once every handler is provisioned, Start notes which realms each
// store serves and warns of a realm the store holds that nothing serves any
// more (a renamed realm, whose users could no longer log in).
type App struct {
	// ClockRaw is the clock every handler of the config, and the stores
	// they open, read the time from: a module of the two_factor.clocks
	// namespace, such as {"source": "system"}. Default: the system clock.
	// (Tests use one they can move on.)
	ClockRaw json.RawMessage `json:"clock,omitempty" caddy:"namespace=two_factor.clocks inline_key=source"`

	now      func() time.Time
	mu       sync.Mutex
	handlers []*Handler
	// standalone marks the App of a handler provisioned outside any
	// config (by a test): nothing will start it.
	standalone bool
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: appID, New: func() caddy.Module { return new(App) }}
}

// Clock tells the time.
type Clock interface {
	Now() time.Time
}

// SystemClock is the clock two_factor.clocks.system: the system's time.
type SystemClock struct{}

// CaddyModule returns the Caddy module information.
func (SystemClock) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "two_factor.clocks.system", New: func() caddy.Module { return new(SystemClock) }}
}

// Now is the system's time.
func (SystemClock) Now() time.Time { return time.Now() }

// Provision loads the clock.
func (a *App) Provision(ctx caddy.Context) error {
	a.now = time.Now
	if a.ClockRaw == nil {
		return nil
	}
	m, err := ctx.LoadModule(a, "ClockRaw")
	if err != nil {
		return fmt.Errorf("loading the clock: %w", err)
	}
	a.now = m.(Clock).Now
	return nil
}

// add records a provisioned handler of the config.
func (a *App) add(h *Handler) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.handlers = append(a.handlers, h)
}

// Start opens the handlers' stores, records the realms each store serves
// and warns of the ones it holds that no handler of this config serves.
func (a *App) Start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	// The stores open here, not at Provision, which `caddy validate` runs
	// too. A failure (a wrong key, a locked folder, realms in conflict)
	// stops the config from starting; Caddy then cleans the handlers up.
	for _, h := range a.handlers {
		if err := h.open(context.Background()); err != nil {
			return err
		}
	}
	byStore := map[*sharedStore][]*Handler{}
	var order []*sharedStore
	for _, h := range a.handlers {
		if _, seen := byStore[h.shared]; !seen {
			order = append(order, h.shared)
		}
		byStore[h.shared] = append(byStore[h.shared], h)
	}
	for _, s := range order {
		hs := byStore[s]
		var served []string
		for _, h := range hs {
			if !slices.Contains(served, h.realm) {
				served = append(served, h.realm)
			}
		}
		unserved, err := noteRealms(context.Background(), s.Store, served)
		if err != nil {
			// The warning is advice; a store failure here shows again
			// on the first request, which fails closed.
			hs[0].logger.Error("reading the store's list of realms", zap.String("store", s.label), zap.Error(err))
			continue
		}
		for _, r := range unserved {
			hs[0].logger.Warn("the store holds a realm that no site serves: its users, enrolments and sessions are kept but unused; if a realm was renamed, name it as before",
				zap.String("store", s.label), zap.String("realm", r), zap.Strings("served", served))
		}
	}
	return nil
}

// realmsMeta is the store's list of the realms ever served.
const realmsMeta = "realms"

// noteRealms adds the served realms to the store's list and returns the
// listed realms that are not served. A store written before realms has no
// list: its records are the default realm's, which is listed if it holds
// any enrolment or user.
func noteRealms(ctx context.Context, db store.Store, served []string) ([]string, error) {
	var known []string
	raw, err := db.Meta(ctx, realmsMeta)
	switch {
	case errors.Is(err, store.ErrNotFound):
		def, err := store.InRealm(db, store.DefaultRealm)
		if err != nil {
			return nil, err
		}
		n, err := def.CountEnrolled(ctx)
		if err != nil {
			return nil, err
		}
		users, err := def.Users(ctx)
		if err != nil {
			return nil, err
		}
		if n > 0 || len(users) > 0 {
			known = append(known, store.DefaultRealm)
		}
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(raw, &known); err != nil {
			return nil, errors.New("the list of realms is not JSON")
		}
	}
	var unserved []string
	for _, r := range known {
		if !slices.Contains(served, r) {
			unserved = append(unserved, r)
		}
	}
	all := slices.Clone(known)
	for _, r := range served {
		if !slices.Contains(all, r) {
			all = append(all, r)
		}
	}
	if raw == nil || len(all) != len(known) {
		slices.Sort(all)
		b, _ := json.Marshal(all)
		if err := db.PutMeta(ctx, realmsMeta, b); err != nil {
			return nil, err
		}
	}
	return unserved, nil
}

// Stop implements caddy.App.
func (*App) Stop() error { return nil }

var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
	_ Clock             = SystemClock{}
)

// configOf returns the two_factor app of the config ctx belongs to, which
// stands for that config. A context made outside of any config (by a test
// that provisions a handler by hand) makes Caddy's ctx.App panic on its
// missing config: such a handler is a config of its own.
func configOf(ctx caddy.Context) (app *App, err error) {
	defer func() {
		if recover() != nil {
			app, err = &App{standalone: true, now: time.Now}, nil
		}
	}()
	v, err := ctx.App(appID)
	if err != nil {
		return nil, err
	}
	return v.(*App), nil
}
