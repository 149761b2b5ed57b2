package mandrill_test

import (
	"strings"
	"testing"

	"github.com/cepcomunicacion/cepjobs/internal/mandrill"
)

func TestTemplateFor(t *testing.T) {
	t.Parallel()
	cfg := mandrill.Config{Templates: []string{"marketing-digital=welcome-marketing", " Diseño Gráfico = welcome-diseno "}, DefaultTemplate: "welcome"}
	for course, want := range map[string]string{
		"marketing-digital": "welcome-marketing",
		"Marketing-Digital": "welcome-marketing",
		"diseño gráfico":    "welcome-diseno",
		"fotografía":        "welcome",
		"":                  "welcome",
	} {
		if got := cfg.TemplateFor(course); got != want {
			t.Errorf("TemplateFor(%q): got %q, want %q", course, got, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	base := mandrill.Config{BaseURL: "https://mandrillapp.com/api/1.0", DefaultTemplate: "welcome"}
	with := func(f func(c *mandrill.Config)) mandrill.Config { c := base; f(&c); return c }
	for _, tc := range []struct {
		name    string
		cfg     mandrill.Config
		enabled bool
		errs    []string
	}{
		{"off", base, false, nil},
		{"on", with(func(c *mandrill.Config) { c.APIKey, c.From = "k", "CEP Formación <no-reply@cepcomunicacion.com>" }), true, nil},
		{"bare from", with(func(c *mandrill.Config) { c.APIKey, c.From = "k", "no-reply@cepcomunicacion.com" }), true, nil},
		{"key without from", with(func(c *mandrill.Config) { c.APIKey = "k" }), false, []string{"MANDRILL_FROM"}},
		{"bad from", with(func(c *mandrill.Config) { c.APIKey, c.From = "k", "CEP <nope" }), true, []string{"MANDRILL_FROM"}},
		{"bad url", with(func(c *mandrill.Config) { c.BaseURL = "mandrillapp.com" }), false, []string{"MANDRILL_BASE_URL"}},
		{"bad templates", with(func(c *mandrill.Config) { c.Templates = []string{"marketing"} }), false, []string{"MANDRILL_TEMPLATES"}},
		{"duplicate course", with(func(c *mandrill.Config) { c.Templates = []string{"a=x", "A=y"} }), false, []string{"MANDRILL_TEMPLATES"}},
		{"no default", with(func(c *mandrill.Config) { c.APIKey, c.From, c.DefaultTemplate = "k", "a@b.es", " " }), true, []string{"MANDRILL_DEFAULT_TEMPLATE"}},
	} {
		if got := tc.cfg.Enabled(); got != tc.enabled {
			t.Errorf("%s: Enabled: got %v, want %v", tc.name, got, tc.enabled)
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
			t.Errorf("%s: Validate: got %v, want problems with %v", tc.name, err, tc.errs)
		}
	}
}
