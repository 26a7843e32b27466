package caddymodule

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/crypto/argon2"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ui"
)

// Defaults of the argon2id cost for the passwords of store users: those of
// `caddy hash-password --algorithm argon2id`.
const (
	DefaultArgon2idTime    = 1
	DefaultArgon2idMemory  = 46 * 1024 // KiB
	DefaultArgon2idThreads = 1
	argon2idKeyLen         = 32
	argon2idSaltLen        = 16
)

// Limits of a new password: NIST SP 800-63B asks for at least 8 characters
// and no composition rules; the upper bound keeps hashing cheap to ask for.
const (
	minPasswordChars = 8
	maxPasswordBytes = 1024
)

// argon2Params is the cost of argon2id hashes made for store users.
type argon2Params struct {
	time, memory uint32 // iterations; KiB
	threads      uint8
}

// hash makes an argon2id hash of password in the PHC text form that
// `caddy hash-password` prints and caddyauth.Argon2idHash compares. (Caddy's
// own Argon2idHash cannot hash with chosen parameters from outside its
// package, so the hashing is here; the comparison is Caddy's.)
func (p argon2Params) hash(password string) (string, error) {
	salt := make([]byte, argon2idSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("argon2id salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.time, p.memory, p.threads, argon2idKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.memory, p.time, p.threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// current reports whether a stored hash is argon2id with exactly these
// parameters; any other (bcrypt, other parameters) is rehashed at the next
// successful login.
func (p argon2Params) current(stored string) bool {
	_, key, err := caddyauth.DecodeHash([]byte(stored))
	want := fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$", argon2.Version, p.memory, p.time, p.threads)
	return err == nil && len(key) == argon2idKeyLen && strings.HasPrefix(stored, want)
}

// decoy is a hash of a random password with these parameters: what an
// unknown name is compared against when every user is in the store.
func (p argon2Params) decoy() (passwordHash, error) {
	pw := make([]byte, 18)
	if _, err := rand.Read(pw); err != nil {
		return passwordHash{}, err
	}
	h, err := p.hash(base64.RawStdEncoding.EncodeToString(pw))
	if err != nil {
		return passwordHash{}, err
	}
	return parsePasswordHash(h)
}

// Errors of a new password that does not meet the rules.
var (
	errPasswordShort = fmt.Errorf("the password must have at least %d characters", minPasswordChars)
	errPasswordLong  = fmt.Errorf("the password must be at most %d bytes", maxPasswordBytes)
	errPasswordUTF8  = errors.New("the password is not valid UTF-8 text")
)

// checkNewPassword applies the rules for a password a user or an operator
// sets.
func checkNewPassword(pw string) error {
	switch {
	case !utf8.ValidString(pw):
		return errPasswordUTF8
	case len(pw) > maxPasswordBytes:
		return errPasswordLong
	case utf8.RuneCountInString(pw) < minPasswordChars:
		return errPasswordShort
	}
	return nil
}

// newPasswordErrorKey is the catalogue key that explains why a new
// password was refused.
func newPasswordErrorKey(err error) string {
	switch err {
	case errPasswordShort:
		return "password.error_short"
	case errPasswordLong:
		return "password.error_long"
	}
	return "password.error_utf8"
}

// hashPassword hashes a new password with the configured parameters,
// taking a hashing slot and the hashing budget like a login does.
func (h *Handler) hashPassword(ctx context.Context, password string) (string, error) {
	return h.hashNew(ctx, h.users.budget, password)
}

// hashForOperator hashes a password an operator sets through the admin
// API: it takes a hashing slot but not the budget, so that adding or
// resetting a user works during a flood of logins.
func (h *Handler) hashForOperator(ctx context.Context, password string) (string, error) {
	return h.hashNew(ctx, nil, password)
}

func (h *Handler) hashNew(ctx context.Context, budget *hashBudget, password string) (string, error) {
	var hash string
	err := h.users.withHash(ctx, budget, func() error {
		var err error
		hash, err = h.argon2.hash(password)
		return err
	})
	return hash, err
}

// rehash upgrades a store user's password hash to the configured
// parameters after the password proved right. A failure is logged and the
// login goes on: the old hash still works.
func (h *Handler) rehash(ctx context.Context, acct *account, password string) {
	if acct.origin != store.OriginStore || h.argon2.current(acct.stored) {
		return
	}
	newHash, err := h.hashPassword(ctx, password)
	if err != nil {
		h.logger.Warn("rehashing a password", zap.String("user", acct.name), zap.Error(err))
		return
	}
	done, err := h.db.RehashPassword(ctx, acct.key, acct.stored, newHash)
	if err != nil {
		h.logger.Warn("rehashing a password", zap.String("user", acct.name), zap.Error(err))
		return
	}
	if done {
		h.logger.Info("password hash upgraded to the configured argon2id parameters", zap.String("user", acct.name))
	}
}

// passwordView is the change-password page.
func (h *Handler) passwordView(acct *account, a store.Account) ui.Page {
	return ui.Page{
		Title: "password.title", User: acct.name, Enabled: a.Enabled(),
		PasswordChangeable: acct.origin == store.OriginStore, MinPassword: minPasswordChars,
	}
}

func (h *Handler) passwordPage(w http.ResponseWriter, r *http.Request) error {
	_, acct, a, ok, err := h.settingsSession(w, r)
	if !ok {
		return err
	}
	return h.ui.Render(w, http.StatusOK, "password", h.passwordView(acct, a))
}

// changePassword sets a new password for a user kept in the store: it
// needs the current password, and a code when two-factor authentication
// is on. Every other session of the user ends; this one goes on under a
// new ID. A configured user's password is in the configuration, so the
// page only says so.
func (h *Handler) changePassword(w http.ResponseWriter, r *http.Request) error {
	rec, acct, a, ok, err := h.settingsSession(w, r)
	if !ok {
		return err
	}
	p := h.passwordView(acct, a)
	if acct.origin != store.OriginStore {
		return h.ui.Render(w, http.StatusForbidden, "password", p)
	}
	newPassword := r.PostForm.Get("new_password")
	if err := checkNewPassword(newPassword); err != nil {
		p.Error = newPasswordErrorKey(err)
		return h.ui.Render(w, http.StatusBadRequest, "password", p)
	}
	if newPassword != r.PostForm.Get("confirm_password") {
		p.Error = "password.error_mismatch"
		return h.ui.Render(w, http.StatusBadRequest, "password", p)
	}
	var v verdict
	if a.Enabled() {
		v, err = h.confirmBoth(r, stepPassword, acct, a, r.PostForm.Get("current_password"), r.PostForm.Get("code"))
	} else {
		v, err = h.confirmPassword(r, stepPassword, acct, r.PostForm.Get("current_password"))
	}
	if err != nil {
		if r.Context().Err() != nil {
			return err
		}
		return h.unavailable(w, err)
	}
	if v.wait > 0 {
		return h.throttled(w, v.wait, "/security", "error.back_security")
	}
	if !v.ok {
		p.Error = v.failure()
		return h.ui.Render(w, http.StatusUnauthorized, "password", p)
	}
	newHash, err := h.hashPassword(r.Context(), newPassword)
	if err != nil {
		if r.Context().Err() != nil {
			return err
		}
		return h.unavailable(w, err)
	}
	ended, err := h.db.SetPassword(r.Context(), acct.key, newHash, h.now(), rec.Key)
	if errors.Is(err, store.ErrNoUser) {
		// Deleted meanwhile: the session is over.
		if err := h.sessions.End(w, r); err != nil {
			return h.unavailable(w, err)
		}
		return h.seeOther(w, r, h.Prefix+"/login")
	}
	if err != nil {
		return h.unavailable(w, err)
	}
	if err := h.sessions.Start(w, r, rec); err != nil {
		return h.unavailable(w, err)
	}
	h.auditRequest(r, zapcore.InfoLevel, evPasswordChanged, "password changed", zap.String("user", acct.name),
		zap.String("by", "user"), zap.Int("sessions_ended", ended))
	view := h.securityView(acct, a)
	view.Notice = "password.changed"
	return h.ui.Render(w, http.StatusOK, "security", view)
}
