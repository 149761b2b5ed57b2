// Package hcaptcha verifies hCaptcha tokens server-side through the siteverify
// endpoint (https://docs.hcaptcha.com/#verify-the-user-response-server-side).
package hcaptcha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultVerifyURL is hCaptcha's public siteverify endpoint.
const DefaultVerifyURL = "https://api.hcaptcha.com/siteverify"

// Config is the captcha part of the configuration. With no secret,
// verification is off and tokens are ignored.
type Config struct {
	Secret    string `env:"HCAPTCHA_SECRET" secret:"true"`
	SiteKey   string `env:"HCAPTCHA_SITEKEY"`
	VerifyURL string `env:"HCAPTCHA_VERIFY_URL" default:"https://api.hcaptcha.com/siteverify"`
}

// Validate reports what is wrong with c.
func (c Config) Validate() error {
	if c.Secret == "" {
		return nil
	}
	u, err := url.Parse(c.VerifyURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return errors.New("HCAPTCHA_VERIFY_URL: want an http(s) URL")
	}
	return nil
}

// Enabled reports whether tokens are verified.
func (c Config) Enabled() bool { return c.Secret != "" }

// ErrRejected: hCaptcha says the token is not a valid, fresh solution. The
// client's fault: answer 422.
var ErrRejected = errors.New("captcha rejected")

// ErrUnavailable: the token could not be checked (network, hCaptcha down, or
// our secret refused). Not the client's fault: answer 503, lose nothing.
var ErrUnavailable = errors.New("captcha verification unavailable")

// Verifier checks tokens.
type Verifier struct {
	cfg  Config
	http *http.Client
}

// New returns a Verifier. A nil client means a client with a 5 s timeout.
func New(cfg Config, client *http.Client) *Verifier {
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	return &Verifier{cfg: cfg, http: client}
}

type siteverifyResponse struct {
	Success    bool     `json:"success"`
	ErrorCodes []string `json:"error-codes"`
}

// clientCodes are the error codes that mean the token itself is bad.
var clientCodes = map[string]bool{
	"missing-input-response":           true,
	"invalid-input-response":           true,
	"invalid-or-already-seen-response": true,
	"not-using-dummy-passcode":         true,
	"expired-input-response":           true,
}

// Verify checks token for the user at remoteIP (may be empty). It returns nil,
// an error wrapping ErrRejected, or one wrapping ErrUnavailable.
func (v *Verifier) Verify(ctx context.Context, token, remoteIP string) error {
	if strings.TrimSpace(token) == "" {
		return fmt.Errorf("%w: missing-input-response", ErrRejected)
	}
	form := url.Values{"secret": {v.cfg.Secret}, "response": {token}}
	if remoteIP != "" {
		form.Set("remoteip", remoteIP)
	}
	if v.cfg.SiteKey != "" {
		form.Set("sitekey", v.cfg.SiteKey)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.cfg.VerifyURL, strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("%w: build request: %v", ErrUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := v.http.Do(req)
	if err != nil {
		// The error text holds the URL only, never the secret: it is in the body.
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: siteverify answered %s", ErrUnavailable, resp.Status)
	}
	var out siteverifyResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&out); err != nil {
		return fmt.Errorf("%w: decode siteverify answer: %v", ErrUnavailable, err)
	}
	if out.Success {
		return nil
	}
	for _, c := range out.ErrorCodes {
		if clientCodes[c] {
			return fmt.Errorf("%w: %s", ErrRejected, strings.Join(out.ErrorCodes, ", "))
		}
	}
	if len(out.ErrorCodes) == 0 {
		return fmt.Errorf("%w: no error code", ErrRejected)
	}
	// invalid-input-secret, sitekey-secret-mismatch, bad-request: our side.
	return fmt.Errorf("%w: %s", ErrUnavailable, strings.Join(out.ErrorCodes, ", "))
}
