package caddymodule

import "github.com/caddyserver/caddy/v2"

func init() {
	caddy.RegisterModule(App{})
}

// appID is the ID of the two_factor app.
const appID = "two_factor"

// App is the two_factor app. It has no configuration and does nothing when
// started: a handler loads it to learn which other handlers belong to the
// same config (Caddy makes one App per config), so that two blocks of one
// config sharing a store are checked against each other while the handlers
// of the config being replaced are not.
type App struct {
	// The App must not be zero-sized: Go may give every new zero-sized
	// value the same address, and handlers tell configs apart by it.
	_ byte
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: appID, New: func() caddy.Module { return new(App) }}
}

// Start implements caddy.App.
func (*App) Start() error { return nil }

// Stop implements caddy.App.
func (*App) Stop() error { return nil }

var _ caddy.App = (*App)(nil)

// configOf returns the two_factor app of the config ctx belongs to, which
// stands for that config. A context made outside of any config (by a test
// that provisions a handler by hand) makes Caddy's ctx.App panic on its
// missing config: such a handler is a config of its own.
func configOf(ctx caddy.Context) (app any, err error) {
	defer func() {
		if recover() != nil {
			app, err = new(App), nil
		}
	}()
	return ctx.App(appID)
}
