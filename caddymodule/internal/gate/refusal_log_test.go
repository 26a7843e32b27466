package gate

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestRefusalSaysWhatFailed: a 503 page is logged as the store's failure
// only when the store failed; a client that went away is no error, and
// any other failure is logged as what it is.
func TestRefusalSaysWhatFailed(t *testing.T) {
	h, _ := newTestGate(t)
	core, logs := observer.New(zapcore.DebugLevel)
	h.logger = zap.New(core)
	cases := []struct {
		err   error
		level zapcore.Level
		msg   string
	}{
		{&store.Error{Op: "enable TOTP", Err: errors.New("disk on fire")}, zapcore.ErrorLevel, "store failed; refusing the request"},
		{fmt.Errorf("waiting for a hashing slot: %w", context.Canceled), zapcore.InfoLevel, "the client went away before the request was done"},
		{&store.Error{Op: "read session", Err: context.Canceled}, zapcore.InfoLevel, "the client went away before the request was done"},
		{errors.New("generating the QR code: out of memory"), zapcore.ErrorLevel, "could not complete the request; refusing it"},
	}
	for _, c := range cases {
		rec := httptest.NewRecorder()
		_ = h.unavailable(rec, c.err)
		entries := logs.TakeAll()
		if rec.Code != 503 || len(entries) != 1 || entries[0].Level != c.level || entries[0].Message != c.msg {
			t.Errorf("%v: got %d and log %+v, want 503 and %s %q", c.err, rec.Code, entries, c.level, c.msg)
		}
	}
}
