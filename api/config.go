package api

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Config is the HTTP part of the configuration.
type Config struct {
	Addr            string        `env:"CEPJOBS_HTTP_ADDR" default:":8080"`
	Tokens          Tokens        `env:"CEPJOBS_API_TOKENS"`
	RateLimit       float64       `env:"CEPJOBS_RATE_LIMIT" default:"50"`
	RateBurst       int           `env:"CEPJOBS_RATE_BURST" default:"100"`
	RequestTimeout  time.Duration `env:"CEPJOBS_REQUEST_TIMEOUT" default:"10s"`
	ShutdownTimeout time.Duration `env:"CEPJOBS_SHUTDOWN_TIMEOUT" default:"15s"`
	Dashboard       DashboardConfig
	MetaWebhook     MetaWebhookConfig
}

// DashboardConfig is the asynqmon mount. Without a user and password hash
// the dashboard is not mounted: there is no default password.
type DashboardConfig struct {
	User         string `env:"CEPJOBS_DASHBOARD_USER"`
	PasswordHash string `env:"CEPJOBS_DASHBOARD_PASSWORD_HASH" secret:"true"`
	ReadOnly     bool   `env:"CEPJOBS_DASHBOARD_READ_ONLY" default:"false"`
}

// Enabled reports whether the dashboard has credentials.
func (d DashboardConfig) Enabled() bool { return d.User != "" && d.PasswordHash != "" }

// Validate reports every problem with c.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("CEPJOBS_HTTP_ADDR: want host:port or :port, got %q", c.Addr))
	}
	if c.RateLimit <= 0 {
		errs = append(errs, errors.New("CEPJOBS_RATE_LIMIT: must be greater than 0 (requests per second per token)"))
	}
	if c.RateBurst < 1 {
		errs = append(errs, errors.New("CEPJOBS_RATE_BURST: must be at least 1"))
	}
	if c.RequestTimeout <= 0 {
		errs = append(errs, errors.New("CEPJOBS_REQUEST_TIMEOUT: must be positive"))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("CEPJOBS_SHUTDOWN_TIMEOUT: must be positive"))
	}
	d := c.Dashboard
	switch {
	case d.User != "" && d.PasswordHash == "":
		errs = append(errs, errors.New("CEPJOBS_DASHBOARD_PASSWORD_HASH: required when CEPJOBS_DASHBOARD_USER is set (a bcrypt hash: cepjobs hash-password)"))
	case d.User == "" && d.PasswordHash != "":
		errs = append(errs, errors.New("CEPJOBS_DASHBOARD_USER: required when CEPJOBS_DASHBOARD_PASSWORD_HASH is set"))
	case d.PasswordHash != "":
		if _, err := bcrypt.Cost([]byte(d.PasswordHash)); err != nil {
			errs = append(errs, errors.New("CEPJOBS_DASHBOARD_PASSWORD_HASH: not a bcrypt hash (want $2a$/$2b$/$2y$…; make one with: cepjobs hash-password)"))
		}
	}
	return errors.Join(errs...)
}

// Scopes an API token can hold.
const (
	ScopeLeadsWrite     = "leads:write"
	ScopeLeadsRead      = "leads:read"
	ScopeLeadsErase     = "leads:erase"
	ScopeContentWrite   = "content:write"
	ScopeContentRead    = "content:read"
	ScopeCampaignsWrite = "campaigns:write"
	ScopeCampaignsRead  = "campaigns:read"
	ScopeBackupsWrite   = "backups:write"
	ScopeBackupsRead    = "backups:read"
	ScopeExportsWrite   = "exports:write"
	ScopeStatsRead      = "stats:read"
)

// KnownScopes lists every scope; a token naming another one is a typo.
var KnownScopes = []string{
	ScopeLeadsWrite, ScopeLeadsRead, ScopeLeadsErase, ScopeContentWrite, ScopeContentRead,
	ScopeCampaignsWrite, ScopeCampaignsRead, ScopeBackupsWrite, ScopeBackupsRead,
	ScopeExportsWrite, ScopeStatsRead,
}

// MinTokenLength keeps guessable tokens out of production.
const MinTokenLength = 16

// Token is one API client: a name (for logs and metrics, never the secret),
// the secret itself and what it may do.
type Token struct {
	Name   string
	Secret string
	Scopes []string
}

// Tokens is CEPJOBS_API_TOKENS: comma-separated name:token:scope|scope
// entries. A scope may contain a colon; the token may not.
type Tokens []Token

var tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// UnmarshalText parses the variable. Errors name the entry by position and
// name, never by its secret.
func (ts *Tokens) UnmarshalText(b []byte) error {
	var (
		out   Tokens
		errs  []error
		names = map[string]bool{}
		secs  = map[string]bool{}
	)
	for i, entry := range strings.Split(string(b), ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		where := fmt.Sprintf("entry %d", i+1)
		name, rest, ok1 := strings.Cut(entry, ":")
		secret, scopes, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 {
			errs = append(errs, fmt.Errorf("%s: want name:token:scope|scope", where))
			continue
		}
		if !tokenNameRE.MatchString(name) {
			errs = append(errs, fmt.Errorf("%s: name must be 1-64 letters, digits, '.', '_' or '-'", where))
			continue
		}
		where = fmt.Sprintf("entry %d (%s)", i+1, name)
		if names[name] {
			errs = append(errs, fmt.Errorf("%s: name used twice", where))
		}
		names[name] = true
		if len(secret) < MinTokenLength {
			errs = append(errs, fmt.Errorf("%s: token must be at least %d characters (try: openssl rand -hex 24)", where, MinTokenLength))
		}
		if secs[secret] {
			errs = append(errs, fmt.Errorf("%s: token used by another entry", where))
		}
		secs[secret] = true
		t := Token{Name: name, Secret: secret}
		for _, s := range strings.Split(scopes, "|") {
			s = strings.TrimSpace(s)
			if !slices.Contains(KnownScopes, s) {
				errs = append(errs, fmt.Errorf("%s: unknown scope %q (known: %s)", where, s, strings.Join(KnownScopes, ", ")))
				continue
			}
			t.Scopes = append(t.Scopes, s)
		}
		out = append(out, t)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	*ts = out
	return nil
}

// Redacted is the variable as `cepjobs config` prints it: secrets masked.
func (ts Tokens) Redacted() string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = t.Name + ":xxxxx:" + strings.Join(t.Scopes, "|")
	}
	return strings.Join(parts, ",")
}

// HashPassword makes the bcrypt hash CEPJOBS_DASHBOARD_PASSWORD_HASH holds.
func HashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}
