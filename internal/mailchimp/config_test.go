package mailchimp_test

import (
	"strings"
	"testing"

	"github.com/cepcomunicacion/cepjobs/internal/mailchimp"
)

func TestConfigAPIBase(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  mailchimp.Config
		want string
	}{
		{mailchimp.Config{APIKey: "abc123-us21"}, "https://us21.api.mailchimp.com"},
		{mailchimp.Config{APIKey: "abc-def-us6"}, "https://us6.api.mailchimp.com"},
		{mailchimp.Config{APIKey: "abc123-us21", BaseURL: "http://127.0.0.1:9/"}, "http://127.0.0.1:9"},
	} {
		if got := tc.cfg.APIBase(); got != tc.want {
			t.Errorf("APIBase(%q, %q): got %q, want %q", tc.cfg.APIKey, tc.cfg.BaseURL, got, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg     mailchimp.Config
		enabled bool
		errs    []string // each problem's variable name, in order
	}{
		{mailchimp.Config{}, false, nil},
		{mailchimp.Config{APIKey: "abc123-us21", ListID: "a1b2c3d4e5"}, true, nil},
		{mailchimp.Config{APIKey: "abc123-us21"}, false, []string{"MAILCHIMP_LIST_ID"}},
		{mailchimp.Config{ListID: "a1b2c3d4e5"}, false, []string{"MAILCHIMP_API_KEY"}},
		{mailchimp.Config{APIKey: "abc123", ListID: "a1b2c3d4e5"}, true, []string{"MAILCHIMP_API_KEY"}},
		{mailchimp.Config{APIKey: "abc123-us21.evil.com/x", ListID: "a1b2c3d4e5"}, true, []string{"MAILCHIMP_API_KEY"}},
		{mailchimp.Config{APIKey: "abc123-us21", ListID: "a1/../b"}, true, []string{"MAILCHIMP_LIST_ID"}},
		{mailchimp.Config{APIKey: "abc123-us21", ListID: "a1b2c3d4e5", BaseURL: "ftp://x"}, true, []string{"MAILCHIMP_BASE_URL"}},
	} {
		if got := tc.cfg.Enabled(); got != tc.enabled {
			t.Errorf("Enabled(%+v): got %v, want %v", tc.cfg, got, tc.enabled)
		}
		err := tc.cfg.Validate()
		var got []string
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				name, _, _ := strings.Cut(line, ":")
				got = append(got, name)
			}
		}
		if strings.Join(got, ",") != strings.Join(tc.errs, ",") {
			t.Errorf("Validate(%+v): got %v, want problems with %v", tc.cfg, err, tc.errs)
		}
		if err != nil && strings.Contains(err.Error(), "abc123") {
			t.Errorf("Validate shows the key: %v", err)
		}
	}
}
