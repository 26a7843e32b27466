package gate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"slices"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/agent"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/audit"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ui"
)

// The Security page lists the user's live sessions, and ends one of them
// or all but the request's own.
//
// A session is named in those forms by a handle: the first 16 bytes of
// SHA-256 over a label and the session's store key (itself the SHA-256 of
// the cookie's ID), in unpadded base64url. It is not the cookie's ID and
// does not lead to it, and it is not the store key either, so a handle
// seen on a screen or in a log is neither a way into the session nor the
// name of a record. It needs no secret: a handle is looked up only among
// the sessions of the request's own user in the gate's realm, so knowing
// the handle of another user's session (or guessing one) ends nothing.

// handleSize is how many bytes of the hash a handle keeps.
const handleSize = 16

// Handle returns the handle of a session's store key or of a remembered
// browser's token hash, as the pages name them. kind keeps the two apart.
func Handle(kind string, key []byte) string {
	h := sha256.New()
	h.Write([]byte("caddy-two-factor handle\x00" + kind + "\x00"))
	h.Write(key)
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:handleSize])
}

// stamp notes who the client says it is, and where it is, in a new
// session's record.
func (g *Gate) stamp(r *http.Request, rec *store.Session) {
	rec.Agent = store.Clip(r.UserAgent(), store.MaxAgentLen)
	rec.Addr = store.Clip(g.clientIP(r), store.MaxAddrLen)
}

// sessionRows lists the user's live sessions at the full stage or owing
// only the enrolment, newest first, marking rec's.
func (g *Gate) sessionRows(ctx context.Context, rec *store.Session) ([]ui.SessionRow, error) {
	all, err := g.db.UserSessions(ctx, rec.User)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(all, func(x, y store.Session) int { return y.Created.Compare(x.Created) })
	rows := make([]ui.SessionRow, 0, len(all))
	for _, s := range all {
		if s.Stage == store.StagePassword || s.Origin != rec.Origin {
			continue // owes the code: not signed in yet
		}
		b, sys := agent.Parse(s.Agent)
		rows = append(rows, ui.SessionRow{
			Handle: Handle("session", s.Key), Browser: b, System: sys, Addr: s.Addr,
			SignedIn: ui.NewTimeText(s.Created), LastSeen: ui.NewTimeText(s.Seen),
			Current: bytes.Equal(s.Key, rec.Key),
		})
	}
	return rows, nil
}

// fillSecurity adds the lists of the Security page to p.
func (g *Gate) fillSecurity(w http.ResponseWriter, r *http.Request, rec *store.Session, p *ui.Page) error {
	p.Remember = g.rememberText(w)
	rows, err := g.sessionRows(r.Context(), rec)
	if err != nil {
		return err
	}
	p.Sessions = rows
	return g.fillBrowsers(r, rec, p)
}

// findSession returns the store key of the user's live session with that
// handle, or nil.
func (g *Gate) findSession(ctx context.Context, rec *store.Session, handle string) ([]byte, error) {
	if handle == "" {
		return nil, nil
	}
	all, err := g.db.UserSessions(ctx, rec.User)
	if err != nil {
		return nil, err
	}
	for _, s := range all {
		if s.Origin == rec.Origin && Handle("session", s.Key) == handle {
			return s.Key, nil
		}
	}
	return nil, nil
}

// endSession ends one of the user's sessions ("Log out" on a row of the
// list). Its own ends as a logout does.
func (g *Gate) endSession(w http.ResponseWriter, r *http.Request) error {
	rec, acct, a, ok, err := g.settingsSession(w, r)
	if !ok {
		return err
	}
	key, err := g.findSession(r.Context(), rec, r.PostForm.Get("session"))
	if err != nil {
		return g.unavailable(w, err)
	}
	if key == nil {
		// Gone meanwhile, or never one of this user's.
		p, err := g.securityPageOf(w, r, rec, acct, a)
		if err != nil {
			return g.unavailable(w, err)
		}
		p.Error = "sessions.not_found"
		return g.ui.Render(w, http.StatusNotFound, "security", p)
	}
	if bytes.Equal(key, rec.Key) {
		if err := g.sessions.End(w, r); err != nil {
			return g.unavailable(w, err)
		}
		g.auditRequest(r, zapcore.InfoLevel, audit.EvSessionEnded, "session ended by its user", zap.String("user", acct.Name), zap.Bool("own", true))
		return g.seeOther(w, r, g.prefix+"/login")
	}
	if err := g.db.DeleteSession(r.Context(), key); err != nil {
		return g.unavailable(w, err)
	}
	g.auditRequest(r, zapcore.InfoLevel, audit.EvSessionEnded, "session ended by its user", zap.String("user", acct.Name), zap.Bool("own", false))
	return g.noticeSecurity(w, r, rec, "sessions.ended")
}

// endOtherSessions ends every session of the user but the request's own,
// in one store write (the next session generation, this one kept).
func (g *Gate) endOtherSessions(w http.ResponseWriter, r *http.Request) error {
	rec, acct, _, ok, err := g.settingsSession(w, r)
	if !ok {
		return err
	}
	n, err := g.db.DeleteUserSessions(r.Context(), rec.User, rec.Key)
	if err != nil {
		return g.unavailable(w, err)
	}
	g.auditRequest(r, zapcore.InfoLevel, audit.EvSessionsRevoked, "other sessions ended by their user", zap.String("user", acct.Name), zap.Int("sessions_ended", n), zap.String("by", "user"))
	return g.noticeSecurity(w, r, rec, "sessions.others_ended")
}

// noticeSecurity leaves a notice for the Security page and goes there
// (POST-redirect-GET).
func (g *Gate) noticeSecurity(w http.ResponseWriter, r *http.Request, rec *store.Session, notice string) error {
	rec.Notice = notice
	if err := g.sessions.Update(r.Context(), rec); err != nil {
		return g.unavailable(w, err)
	}
	return g.seeOther(w, r, g.prefix+"/security")
}
