package gate

import "github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/agent"

// maxUserAgent bounds how much of a User-Agent header is looked at.
const maxUserAgent = 512

// describeUserAgent sums up a User-Agent header as the browser and the
// system, such as "Firefox, Linux" or "curl": names only, never text of
// the header itself, so that what a client sends cannot reach a page or
// the store. A browser or system it does not know is left out; for a
// header it knows nothing of, it returns "".
func describeUserAgent(ua string) string {
	if len(ua) > maxUserAgent {
		ua = ua[:maxUserAgent]
	}
	browser, system := agent.Parse(ua) // the one table, shared with the session list
	switch {
	case browser != "" && system != "":
		return browser + ", " + system
	case browser != "":
		return browser
	}
	return system
}
