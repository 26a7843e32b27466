// Package agent names a client's browser and system from its User-Agent,
// for people to read (the Security page, the operator's session list).
package agent

import "strings"

// The Security page names a session's browser and system from its
// User-Agent, with a small table: enough for a person to tell "my phone"
// from "my laptop", nothing decides anything on it (a User-Agent is what
// the client says). The order matters: browsers built on others name the
// other too (Edge says Chrome and Safari; Chrome says Safari).

type agentRule struct{ token, name string }

var browserRules = []agentRule{
	{"Edg/", "Edge"}, {"EdgA/", "Edge"}, {"EdgiOS/", "Edge"}, {"Edge/", "Edge"},
	{"OPR/", "Opera"}, {"Opera", "Opera"},
	{"YaBrowser/", "Yandex Browser"},
	{"Vivaldi/", "Vivaldi"},
	{"SamsungBrowser/", "Samsung Internet"},
	{"Firefox/", "Firefox"}, {"FxiOS/", "Firefox"},
	{"CriOS/", "Chrome"}, {"Chromium/", "Chromium"}, {"Chrome/", "Chrome"},
	{"Safari/", "Safari"},
	{"MSIE ", "Internet Explorer"}, {"Trident/", "Internet Explorer"},
	{"curl/", "curl"}, {"Wget/", "Wget"},
	{"python-requests/", "Python requests"}, {"Python-urllib/", "Python"},
	{"Go-http-client/", "Go"}, {"okhttp/", "OkHttp"},
	{"PostmanRuntime/", "Postman"},
}

var systemRules = []agentRule{
	{"Android", "Android"},
	{"iPhone", "iOS"}, {"iPad", "iPadOS"}, {"iPod", "iOS"},
	{"CrOS", "ChromeOS"},
	{"Windows", "Windows"},
	{"Macintosh", "macOS"}, {"Mac OS X", "macOS"},
	{"Ubuntu", "Linux"}, {"Fedora", "Linux"}, {"Linux", "Linux"},
	{"FreeBSD", "FreeBSD"}, {"OpenBSD", "OpenBSD"},
}

// Parse returns the browser and system a User-Agent names; either is
// empty when the table does not know it.
func Parse(ua string) (browser, system string) {
	return match(ua, browserRules), match(ua, systemRules)
}

func match(ua string, rules []agentRule) string {
	for _, r := range rules {
		if strings.Contains(ua, r.token) {
			return r.name
		}
	}
	return ""
}
