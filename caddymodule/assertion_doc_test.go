package caddymodule

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// docBlock returns the fenced code block of lang in docs/assertion.md.
func docBlock(t *testing.T, lang string) string {
	t.Helper()
	b, err := os.ReadFile("../docs/assertion.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n```"+lang+"\n")
	if !ok {
		t.Fatalf("docs/assertion.md has no %s block", lang)
	}
	block, _, ok := strings.Cut(rest, "\n```\n")
	if !ok {
		t.Fatalf("docs/assertion.md: the %s block does not end", lang)
	}
	return block
}

// TestAssertionDocGo: the Go code of docs/assertion.md is the code the
// assertion tests verify with (assertion_example_test.go), line for line.
func TestAssertionDocGo(t *testing.T) {
	b, err := os.ReadFile("assertion_example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(b), "// doc:begin\n")
	src, _, ok := strings.Cut(rest, "\n// doc:end")
	if !ok {
		t.Fatal("assertion_example_test.go has no doc markers")
	}
	if doc := docBlock(t, "go"); strings.TrimSpace(doc) != strings.TrimSpace(src) {
		t.Errorf("docs/assertion.md's Go code differs from assertion_example_test.go's:\n--- doc\n%s\n--- tested\n%s", doc, src)
	}
}

// pythonWithJWT returns a Python that has PyJWT and cryptography: the
// first python3 on the PATH, else Debian's.
func pythonWithJWT(t *testing.T) string {
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(p, "-c", "import jwt, cryptography").Run() == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("PyJWT is missing; CI must install it (apt-get install -y python3-jwt python3-cryptography)")
	}
	t.Skip("PyJWT is not installed; run: apt-get install -y python3-jwt python3-cryptography")
	return ""
}

// pyDriver runs the documented functions against a real Caddy. The
// gate's clock is the test clock: PyJWT's is moved to match it.
const pyDriver = `

import datetime, ssl, sys

offset = float(sys.argv[2])
real = datetime.datetime


class shifted(real):
    @classmethod
    def now(cls, tz=None):
        return real.now(tz) + datetime.timedelta(seconds=offset)


jwt.api_jwt.datetime = shifted
args = json.loads(sys.argv[1])
keys = fetch_keys(args["jwks"], context=ssl._create_unverified_context())  # Caddy's test CA
out = {}
for name, (token, issuer, audience, shift) in args["cases"].items():
    offset = float(sys.argv[2]) + shift
    try:
        claims = verify_assertion(token, keys, issuer, audience)
        out[name] = {"ok": True, "sub": claims["sub"], "amr": claims["amr"], "sid": claims["sid"]}
    except (jwt.InvalidTokenError, KeyError) as e:
        out[name] = {"ok": False, "error": type(e).__name__}
print(json.dumps(out))
`

// TestAssertionDocPython runs the Python code of docs/assertion.md with
// PyJWT, an implementation apart from the gate's and go-jose: it fetches
// the JWKS over HTTP from a real Caddy and verifies a valid token, and
// refuses a tampered, an expired one and another audience; after a key
// rotation, with the keys fetched again, both keys' tokens verify.
func TestAssertionDocPython(t *testing.T) {
	py := pythonWithJWT(t)
	for _, alg := range []string{"ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			g := assertionGate(t, "assertion_algorithm "+alg)
			e := g.enrolAlice()
			b := fullLogin(t, g, e)
			b.get("/app")
			token := tokenOf(t, g)
			parts := strings.Split(token, ".")
			sig := []byte(parts[2])
			sig[5] ^= 2
			tampered := parts[0] + "." + parts[1] + "." + string(sig)
			iss := "https://localhost:9443"
			cases := map[string][4]any{
				"valid":          {token, iss, "app.example", 0},
				"tampered":       {tampered, iss, "app.example", 0},
				"expired":        {token, iss, "app.example", 180},
				"wrong_audience": {token, iss, "other.example", 0},
				"wrong_issuer":   {token, "https://other.example", "app.example", 0},
			}
			got := runPy(t, py, g, cases)
			if v := got["valid"]; v.OK != true || v.Sub != "alice" || strings.Join(v.AMR, " ") != "pwd otp" || v.SID == "" {
				t.Errorf("valid: %+v", v)
			}
			for _, name := range []string{"tampered", "expired", "wrong_audience", "wrong_issuer"} {
				if got[name].OK {
					t.Errorf("%s: PyJWT accepted it", name)
				}
			}
			if alg != "ES256" {
				return
			}
			// After a rotation both keys are published (the overlap):
			// the old token's signature still verifies (at its time).
			advance(24*time.Hour + time.Minute)
			b.get("/after")
			newer := tokenOf(t, g)
			if kidOf(t, newer) == kidOf(t, token) {
				t.Fatal("no rotation")
			}
			got = runPy(t, py, g, map[string][4]any{
				"old": {token, iss, "app.example", -(24*time.Hour + time.Minute).Seconds()},
				"new": {newer, iss, "app.example", 0},
			})
			if !got["old"].OK || !got["new"].OK {
				t.Errorf("during the overlap: %+v", got)
			}
			advance(time.Hour)
			got = runPy(t, py, g, map[string][4]any{
				"old": {token, iss, "app.example", -(25*time.Hour + time.Minute).Seconds()},
			})
			if got["old"].OK || got["old"].Error != "KeyError" {
				t.Errorf("after the overlap the old key's token: %+v", got["old"])
			}
		})
		unload(t)
	}
}

type pyResult struct {
	OK    bool     `json:"ok"`
	Sub   string   `json:"sub"`
	AMR   []string `json:"amr"`
	SID   string   `json:"sid"`
	Error string   `json:"error"`
}

func runPy(t *testing.T, py string, g *testGate, cases map[string][4]any) map[string]pyResult {
	t.Helper()
	script := filepath.Join(t.TempDir(), "verify.py")
	if err := os.WriteFile(script, []byte(docBlock(t, "python")+pyDriver), 0o600); err != nil {
		t.Fatal(err)
	}
	args, _ := json.Marshal(map[string]any{"jwks": g.base + "/.auth/.well-known/jwks.json", "cases": cases})
	offset := float64(testNow().UnixNano()-time.Now().UnixNano()) / 1e9
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, script, string(args), strconv.FormatFloat(offset, 'f', 3, 64)).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	var got map[string]pyResult
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("python said %s (%v)", out, err)
	}
	return got
}
