package mailchimp

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
)

// Config is the Mailchimp part of the configuration. With no key and no
// audience, syncing leads to Mailchimp is off.
type Config struct {
	APIKey string `env:"MAILCHIMP_API_KEY" secret:"true"`
	// ListID is the audience ("list" in the API) leads are upserted into.
	ListID string `env:"MAILCHIMP_LIST_ID"`
	// BaseURL overrides the data-center URL derived from the key; empty in
	// production, a fake server's URL in tests.
	BaseURL string `env:"MAILCHIMP_BASE_URL"`
}

// dcPattern is what a data-center suffix looks like ("us21"). Anything
// else would end up in a host name, so it is refused rather than escaped.
var dcPattern = regexp.MustCompile(`^[a-z]+[0-9]+$`)

// Enabled reports whether leads are synced to Mailchimp.
func (c Config) Enabled() bool { return c.APIKey != "" && c.ListID != "" }

// Validate reports what is wrong with c. A half-set configuration is an
// error: silently skipping the sync would look like it works.
func (c Config) Validate() error {
	var errs []error
	switch {
	case c.APIKey == "" && c.ListID != "":
		errs = append(errs, errors.New("MAILCHIMP_API_KEY: required when MAILCHIMP_LIST_ID is set"))
	case c.APIKey != "" && c.ListID == "":
		errs = append(errs, errors.New("MAILCHIMP_LIST_ID: required when MAILCHIMP_API_KEY is set"))
	}
	if c.APIKey != "" {
		if _, ok := dataCenter(c.APIKey); !ok {
			errs = append(errs, errors.New("MAILCHIMP_API_KEY: want a key ending in its data center, such as …-us21"))
		}
	}
	if c.ListID != "" && strings.ContainsAny(c.ListID, "/?#% ") {
		errs = append(errs, errors.New("MAILCHIMP_LIST_ID: want the audience id, such as a1b2c3d4e5"))
	}
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, errors.New("MAILCHIMP_BASE_URL: want an http(s) URL, or leave it empty to use the key's data center"))
		}
	}
	return errors.Join(errs...)
}

// APIBase is the URL the API paths ("/3.0/…") hang from: MAILCHIMP_BASE_URL,
// or https://<dc>.api.mailchimp.com for the key's data center.
func (c Config) APIBase() string {
	if c.BaseURL != "" {
		return strings.TrimRight(c.BaseURL, "/")
	}
	dc, _ := dataCenter(c.APIKey)
	return "https://" + dc + ".api.mailchimp.com"
}

// dataCenter is the key's suffix after the last '-': Mailchimp routes every
// account to one data center and the key names it.
func dataCenter(key string) (string, bool) {
	i := strings.LastIndexByte(key, '-')
	if i <= 0 {
		return "", false
	}
	dc := key[i+1:]
	return dc, dcPattern.MatchString(dc)
}
