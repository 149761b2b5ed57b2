package meta

import (
	"errors"
	"strings"

	"github.com/cepcomunicacion/cepjobs/internal/meta/graph"
)

// Config is the Conversions API part of the configuration. With no pixel
// and no token, leads are not reported to Meta.
type Config struct {
	// PixelID is the pixel (dataset) the events belong to.
	PixelID string `env:"META_PIXEL_ID"`
	// AccessToken is the Conversions API token generated in Events Manager.
	AccessToken string `env:"META_ACCESS_TOKEN" secret:"true"`
	BaseURL     string `env:"META_BASE_URL" default:"https://graph.facebook.com"`
	APIVersion  string `env:"META_API_VERSION" default:"v26.0"`
	// TestEventCode routes events to Events Manager's Test Events tab
	// instead of the live data set; empty in production.
	TestEventCode string `env:"META_TEST_EVENT_CODE"`
}

// Enabled reports whether leads are sent to the Conversions API.
func (c Config) Enabled() bool { return c.PixelID != "" && c.AccessToken != "" }

// Validate reports what is wrong with c. A half-set configuration is an
// error: silently not sending events would look like it works.
func (c Config) Validate() error {
	var errs []error
	switch {
	case c.PixelID != "" && c.AccessToken == "":
		errs = append(errs, errors.New("META_ACCESS_TOKEN: required when META_PIXEL_ID is set"))
	case c.PixelID == "" && c.AccessToken != "":
		errs = append(errs, errors.New("META_PIXEL_ID: required when META_ACCESS_TOKEN is set"))
	}
	if c.PixelID != "" {
		errs = append(errs, graph.CheckID("META_PIXEL_ID", c.PixelID))
	}
	if c.AccessToken != "" && strings.ContainsAny(c.AccessToken, " \t\r\n") {
		errs = append(errs, errors.New("META_ACCESS_TOKEN: contains white space; paste the token alone"))
	}
	if c.BaseURL != "" {
		errs = append(errs, graph.CheckBaseURL("META_BASE_URL", c.BaseURL))
	}
	if c.APIVersion != "" {
		errs = append(errs, graph.CheckVersion("META_API_VERSION", c.APIVersion))
	}
	if strings.ContainsAny(c.TestEventCode, " \t\r\n") {
		errs = append(errs, errors.New("META_TEST_EVENT_CODE: want the code Events Manager shows, such as TEST12345"))
	}
	return errors.Join(errs...)
}

// withDefaults fills what the loader would have, for a Config built in code.
func (c Config) withDefaults() Config {
	if c.BaseURL == "" {
		c.BaseURL = graph.DefaultBaseURL
	}
	if c.APIVersion == "" {
		c.APIVersion = graph.DefaultVersion
	}
	return c
}
