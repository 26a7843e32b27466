package gate

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

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/audit"
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
func (g *Gate) settingsSession(w http.ResponseWriter, r *http.Request) (*store.Session, *users.Account, store.Account, bool, error) {
	rec, acct, err := g.current(r)
	if err != nil {
		return nil, nil, store.Account{}, false, g.unavailable(w, err)
	}
	if rec == nil {
		target := g.prefix + "/login"
		if r.Method == http.MethodGet {
			target += "?next=" + url.QueryEscape(r.URL.RequestURI())
		}
		return nil, nil, store.Account{}, false, g.seeOther(w, r, target)
	}
	if rec.Stage == store.StagePassword {
		return nil, nil, store.Account{}, false, g.seeOther(w, r, g.prefix+"/code")
	}
	// Time spent on these pages counts as activity, as on the site.
	switch err := g.sessions.KeepAlive(r.Context(), rec, g.now()); {
	case errors.Is(err, store.ErrNotFound):
		return nil, nil, store.Account{}, false, g.seeOther(w, r, g.prefix+"/login")
	case err != nil:
		return nil, nil, store.Account{}, false, g.unavailable(w, err)
	}
	a, err := g.db.Account(r.Context(), rec.User)
	if err != nil {
		return nil, nil, store.Account{}, false, g.unavailable(w, err)
	}
	return rec, acct, a, true, nil
}

// securityPageOf is the whole Security page of rec's user: the settings,
// the recent activity, the sessions and the remembered browsers.
func (g *Gate) securityPageOf(w http.ResponseWriter, r *http.Request, rec *store.Session, acct *users.Account, a store.Account) (ui.Page, error) {
	p := g.securityView(acct, a)
	if err := g.withActivity(r.Context(), &p, acct.Key); err != nil {
		return p, err
	}
	return p, g.fillSecurity(w, r, rec, &p)
}

func (g *Gate) securityView(acct *users.Account, a store.Account) ui.Page {
	return ui.Page{
		Title: "security.title", User: acct.Name, Enabled: a.Enabled(),
		BackupLeft: len(a.BackupCodes), RequireTwoFactor: g.requireTwoFactor,
		PasswordChangeable: acct.Origin == store.OriginStore,
		HasApp:             a.TOTP != nil, Keys: keyRows(a), Script: true,
	}
}

func (g *Gate) securityPage(w http.ResponseWriter, r *http.Request) error {
	rec, acct, a, ok, err := g.settingsSession(w, r)
	if !ok {
		return err
	}
	p, err := g.securityPageOf(w, r, rec, acct, a)
	if err != nil {
		return g.unavailable(w, err)
	}
	// The notice of a change just made (POST-redirect-GET) is shown once;
	// one left for the backup codes page waits for it.
	if rec.Notice != "" && len(rec.Shown) == 0 {
		p.Notice = rec.Notice
		rec.Notice = rec.Notice[:0] // shown
		if err := g.sessions.Update(r.Context(), rec); err != nil {
			return g.unavailable(w, err)
		}
	}
	return g.ui.Render(w, http.StatusOK, "security", p)
}

// keepCodes keeps new backup codes in the session record, sealed, with the
// notice for the page that shows them: that page (GET) shows them once.
// Nothing of them goes into a cookie or a URL.
func (g *Gate) keepCodes(rec *store.Session, codes []string, notice string) error {
	sealed, err := g.sealer.Seal([]byte(strings.Join(codes, "\n")), secretAAD("shown", rec.User))
	if err != nil {
		return err
	}
	rec.Shown, rec.Notice = sealed, notice
	return nil
}

// backupCodesPage shows the backup codes just issued to the session, once:
// they are dropped from the session record before the page is sent, so a
// reload shows them no more (and goes to Security).
func (g *Gate) backupCodesPage(w http.ResponseWriter, r *http.Request) error {
	rec, acct, _, ok, err := g.settingsSession(w, r)
	if !ok {
		return err
	}
	if len(rec.Shown) == 0 {
		return g.seeOther(w, r, g.prefix+"/security")
	}
	plain, err := g.sealer.Open(rec.Shown, secretAAD("shown", rec.User))
	notice := rec.Notice
	rec.Shown, rec.Notice = nil, rec.Notice[:0]
	if uerr := g.sessions.Update(r.Context(), rec); uerr != nil {
		return g.unavailable(w, uerr)
	}
	if err != nil {
		return g.unavailable(w, err)
	}
	return g.showCodes(w, acct, strings.Split(string(plain), "\n"), notice)
}

// pendingSecret returns the key being offered to the session on the enable
// page, making (and keeping in the session, sealed) a new one when there is
// none or it has grown old.
func (g *Gate) pendingSecret(r *http.Request, rec *store.Session, fresh bool) ([]byte, error) {
	aad := secretAAD("pending", rec.User)
	if len(rec.Pending) > 0 && g.now().Sub(rec.PendingAt) < pendingLifetime {
		return g.sealer.Open(rec.Pending, aad)
	}
	if !fresh {
		return nil, nil
	}
	secret, err := otp.NewSecret()
	if err != nil {
		return nil, err
	}
	sealed, err := g.sealer.Seal(secret, aad)
	if err != nil {
		return nil, err
	}
	rec.Pending, rec.PendingAt = sealed, g.now()
	if err := g.sessions.Update(r.Context(), rec); err != nil {
		return nil, err
	}
	return secret, nil
}

// enableView is the enable page for a secret: QR code, key for manual
// entry, account name, otpauth link. Issuer and label come from the
// configuration and the account, never from the request's Host.
func (g *Gate) enableView(acct *users.Account, secret []byte) (ui.Page, error) {
	link := otp.URL(g.issuer, acct.Name, secret, g.params)
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

func (g *Gate) enablePage(w http.ResponseWriter, r *http.Request) error {
	rec, acct, a, ok, err := g.settingsSession(w, r)
	if !ok {
		return err
	}
	if a.TOTP != nil {
		return g.seeOther(w, r, g.prefix+"/security")
	}
	secret, err := g.pendingSecret(r, rec, true)
	if err != nil {
		return g.unavailable(w, err)
	}
	p, err := g.enableView(acct, secret)
	if err != nil {
		return g.unavailable(w, err)
	}
	return g.ui.Render(w, http.StatusOK, "enable", p)
}

// enable turns the second factor on: it needs the account password and a
// current code from the app for the offered key. The step of that code is
// recorded as used, so it cannot be replayed at the next login.
func (g *Gate) enable(w http.ResponseWriter, r *http.Request) error {
	rec, acct, a, ok, err := g.settingsSession(w, r)
	if !ok {
		return err
	}
	if a.TOTP != nil {
		return g.seeOther(w, r, g.prefix+"/security")
	}
	secret, err := g.pendingSecret(r, rec, false)
	if err != nil {
		return g.unavailable(w, err)
	}
	if secret == nil {
		// The offered key expired: show a new one.
		return g.seeOther(w, r, g.prefix+"/security/enable")
	}
	wrong := func(v verdict) error {
		p, err := g.enableView(acct, secret)
		if err != nil {
			return g.unavailable(w, err)
		}
		p.Error = GenericFailure
		clockHintOn(&p, v.driftSeconds)
		return g.ui.Render(w, http.StatusUnauthorized, "enable", p)
	}
	var step int64
	v, err := g.confirm(r, audit.StepEnable, acct, r.PostForm.Get("password"), factorTOTP, func() (codeResult, error) {
		code, now := r.PostForm.Get("code"), g.now()
		var good bool
		step, good = otp.Match(secret, g.params, code, now, g.skew)
		res := codeResult{ok: good, method: factorTOTP, period: g.params.Period}
		if !good {
			res.drift = g.driftSteps(secret, g.params, code, now)
		}
		return res, nil
	})
	if err != nil {
		if r.Context().Err() != nil {
			return err
		}
		return g.unavailable(w, err)
	}
	if v.wait > 0 {
		return g.throttled(w, v.wait, "/security", "error.back_security")
	}
	if !v.ok {
		return wrong(v)
	}

	if a.Enabled() {
		// Security keys already: the app goes beside them (webauthn.go).
		return g.addApp(w, r, rec, acct, secret, step)
	}
	codes, hashes, err := g.newCodes(acct.Key)
	if err != nil {
		return g.unavailable(w, err)
	}
	sealed, err := g.sealer.Seal(secret, secretAAD("totp", acct.Key))
	if err != nil {
		return g.unavailable(w, err)
	}
	t := store.TOTP{
		SealedSecret: sealed, Algorithm: g.params.Algorithm, Digits: g.params.Digits,
		Period: g.params.Period, LastStep: step, EnabledAt: g.now(),
	}
	err = g.db.EnableTOTP(r.Context(), acct.Key, t, hashes)
	if errors.Is(err, store.ErrAlreadyEnabled) {
		return g.seeOther(w, r, g.prefix+"/security")
	}
	if err != nil {
		return g.unavailable(w, err)
	}
	// Every session of the user, this one included, ended with the
	// enrolment, in its transaction: those that got in with the password
	// alone are gone even if what follows fails. This one goes on under a
	// new ID.
	rec.Pending, rec.PendingAt = nil, time.Time{}
	rec.Stage = store.StageFull
	rec.AuthTime, rec.Methods = g.now(), store.MethodPassword|store.MethodOTP // both just confirmed
	if err := g.keepCodes(rec, codes, "notice.enabled"); err != nil {
		return g.unavailable(w, err)
	}
	if err := g.sessions.Start(w, r, rec); err != nil {
		return g.unavailable(w, err)
	}
	g.auditRequest(r, zapcore.InfoLevel, audit.EvEnabled, "two-factor authentication enabled", zap.String("user", acct.Name))
	g.event(r, acct.Key, store.Event{Kind: store.EventEnabled, By: store.ByUser})
	return g.seeOther(w, r, g.prefix+"/security/backup-codes")
}

// newCodes makes a set of backup codes and their hashes.
func (g *Gate) newCodes(user string) ([]string, [][]byte, error) {
	return NewBackupCodes(g.codes, user)
}

// NewBackupCodes makes a new set of backup codes for user and their keyed
// hashes, as the store keeps them.
func NewBackupCodes(hasher *backupcodes.Hasher, user string) ([]string, [][]byte, error) {
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
		hashes[i] = hasher.Hash(user, norm)
	}
	return codes, hashes, nil
}

// showCodes shows a new set of backup codes, once, with a text file of
// them to download, in the page's language. The page offers no way off it
// but its own "I have saved them" (notice is a message key).
func (g *Gate) showCodes(w http.ResponseWriter, acct *users.Account, codes []string, notice string) error {
	loc := g.ui.Locale(w)
	text := backupcodes.Text(
		[]string{
			loc.T("codes_file.heading", "user", acct.Name, "product", g.product),
			loc.T("codes_file.generated", "time", g.now().UTC().Format("2006-01-02 15:04 UTC")),
		},
		codes,
		[]string{loc.T("codes_file.once"), loc.T("codes_file.keep_safe")},
	)
	return g.ui.Render(w, http.StatusOK, "backup_codes", ui.Page{
		Title: "codes.title", User: acct.Name, Notice: notice, BackupCodes: codes, HideNav: true,
		BackupText: template.URL("data:text/plain;charset=utf-8;base64," + base64.StdEncoding.EncodeToString([]byte(text))),
	})
}

func (g *Gate) disablePage(w http.ResponseWriter, r *http.Request) error {
	_, acct, a, ok, err := g.settingsSession(w, r)
	if !ok {
		return err
	}
	if !a.Enabled() {
		return g.seeOther(w, r, g.prefix+"/security")
	}
	return g.ui.Render(w, http.StatusOK, "disable", ui.Page{Title: "disable.title", User: acct.Name, Keys: keyRows(a), Script: len(a.Credentials) > 0})
}

// disable turns the second factor off ("Turn off"): it needs the password
// and a current code or a backup code. Every session of the user ends in
// the same transaction, this one included, so that none keeps a stage it
// no longer has (under require_two_factor, access to the site) if what
// follows fails; this one then goes on under a new ID.
func (g *Gate) disable(w http.ResponseWriter, r *http.Request) error {
	rec, acct, _, ok, err := g.confirmedChange(w, r, audit.StepDisable, func(_ *store.Session, acct *users.Account, a store.Account, v verdict) error {
		p := ui.Page{Title: "disable.title", User: acct.Name, Error: v.failure(), Keys: keyRows(a), Script: len(a.Credentials) > 0}
		clockHintOn(&p, v.driftSeconds)
		return g.ui.Render(w, http.StatusUnauthorized, "disable", p)
	})
	if !ok {
		return err
	}
	if err := g.db.DisableTOTP(r.Context(), acct.Key, nil); err != nil && !errors.Is(err, store.ErrNotEnabled) {
		return g.unavailable(w, err)
	}
	g.auditRequest(r, zapcore.InfoLevel, audit.EvDisabled, "two-factor authentication disabled", zap.String("user", acct.Name))
	g.event(r, acct.Key, store.Event{Kind: store.EventDisabled, By: store.ByUser})
	if g.requireTwoFactor {
		rec.Stage = store.StageEnrol
	}
	rec.Notice, rec.Shown = "notice.disabled", nil
	rec.AuthTime, rec.Methods = g.now(), store.MethodPassword // no second factor any more
	if err := g.sessions.Start(w, r, rec); err != nil {
		return g.unavailable(w, err)
	}
	return g.seeOther(w, r, g.prefix+"/security")
}

// confirmedChange is the front of the changes that need two-factor
// authentication on, the password and a code (turn off, new backup
// codes): the session, the enrolment, then both factors. When it answers
// ok false it has written the response (the login, Security, a 429 or a
// 503 page, or wrong's page for a wrong factor) and err is the handler's
// result.
func (g *Gate) confirmedChange(w http.ResponseWriter, r *http.Request, step string,
	wrong func(rec *store.Session, acct *users.Account, a store.Account, v verdict) error) (*store.Session, *users.Account, store.Account, bool, error) {
	rec, acct, a, ok, err := g.settingsSession(w, r)
	if !ok {
		return nil, nil, a, false, err
	}
	if !a.Enabled() {
		return nil, nil, a, false, g.seeOther(w, r, g.prefix+"/security")
	}
	v, err := g.confirmBoth(r, step, acct, a, r.PostForm.Get("password"), r.PostForm.Get("code"))
	switch {
	case err != nil:
		return nil, nil, a, false, g.unavailable(w, err)
	case v.wait > 0:
		return nil, nil, a, false, g.throttled(w, v.wait, "/security", "error.back_security")
	case !v.ok:
		return nil, nil, a, false, wrong(rec, acct, a, v)
	}
	return rec, acct, a, true, nil
}

// newBackupCodes replaces every backup code with a new set, shown once; it
// needs the password and a code.
func (g *Gate) newBackupCodes(w http.ResponseWriter, r *http.Request) error {
	rec, acct, _, ok, err := g.confirmedChange(w, r, audit.StepBackupCodes, func(rec *store.Session, acct *users.Account, a store.Account, v verdict) error {
		p, err := g.securityPageOf(w, r, rec, acct, a)
		if err != nil {
			return g.unavailable(w, err)
		}
		p.Error = v.failure()
		clockHintOn(&p, v.driftSeconds)
		return g.ui.Render(w, http.StatusUnauthorized, "security", p)
	})
	if !ok {
		return err
	}
	codes, hashes, err := g.newCodes(acct.Key)
	if err != nil {
		return g.unavailable(w, err)
	}
	if err := g.db.ReplaceBackupCodes(r.Context(), acct.Key, hashes); err != nil {
		return g.unavailable(w, err)
	}
	g.auditRequest(r, zapcore.InfoLevel, audit.EvCodesRegenerated, "backup codes replaced", zap.String("user", acct.Name), zap.Int("backup_codes", len(codes)))
	g.event(r, acct.Key, store.Event{Kind: store.EventBackupCodes, By: store.ByUser, Count: len(codes)})
	if err := g.keepCodes(rec, codes, "notice.new_codes"); err != nil {
		return g.unavailable(w, err)
	}
	if err := g.sessions.Update(r.Context(), rec); err != nil {
		return g.unavailable(w, err)
	}
	return g.seeOther(w, r, g.prefix+"/security/backup-codes")
}
