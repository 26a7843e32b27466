package caddymodule

import (
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/backupcodes"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/otp"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ui"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/users"
)

// pendingLifetime is how long a key offered on the enable page stays valid
// for confirming.
const pendingLifetime = 15 * time.Minute

// settingsSession returns the session of a user who may see the Security
// pages (logged in, or owing only the enrolment the site requires), or
// redirects the request to where its session belongs.
func (h *Handler) settingsSession(w http.ResponseWriter, r *http.Request) (*store.Session, *users.Account, store.Account, bool, error) {
	rec, acct, err := h.current(r)
	if err != nil {
		return nil, nil, store.Account{}, false, h.unavailable(w, err)
	}
	if rec == nil {
		target := h.Prefix + "/login"
		if r.Method == http.MethodGet {
			target += "?next=" + url.QueryEscape(r.URL.RequestURI())
		}
		return nil, nil, store.Account{}, false, h.seeOther(w, r, target)
	}
	if rec.Stage == store.StagePassword {
		return nil, nil, store.Account{}, false, h.seeOther(w, r, h.Prefix+"/code")
	}
	// Time spent on these pages counts as activity, as on the site.
	switch err := h.sessions.KeepAlive(r.Context(), rec); {
	case errors.Is(err, store.ErrNotFound):
		return nil, nil, store.Account{}, false, h.seeOther(w, r, h.Prefix+"/login")
	case err != nil:
		return nil, nil, store.Account{}, false, h.unavailable(w, err)
	}
	a, err := h.db.Account(r.Context(), rec.User)
	if err != nil {
		return nil, nil, store.Account{}, false, h.unavailable(w, err)
	}
	return rec, acct, a, true, nil
}

func (h *Handler) securityView(acct *users.Account, a store.Account) ui.Page {
	return ui.Page{
		Title: "security.title", User: acct.Name, Enabled: a.Enabled(),
		BackupLeft: len(a.BackupCodes), RequireTwoFactor: h.RequireTwoFactor,
		PasswordChangeable: acct.Origin == store.OriginStore,
	}
}

func (h *Handler) securityPage(w http.ResponseWriter, r *http.Request) error {
	rec, acct, a, ok, err := h.settingsSession(w, r)
	if !ok {
		return err
	}
	p := h.securityView(acct, a)
	// The notice of a change just made (POST-redirect-GET) is shown once;
	// one left for the backup codes page waits for it.
	if rec.Notice != "" && len(rec.Shown) == 0 {
		p.Notice = rec.Notice
		rec.Notice = rec.Notice[:0] // shown
		if err := h.sessions.Update(r.Context(), rec); err != nil {
			return h.unavailable(w, err)
		}
	}
	return h.ui.Render(w, http.StatusOK, "security", p)
}

// keepCodes keeps new backup codes in the session record, sealed, with the
// notice for the page that shows them: that page (GET) shows them once.
// Nothing of them goes into a cookie or a URL.
func (h *Handler) keepCodes(rec *store.Session, codes []string, notice string) error {
	sealed, err := h.sealer.Seal([]byte(strings.Join(codes, "\n")), secretAAD("shown", rec.User))
	if err != nil {
		return err
	}
	rec.Shown, rec.Notice = sealed, notice
	return nil
}

// backupCodesPage shows the backup codes just issued to the session, once:
// they are dropped from the session record before the page is sent, so a
// reload shows them no more (and goes to Security).
func (h *Handler) backupCodesPage(w http.ResponseWriter, r *http.Request) error {
	rec, acct, _, ok, err := h.settingsSession(w, r)
	if !ok {
		return err
	}
	if len(rec.Shown) == 0 {
		return h.seeOther(w, r, h.Prefix+"/security")
	}
	plain, err := h.sealer.Open(rec.Shown, secretAAD("shown", rec.User))
	notice := rec.Notice
	rec.Shown, rec.Notice = nil, rec.Notice[:0]
	if uerr := h.sessions.Update(r.Context(), rec); uerr != nil {
		return h.unavailable(w, uerr)
	}
	if err != nil {
		return h.unavailable(w, err)
	}
	return h.showCodes(w, acct, strings.Split(string(plain), "\n"), notice)
}

// pendingSecret returns the key being offered to the session on the enable
// page, making (and keeping in the session, sealed) a new one when there is
// none or it has grown old.
func (h *Handler) pendingSecret(r *http.Request, rec *store.Session, fresh bool) ([]byte, error) {
	aad := secretAAD("pending", rec.User)
	if len(rec.Pending) > 0 && h.now().Sub(rec.PendingAt) < pendingLifetime {
		return h.sealer.Open(rec.Pending, aad)
	}
	if !fresh {
		return nil, nil
	}
	secret, err := otp.NewSecret()
	if err != nil {
		return nil, err
	}
	sealed, err := h.sealer.Seal(secret, aad)
	if err != nil {
		return nil, err
	}
	rec.Pending, rec.PendingAt = sealed, h.now()
	if err := h.sessions.Update(r.Context(), rec); err != nil {
		return nil, err
	}
	return secret, nil
}

// enableView is the enable page for a secret: QR code, key for manual
// entry, account name, otpauth link. Issuer and label come from the
// configuration and the account, never from the request's Host.
func (h *Handler) enableView(acct *users.Account, secret []byte) (ui.Page, error) {
	link := otp.URL(h.Issuer, acct.Name, secret, h.params)
	png, err := otp.QRPNG(link, 200)
	if err != nil {
		return ui.Page{}, err
	}
	return ui.Page{
		Title: "enable.title", User: acct.Name,
		QRCode:      template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(png)),
		Secret:      otp.GroupKey(otp.EncodeSecret(secret)),
		AccountName: acct.Name,
		OTPAuthURL:  template.URL(link),
	}, nil
}

func (h *Handler) enablePage(w http.ResponseWriter, r *http.Request) error {
	rec, acct, a, ok, err := h.settingsSession(w, r)
	if !ok {
		return err
	}
	if a.Enabled() {
		return h.seeOther(w, r, h.Prefix+"/security")
	}
	secret, err := h.pendingSecret(r, rec, true)
	if err != nil {
		return h.unavailable(w, err)
	}
	p, err := h.enableView(acct, secret)
	if err != nil {
		return h.unavailable(w, err)
	}
	return h.ui.Render(w, http.StatusOK, "enable", p)
}

// enable turns the second factor on: it needs the account password and a
// current code from the app for the offered key. The step of that code is
// recorded as used, so it cannot be replayed at the next login.
func (h *Handler) enable(w http.ResponseWriter, r *http.Request) error {
	rec, acct, a, ok, err := h.settingsSession(w, r)
	if !ok {
		return err
	}
	if a.Enabled() {
		return h.seeOther(w, r, h.Prefix+"/security")
	}
	secret, err := h.pendingSecret(r, rec, false)
	if err != nil {
		return h.unavailable(w, err)
	}
	if secret == nil {
		// The offered key expired: show a new one.
		return h.seeOther(w, r, h.Prefix+"/security/enable")
	}
	wrong := func() error {
		p, err := h.enableView(acct, secret)
		if err != nil {
			return h.unavailable(w, err)
		}
		p.Error = genericFailure
		return h.ui.Render(w, http.StatusUnauthorized, "enable", p)
	}
	var step int64
	v, err := h.confirm(r, stepEnable, acct, r.PostForm.Get("password"), factorTOTP, func() (codeResult, error) {
		var good bool
		step, good = otp.Match(secret, h.params, r.PostForm.Get("code"), h.now(), h.skew)
		return codeResult{ok: good, method: factorTOTP}, nil
	})
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
		return wrong()
	}

	codes, hashes, err := h.newCodes(acct.Key)
	if err != nil {
		return h.unavailable(w, err)
	}
	sealed, err := h.sealer.Seal(secret, secretAAD("totp", acct.Key))
	if err != nil {
		return h.unavailable(w, err)
	}
	t := store.TOTP{
		SealedSecret: sealed, Algorithm: h.params.Algorithm, Digits: h.params.Digits,
		Period: h.params.Period, LastStep: step, EnabledAt: h.now(),
	}
	err = h.db.EnableTOTP(r.Context(), acct.Key, t, hashes)
	if errors.Is(err, store.ErrAlreadyEnabled) {
		return h.seeOther(w, r, h.Prefix+"/security")
	}
	if err != nil {
		return h.unavailable(w, err)
	}
	// Every session of the user, this one included, ended with the
	// enrolment, in its transaction: those that got in with the password
	// alone are gone even if what follows fails. This one goes on under a
	// new ID.
	rec.Pending, rec.PendingAt = nil, time.Time{}
	rec.Stage = store.StageFull
	if err := h.keepCodes(rec, codes, "notice.enabled"); err != nil {
		return h.unavailable(w, err)
	}
	if err := h.sessions.Start(w, r, rec); err != nil {
		return h.unavailable(w, err)
	}
	h.auditRequest(r, zapcore.InfoLevel, evEnabled, "two-factor authentication enabled", zap.String("user", acct.Name))
	return h.seeOther(w, r, h.Prefix+"/security/backup-codes")
}

// newCodes makes a set of backup codes and their hashes.
func (h *Handler) newCodes(user string) ([]string, [][]byte, error) {
	codes, err := backupcodes.Generate(backupcodes.Count)
	if err != nil {
		return nil, nil, err
	}
	hashes := make([][]byte, len(codes))
	for i, c := range codes {
		norm, ok := backupcodes.Normalize(c)
		if !ok {
			return nil, nil, errors.New("generated a malformed backup code")
		}
		hashes[i] = h.codes.Hash(user, norm)
	}
	return codes, hashes, nil
}

// showCodes shows a new set of backup codes, once, with a text file of
// them to download, in the page's language. The page offers no way off it
// but its own "I have saved them" (notice is a message key).
func (h *Handler) showCodes(w http.ResponseWriter, acct *users.Account, codes []string, notice string) error {
	loc := h.ui.Locale(w)
	text := backupcodes.Text(
		[]string{
			loc.T("codes_file.heading", "user", acct.Name, "product", h.ProductName),
			loc.T("codes_file.generated", "time", h.now().UTC().Format("2006-01-02 15:04 UTC")),
		},
		codes,
		[]string{loc.T("codes_file.once"), loc.T("codes_file.keep_safe")},
	)
	return h.ui.Render(w, http.StatusOK, "backup_codes", ui.Page{
		Title: "codes.title", User: acct.Name, Notice: notice, BackupCodes: codes, HideNav: true,
		BackupText: template.URL("data:text/plain;charset=utf-8;base64," + base64.StdEncoding.EncodeToString([]byte(text))),
	})
}

func (h *Handler) disablePage(w http.ResponseWriter, r *http.Request) error {
	_, acct, a, ok, err := h.settingsSession(w, r)
	if !ok {
		return err
	}
	if !a.Enabled() {
		return h.seeOther(w, r, h.Prefix+"/security")
	}
	return h.ui.Render(w, http.StatusOK, "disable", ui.Page{Title: "disable.title", User: acct.Name})
}

// disable turns the second factor off ("Turn off"): it needs the password
// and a current code or a backup code. Every session of the user ends in
// the same transaction, this one included, so that none keeps a stage it
// no longer has (under require_two_factor, access to the site) if what
// follows fails; this one then goes on under a new ID.
func (h *Handler) disable(w http.ResponseWriter, r *http.Request) error {
	rec, acct, _, ok, err := h.confirmedChange(w, r, stepDisable, func(acct *users.Account, _ store.Account, failure string) error {
		return h.ui.Render(w, http.StatusUnauthorized, "disable", ui.Page{Title: "disable.title", User: acct.Name, Error: failure})
	})
	if !ok {
		return err
	}
	if err := h.db.DisableTOTP(r.Context(), acct.Key, nil); err != nil && !errors.Is(err, store.ErrNotEnabled) {
		return h.unavailable(w, err)
	}
	h.auditRequest(r, zapcore.InfoLevel, evDisabled, "two-factor authentication disabled", zap.String("user", acct.Name))
	if h.RequireTwoFactor {
		rec.Stage = store.StageEnrol
	}
	rec.Notice, rec.Shown = "notice.disabled", nil
	if err := h.sessions.Start(w, r, rec); err != nil {
		return h.unavailable(w, err)
	}
	return h.seeOther(w, r, h.Prefix+"/security")
}

// confirmedChange is the front of the changes that need two-factor
// authentication on, the password and a code (turn off, new backup
// codes): the session, the enrolment, then both factors. When it answers
// ok false it has written the response (the login, Security, a 429 or a
// 503 page, or wrong's page for a wrong factor) and err is the handler's
// result.
func (h *Handler) confirmedChange(w http.ResponseWriter, r *http.Request, step string,
	wrong func(acct *users.Account, a store.Account, failure string) error) (*store.Session, *users.Account, store.Account, bool, error) {
	rec, acct, a, ok, err := h.settingsSession(w, r)
	if !ok {
		return nil, nil, a, false, err
	}
	if !a.Enabled() {
		return nil, nil, a, false, h.seeOther(w, r, h.Prefix+"/security")
	}
	v, err := h.confirmBoth(r, step, acct, a, r.PostForm.Get("password"), r.PostForm.Get("code"))
	switch {
	case err != nil:
		return nil, nil, a, false, h.unavailable(w, err)
	case v.wait > 0:
		return nil, nil, a, false, h.throttled(w, v.wait, "/security", "error.back_security")
	case !v.ok:
		return nil, nil, a, false, wrong(acct, a, v.failure())
	}
	return rec, acct, a, true, nil
}

// newBackupCodes replaces every backup code with a new set, shown once; it
// needs the password and a code.
func (h *Handler) newBackupCodes(w http.ResponseWriter, r *http.Request) error {
	rec, acct, _, ok, err := h.confirmedChange(w, r, stepBackupCodes, func(acct *users.Account, a store.Account, failure string) error {
		p := h.securityView(acct, a)
		p.Error = failure
		return h.ui.Render(w, http.StatusUnauthorized, "security", p)
	})
	if !ok {
		return err
	}
	codes, hashes, err := h.newCodes(acct.Key)
	if err != nil {
		return h.unavailable(w, err)
	}
	if err := h.db.ReplaceBackupCodes(r.Context(), acct.Key, hashes); err != nil {
		return h.unavailable(w, err)
	}
	h.auditRequest(r, zapcore.InfoLevel, evCodesRegenerated, "backup codes replaced", zap.String("user", acct.Name), zap.Int("backup_codes", len(codes)))
	if err := h.keepCodes(rec, codes, "notice.new_codes"); err != nil {
		return h.unavailable(w, err)
	}
	if err := h.sessions.Update(r.Context(), rec); err != nil {
		return h.unavailable(w, err)
	}
	return h.seeOther(w, r, h.Prefix+"/security/backup-codes")
}
