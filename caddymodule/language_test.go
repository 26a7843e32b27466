package caddymodule

import (
	"encoding/base64"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// htmlLang reads <html lang="...">.
var htmlLangRe = regexp.MustCompile(`<html lang="([^"]*)"`)

func htmlLang(body string) string {
	if m := htmlLangRe.FindStringSubmatch(body); m != nil {
		return m[1]
	}
	return ""
}

// TestRussianPagesSpeakTheSeedsWords walks through the pages in Russian, as
// the browser asks, and looks for the words of the Russian guide.
func TestRussianPagesSpeakTheSeedsWords(t *testing.T) {
	g := newGate(t, gateOpts{})
	b := g.browser()
	ru := []string{"Accept-Language", "ru-RU,ru;q=0.9,en;q=0.8"}
	r := b.get("/.auth/login", ru...)
	if htmlLang(r.body) != "ru" || r.header.Get("Content-Language") != "ru" || !strings.Contains(r.body, "<title>Вход · Test Cloud</title>") {
		t.Fatalf("login page for a Russian browser: got lang %q, Content-Language %q: %.400s", htmlLang(r.body), r.header.Get("Content-Language"), r.body)
	}
	r = b.post("/.auth/login", url.Values{"username": {"alice"}, "password": {"wrong"}}, ru...)
	if !strings.Contains(r.body, "Введённые данные неверны.") || !strings.Contains(r.body, "<title>Ошибка: Вход") {
		t.Errorf("failed login in Russian lacks the Russian error: %.600s", r.body)
	}
	b.login("alice", testPassword, "/")
	for _, tc := range []struct {
		path  string
		words []string
	}{
		{"/.auth/security", []string{"Безопасность", "Включить защиту", "Двухфакторная аутентификация выключена."}},
		{"/.auth/security/enable", []string{"Код из приложения", "Пароль от аккаунта", ">Включить</button>", "Введите ключ вручную", "QR‑код"}},
	} {
		r := b.get(tc.path, ru...)
		for _, w := range tc.words {
			if !strings.Contains(r.body, w) {
				t.Errorf("%s in Russian lacks %q", tc.path, w)
			}
		}
	}
	// Enable in Russian: the backup codes page, and its text file, are Russian.
	r = b.get("/.auth/security/enable", ru...)
	key := manualKeyRe.FindStringSubmatch(r.body)
	if key == nil {
		t.Fatalf("no key for manual entry on the Russian enable page")
	}
	secret := strings.ReplaceAll(key[1], " ", "")
	r = b.postSeeOther("/.auth/security/enable", url.Values{"code": {totpCode(t, secret, testNow())}, "password": {testPassword}}, codesPage, ru...)
	if !strings.Contains(r.body, "Сохраните резервные коды") || len(backupCodesOn(t, r.body)) != 10 {
		t.Fatalf("backup codes page in Russian: %.500s", r.body)
	}
	file := downloadedText(t, r.body)
	if !strings.HasPrefix(file, "Резервные коды пользователя alice для входа в Test Cloud\n") || !strings.Contains(file, "Каждый код действует один раз.") {
		t.Errorf("the backup codes file is not in Russian: %q", file)
	}
	for _, c := range backupCodesOn(t, r.body) {
		if !strings.Contains(file, "\n"+c+"\n") {
			t.Errorf("the backup codes file lacks %s", c)
		}
	}
	r = b.get("/.auth/security", ru...)
	for _, w := range []string{"Отключить защиту", "Осталось резервных кодов: <strong>10</strong>", "Получить новые резервные коды"} {
		if !strings.Contains(r.body, w) {
			t.Errorf("security page, 2FA on, in Russian lacks %q", w)
		}
	}
	r = b.get("/.auth/security/disable", ru...)
	for _, w := range []string{"Пароль от аккаунта", "Код из приложения или резервный код", ">Выключить</button>"} {
		if !strings.Contains(r.body, w) {
			t.Errorf("disable page in Russian lacks %q", w)
		}
	}
}

// downloadedText decodes the backup codes page's data: link.
func downloadedText(t *testing.T, body string) string {
	t.Helper()
	m := regexp.MustCompile(`href="data:text/plain;charset=utf-8;base64,([^"]+)" download="backup-codes.txt"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no backup-codes.txt link on the page")
	}
	b, err := base64.StdEncoding.DecodeString(html.UnescapeString(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestLanguageSwitch chooses a language with the switch: a POST that sets
// a cookie and goes back where it was; refused from another site, and a
// forged back or language changes nothing dangerous.
func TestLanguageSwitch(t *testing.T) {
	g := newGate(t, gateOpts{})
	b := g.browser()
	en := []string{"Accept-Language", "en"}
	r := b.get("/.auth/login?next=%2Fdocs", en...)
	if htmlLang(r.body) != "en" || !strings.Contains(r.body, `name="back" value="/.auth/login?next=%2Fdocs"`) ||
		!strings.Contains(r.body, `name="lang" value="ru" lang="ru">Русский</button>`) {
		t.Fatalf("login page lacks the switch back to itself: %.1500s", r.body)
	}
	r = b.post("/.auth/language", url.Values{"lang": {"ru"}, "back": {"/.auth/login?next=%2Fdocs"}}, en...)
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/.auth/login?next=%2Fdocs" {
		t.Fatalf("switch: got %d %q, want 303 back to the page", r.status, r.header.Get("Location"))
	}
	c := r.header.Get("Set-Cookie")
	for _, want := range []string{"__Host-two_factor_lang=ru", "Path=/", "Secure", "HttpOnly", "SameSite=Lax", "Max-Age="} {
		if !strings.Contains(c, want) {
			t.Errorf("language cookie %q lacks %q", c, want)
		}
	}
	// The choice beats Accept-Language, on every page.
	for _, p := range []string{"/.auth/login", "/.auth/nope"} {
		if r := b.get(p, en...); htmlLang(r.body) != "ru" {
			t.Errorf("%s after choosing Russian: got lang %q", p, htmlLang(r.body))
		}
	}
	// Back to English.
	b.post("/.auth/language", url.Values{"lang": {"en"}, "back": {"/.auth/login"}})
	if r := b.get("/.auth/login", "Accept-Language", "ru"); htmlLang(r.body) != "en" {
		t.Errorf("after choosing English: got lang %q", htmlLang(r.body))
	}

	for _, tc := range []struct {
		name      string
		form      url.Values
		headers   []string
		status    int
		location  string
		setCookie bool
	}{
		{"from another site", url.Values{"lang": {"ru"}, "back": {"/"}}, []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden, "", false},
		{"a language not offered", url.Values{"lang": {"de"}, "back": {"/.auth/login"}}, nil, http.StatusSeeOther, "/.auth/login", false},
		{"a forged cookie value", url.Values{"lang": {"ru; Domain=evil.example"}, "back": {"/.auth/login"}}, nil, http.StatusSeeOther, "/.auth/login", false},
		{"back to another site", url.Values{"lang": {"ru"}, "back": {"//evil.example/"}}, nil, http.StatusSeeOther, "/.auth/login", true},
		{"back with a scheme", url.Values{"lang": {"ru"}, "back": {"https://evil.example/"}}, nil, http.StatusSeeOther, "/.auth/login", true},
		{"back with a line break", url.Values{"lang": {"ru"}, "back": {"/x\r\nSet-Cookie: a=b"}}, nil, http.StatusSeeOther, "/.auth/login", true},
	} {
		s := g.browser()
		r := s.post("/.auth/language", tc.form, tc.headers...)
		if r.status != tc.status || r.header.Get("Location") != tc.location {
			t.Errorf("%s: got %d %q, want %d %q", tc.name, r.status, r.header.Get("Location"), tc.status, tc.location)
		}
		if got := r.header.Get("Set-Cookie") != ""; got != tc.setCookie {
			t.Errorf("%s: set a cookie: got %v, want %v (%q)", tc.name, got, tc.setCookie, r.header.Get("Set-Cookie"))
		}
	}
	if r := b.get("/.auth/language"); r.status != http.StatusMethodNotAllowed {
		t.Errorf("GET language: got %d, want 405", r.status)
	}
	// The backup codes page has no switch: switching would lose the codes.
	b.login("alice", testPassword, "/")
	codesPage := b.enablePage()
	if strings.Contains(codesPage, `action="/.auth/language"`) {
		t.Errorf("the backup codes page offers the language switch")
	}
}

// enablePage enables 2FA and returns the backup codes page.
func (b *browser) enablePage() string {
	b.t.Helper()
	r := b.get("/.auth/security/enable")
	key := manualKeyRe.FindStringSubmatch(r.body)
	if key == nil {
		b.t.Fatalf("no key on the enable page")
	}
	r = b.postSeeOther("/.auth/security/enable", url.Values{"code": {totpCode(b.t, strings.ReplaceAll(key[1], " ", ""), testNow())}, "password": {testPassword}}, codesPage)
	if r.status != http.StatusOK {
		b.t.Fatalf("enable: got %d", r.status)
	}
	return r.body
}

// TestOperatorForcesALanguage: one entry in languages is every page's
// language, whatever the browser or a cookie says, and there is no switch.
func TestOperatorForcesALanguage(t *testing.T) {
	g := newGate(t, gateOpts{extra: "languages ru"})
	b := g.browser()
	b.jar.SetCookies(mustURL(g.base), []*http.Cookie{{Name: "__Host-two_factor_lang", Value: "en"}})
	r := b.get("/.auth/login", "Accept-Language", "en-US,en")
	if htmlLang(r.body) != "ru" || !strings.Contains(r.body, "Имя пользователя") {
		t.Errorf("languages ru: got lang %q", htmlLang(r.body))
	}
	if strings.Contains(r.body, "/.auth/language") {
		t.Errorf("languages ru: the page offers a language switch")
	}
	b.login("alice", testPassword, "/")
	b.enable() // the flow works in the forced language
}

// TestLanguagesOrder: the first of languages is the default for a browser
// that asks for none of them.
func TestLanguagesOrder(t *testing.T) {
	g := newGate(t, gateOpts{extra: "languages ru en"})
	b := g.browser()
	for _, tc := range []struct{ accept, want string }{
		{"", "ru"}, {"de-DE,de", "ru"}, {"en-GB", "en"}, {"fr, en;q=0.5", "en"},
	} {
		if r := b.get("/.auth/login", "Accept-Language", tc.accept); htmlLang(r.body) != tc.want {
			t.Errorf("Accept-Language %q: got %q, want %q", tc.accept, htmlLang(r.body), tc.want)
		}
	}
}

func TestThrottledPageInRussian(t *testing.T) {
	g := newGate(t, gateOpts{extra: "free_failures 1"})
	b := g.browser()
	ru := []string{"Accept-Language", "ru"}
	for range 2 {
		b.post("/.auth/login", url.Values{"username": {"alice"}, "password": {"x"}}, ru...)
	}
	r := b.post("/.auth/login", url.Values{"username": {"alice"}, "password": {"x"}}, ru...)
	if r.status != http.StatusTooManyRequests || !strings.Contains(r.body, "Слишком много попыток") || !strings.Contains(r.body, "Повторите попытку через 1 секунду.") {
		t.Errorf("throttled in Russian: got %d: %.800s", r.status, r.body)
	}
}
