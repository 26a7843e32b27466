package caddymodule

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
)

// raw sends one HTTP/1.1 request exactly as written (request line, header
// lines, no normalisation) to the test site and returns the response.
// Host, Connection: close and, when the browser has one, its session
// cookie are added unless noDefaults is set. A request the server drops
// without a response gives status 0.
func (b *browser) raw(requestLine string, headerLines ...string) response {
	b.t.Helper()
	var sb strings.Builder
	sb.WriteString(requestLine + "\r\n")
	sb.WriteString("Host: localhost:9443\r\nConnection: close\r\n")
	if c := b.cookie(); c != "" {
		fmt.Fprintf(&sb, "Cookie: %s=%s\r\n", DefaultCookieName, c)
	}
	for _, l := range headerLines {
		sb.WriteString(l + "\r\n")
	}
	sb.WriteString("\r\n")
	return rawExchange(b.t, sb.String())
}

// rawExchange writes text to the test site over TLS (HTTP/1.1) and reads
// one response.
func rawExchange(t *testing.T, text string) response {
	t.Helper()
	conn, err := tls.Dial("tcp", "127.0.0.1:9443", &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, text); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return response{} // dropped without an answer
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return response{status: res.StatusCode, header: res.Header, body: string(body)}
}

// reachedUpstream reports whether a response body is the test upstream's
// echo, the sign that a request got through the gate.
func reachedUpstream(r response) bool {
	return strings.Contains(r.body, `"headers":`) && strings.Contains(r.body, `"path":`)
}

// ownScript reports whether n is the pages' own script element, exactly
// as layout.html writes it: <script src="/.auth/assets/app.js" defer>,
// empty.
func ownScript(n *html.Node) bool {
	if n.Data != "script" || n.FirstChild != nil || len(n.Attr) != 2 {
		return false
	}
	for _, a := range n.Attr {
		switch {
		case a.Key == "src" && a.Val == "/.auth/assets/app.js":
		case a.Key == "defer" && a.Val == "":
		default:
			return false
		}
	}
	return true
}

// assertNoMarkup fails if an HTML page holds anything a reflected value
// could have injected: a script-capable element, an event-handler
// attribute, or a javascript:/data:text URL in a link, form or source.
func assertNoMarkup(t *testing.T, what, body string) {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "script", "iframe", "object", "embed", "svg", "math", "base", "frame", "frameset", "applet", "meta":
				if (n.Data != "meta" || hasAttr(n, "http-equiv")) && !ownScript(n) {
					t.Errorf("%s: page holds a <%s> element", what, n.Data)
				}
			}
			for _, a := range n.Attr {
				key := strings.ToLower(a.Key)
				val := strings.ToLower(strings.Join(strings.Fields(a.Val), ""))
				if strings.HasPrefix(key, "on") || key == "style" || key == "srcdoc" || key == "formaction" {
					t.Errorf("%s: <%s> has a %s attribute: %q", what, n.Data, a.Key, a.Val)
				}
				if (key == "href" || key == "src" || key == "action") &&
					(strings.HasPrefix(val, "javascript:") || strings.HasPrefix(val, "vbscript:") || strings.HasPrefix(val, "data:text/html")) {
					t.Errorf("%s: <%s %s=%q>", what, n.Data, a.Key, a.Val)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
}

func hasAttr(n *html.Node, key string) bool {
	for _, a := range n.Attr {
		if strings.EqualFold(a.Key, key) {
			return true
		}
	}
	return false
}

// formOf builds form values from name, value pairs.
func formOf(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v
}
