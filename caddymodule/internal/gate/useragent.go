package gate

import "strings"

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
	browser, system := uaBrowser(ua), uaSystem(ua)
	switch {
	case browser != "" && system != "":
		return browser + ", " + system
	case browser != "":
		return browser
	}
	return system
}

// uaBrowser names the browser (or tool) of a User-Agent. The order
// matters: Edge and Opera also say Chrome, Chrome also says Safari.
func uaBrowser(ua string) string {
	switch {
	case strings.HasPrefix(ua, "curl/"):
		return "curl"
	case strings.HasPrefix(ua, "Wget/"):
		return "Wget"
	case strings.Contains(ua, "Edg/"), strings.Contains(ua, "EdgA/"), strings.Contains(ua, "EdgiOS/"), strings.Contains(ua, "Edge/"):
		return "Edge"
	case strings.Contains(ua, "OPR/"), strings.Contains(ua, "Opera"):
		return "Opera"
	case strings.Contains(ua, "Firefox/"), strings.Contains(ua, "FxiOS/"):
		return "Firefox"
	case strings.Contains(ua, "Chrome/"), strings.Contains(ua, "CriOS/"), strings.Contains(ua, "Chromium/"):
		return "Chrome"
	case strings.Contains(ua, "Safari/") && strings.Contains(ua, "Version/"):
		return "Safari"
	}
	return ""
}

// uaSystem names the operating system of a User-Agent. Android says
// Linux, iOS says "like Mac OS X": they are looked for first.
func uaSystem(ua string) string {
	switch {
	case strings.Contains(ua, "Android"):
		return "Android"
	case strings.Contains(ua, "iPhone"), strings.Contains(ua, "iPad"), strings.Contains(ua, "iPod"):
		return "iOS"
	case strings.Contains(ua, "Windows"):
		return "Windows"
	case strings.Contains(ua, "CrOS"):
		return "ChromeOS"
	case strings.Contains(ua, "Macintosh"), strings.Contains(ua, "Mac OS X"):
		return "macOS"
	case strings.Contains(ua, "Linux"), strings.Contains(ua, "X11"):
		return "Linux"
	}
	return ""
}
