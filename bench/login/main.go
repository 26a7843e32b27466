// Command login logs in to a two_factor site the way a person does, for
// the load test: the password, then a TOTP code from the authenticator
// app (here computed from the key shown on the enable page). It prints the
// session cookie's value, for wrk to send.
//
// With -enrol, a user without two-factor authentication turns it on first
// (as on the Security page: the key from the QR code page, a code and the
// password), logs out, and logs in again with password and code.
//
// With -logins N, it instead does N password logins (for a user without
// two-factor authentication) from -concurrency clients and prints how long
// they took: the load for the memory figures.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

var (
	base       = flag.String("base", "http://127.0.0.1:18082", "the site's address")
	prefix     = flag.String("prefix", "/.auth", "the module's prefix")
	cookieName = flag.String("cookie", "__Host-two_factor", "the session cookie's name")
	user       = flag.String("user", "alice", "user name")
	password   = flag.String("password", "correct horse battery staple", "password")
	enrol      = flag.Bool("enrol", false, "turn two-factor authentication on first if it is off")
	logins     = flag.Int("logins", 0, "do this many password logins instead, and report the time")
	conc       = flag.Int("concurrency", 8, "clients for -logins")
)

var client = &http.Client{
	Timeout:       2 * time.Minute,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func main() {
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("login: ")
	if *logins > 0 {
		massLogins()
		return
	}
	session, loc, err := passwordStep()
	if err != nil {
		log.Fatal(err)
	}
	if loc != *prefix+"/code" {
		if !*enrol {
			log.Fatalf("%s has two-factor authentication off (the login went to %q); use -enrol", *user, loc)
		}
		secret, step, err := enable(session)
		if err != nil {
			log.Fatal(err)
		}
		if err := post(session, "/logout", nil); err != nil {
			log.Fatal(err)
		}
		if session, loc, err = passwordStep(); err != nil {
			log.Fatal(err)
		}
		if loc != *prefix+"/code" {
			log.Fatalf("after enrolling, the password step went to %q, not the code page", loc)
		}
		// The enrolment used this step's code; the next step's code is
		// already accepted (one step of clock skew).
		if session, err = codeStep(session, secret, step.Add(30*time.Second)); err != nil {
			log.Fatal(err)
		}
		fmt.Println(session)
		return
	}
	log.Fatalf("%s has two-factor authentication on but this helper does not know its key: reset the store", *user)
}

// passwordStep posts the login form and returns the new session cookie and
// where the site sent the browser.
func passwordStep() (string, string, error) {
	res, err := client.PostForm(*base+*prefix+"/login", url.Values{"username": {*user}, "password": {*password}})
	if err != nil {
		return "", "", err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	if res.StatusCode != http.StatusSeeOther {
		return "", "", fmt.Errorf("password step: got status %d, want 303", res.StatusCode)
	}
	c := sessionCookie(res)
	if c == "" {
		return "", "", errors.New("password step: no session cookie")
	}
	return c, res.Header.Get("Location"), nil
}

func sessionCookie(res *http.Response) string {
	for _, c := range res.Cookies() {
		if c.Name == *cookieName {
			return c.Value
		}
	}
	return ""
}

func request(method, path, session string, form url.Values) (*http.Response, []byte, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(context.Background(), method, *base+*prefix+path, body)
	if err != nil {
		return nil, nil, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Cookie", *cookieName+"="+session)
	res, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res, b, err
}

func post(session, path string, form url.Values) error {
	if form == nil {
		form = url.Values{}
	}
	res, _, err := request(http.MethodPost, path, session, form)
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusSeeOther {
		return fmt.Errorf("POST %s: got status %d, want 303", path, res.StatusCode)
	}
	return nil
}

var otpauthRe = regexp.MustCompile(`href="(otpauth://[^"]+)"`)

// enable turns two-factor authentication on and returns the key and the
// time whose code it used.
func enable(session string) (string, time.Time, error) {
	res, body, err := request(http.MethodGet, "/security/enable", session, nil)
	if err != nil {
		return "", time.Time{}, err
	}
	m := otpauthRe.FindSubmatch(body)
	if res.StatusCode != http.StatusOK || m == nil {
		return "", time.Time{}, fmt.Errorf("enable page: got status %d and no otpauth link", res.StatusCode)
	}
	key, err := otp.NewKeyFromURL(html.UnescapeString(string(m[1])))
	if err != nil {
		return "", time.Time{}, err
	}
	now := time.Now()
	code, err := totp.GenerateCode(key.Secret(), now)
	if err != nil {
		return "", time.Time{}, err
	}
	res, body, err = request(http.MethodPost, "/security/enable", session, url.Values{"code": {code}, "password": {*password}})
	if err != nil {
		return "", time.Time{}, err
	}
	// The answer redirects (POST-redirect-GET) to the page that shows the
	// backup codes once, under a new session ID.
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != *prefix+"/security/backup-codes" {
		return "", time.Time{}, fmt.Errorf("enable: got status %d to %q, want 303 to the backup codes", res.StatusCode, res.Header.Get("Location"))
	}
	if c := sessionCookie(res); c != "" {
		session = c
	}
	res, body, err = request(http.MethodGet, "/security/backup-codes", session, nil)
	if err != nil {
		return "", time.Time{}, err
	}
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), "backup-codes") {
		return "", time.Time{}, fmt.Errorf("backup codes page: got status %d, want 200 with the codes", res.StatusCode)
	}
	return key.Secret(), now, nil
}

// codeStep posts the code for time at and returns the full session.
func codeStep(session, secret string, at time.Time) (string, error) {
	code, err := totp.GenerateCode(secret, at)
	if err != nil {
		return "", err
	}
	res, _, err := request(http.MethodPost, "/code", session, url.Values{"code": {code}})
	if err != nil {
		return "", err
	}
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/" {
		return "", fmt.Errorf("code step: got status %d to %q, want 303 to /", res.StatusCode, res.Header.Get("Location"))
	}
	full := sessionCookie(res)
	if full == "" {
		return "", errors.New("code step: no new session cookie")
	}
	return full, nil
}

// massLogins does -logins password logins from -concurrency clients.
func massLogins() {
	var next, failed atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range *conc {
		wg.Go(func() {
			for next.Add(1) <= int64(*logins) {
				if _, loc, err := passwordStep(); err != nil || loc != "/" {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	fmt.Printf("%d logins in %s (%.0f/s), %d failed\n", *logins, elapsed.Round(time.Millisecond), float64(*logins)/elapsed.Seconds(), failed.Load())
	if failed.Load() > 0 {
		os.Exit(1)
	}
}
