package caddymodule

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-two-factor/caddy-two-factor/templates"
)

// pageNames are the page templates; each is parsed with layout.html.
var pageNames = []string{"login", "code", "security", "enable", "disable", "backup_codes", "error", "password"}

// page is what every template gets.
type page struct {
	Title            string
	Product          string
	Prefix           string
	User             string
	ShowNav          bool
	Error            string
	Notice           string
	Next             string
	QRCode           template.URL
	Secret           string
	AccountName      string
	OTPAuthURL       template.URL
	Enabled          bool
	BackupLeft       int
	RequireTwoFactor bool
	BackupCodes      []string
	BackupText       template.URL
	Message          string
	Retry            string
	BackLink         string
	BackText         string
	// PasswordChangeable is true for a user kept in the store, who may
	// change their password on the Security pages.
	PasswordChangeable bool
	// MinPassword is the least number of characters of a new password.
	MinPassword int
}

// loadTemplates parses the embedded pages, each file replaced by the one of
// the same name in dir when dir is set and has it.
func loadTemplates(dir string) (map[string]*template.Template, []byte, error) {
	read := func(name string) ([]byte, error) {
		if dir != "" {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err == nil {
				return b, nil
			}
			if !os.IsNotExist(err) {
				return nil, fmt.Errorf("templates_dir: %w", err)
			}
		}
		return fs.ReadFile(templates.FS, name)
	}
	layout, err := read("layout.html")
	if err != nil {
		return nil, nil, err
	}
	pages := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		body, err := read(name + ".html")
		if err != nil {
			return nil, nil, err
		}
		t, err := template.New(name).Parse(string(layout))
		if err == nil {
			_, err = t.Parse(string(body))
		}
		if err != nil {
			return nil, nil, fmt.Errorf("template %s.html: %w", name, err)
		}
		pages[name] = t
	}
	css, err := read("style.css")
	if err != nil {
		return nil, nil, err
	}
	return pages, css, nil
}

// contentSecurityPolicy allows no script at all, styles only from the
// gate's stylesheet, and images only from it or data: (the QR code).
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// securityHeaders go on every response of the gate's own routes.
func securityHeaders(w http.ResponseWriter) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", contentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
}

// render writes a page. Rendering into a buffer first means a template
// error becomes a clean 500, not half a page.
func (h *Handler) render(w http.ResponseWriter, status int, name string, p page) error {
	p.Product = h.Issuer
	p.Prefix = h.Prefix
	if p.User != "" && p.BackLink == "" {
		p.ShowNav = true
	}
	var buf bytes.Buffer
	if err := h.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		h.logger.Error("rendering page", zap.String("page", name), zap.Error(err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return nil
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

// errorPage renders a page that explains a refusal.
func (h *Handler) errorPage(w http.ResponseWriter, status int, title, message string) error {
	return h.render(w, status, "error", page{
		Title: title, Message: message,
		BackLink: h.Prefix + "/security", BackText: "Back to Security",
	})
}

// throttled refuses an attempt while the account or client must wait.
func (h *Handler) throttled(w http.ResponseWriter, wait time.Duration) error {
	w.Header().Set("Retry-After", retryAfter(wait))
	return h.render(w, http.StatusTooManyRequests, "error", page{
		Title:    "Too many attempts",
		Message:  "For your security, logging in is paused after several unsuccessful attempts.",
		Retry:    humanWait(wait),
		BackLink: h.Prefix + "/login", BackText: "Back to log in",
	})
}

// unavailable is the page for a store that cannot be read or written.
func (h *Handler) unavailable(w http.ResponseWriter, err error) error {
	h.logger.Error("store failed; refusing the request", zap.Error(err))
	return h.render(w, http.StatusServiceUnavailable, "error", page{
		Title:    "Temporarily unavailable",
		Message:  "Logging in is not possible right now. Nothing was changed. Please try again in a few minutes.",
		BackLink: h.Prefix + "/login", BackText: "Back to log in",
	})
}

func humanWait(d time.Duration) string {
	s := int((d + time.Second - 1) / time.Second)
	switch {
	case s <= 1:
		return "1 second"
	case s < 60:
		return fmt.Sprintf("%d seconds", s)
	case s < 120:
		return "1 minute"
	case s < 3600:
		return fmt.Sprintf("%d minutes", (s+59)/60)
	default:
		h := (s + 3599) / 3600
		if h == 1 {
			return "1 hour"
		}
		return fmt.Sprintf("%d hours", h)
	}
}

// denyCrossSite answers a state-changing request from another site.
func (h *Handler) denyCrossSite(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w)
	_ = h.errorPage(w, http.StatusForbidden, "Request refused", "This form was sent from another site, so it was not accepted. Open the page on this site and try again.")
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
