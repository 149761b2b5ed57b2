package mandrill

import (
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"strings"
)

// Config is the Mailchimp Transactional (Mandrill) part of the
// configuration. With no key or no sender, email goes out another way (or
// not at all).
type Config struct {
	APIKey  string `env:"MANDRILL_API_KEY" secret:"true"`
	BaseURL string `env:"MANDRILL_BASE_URL" default:"https://mandrillapp.com/api/1.0"`
	// From is the sender, "addr" or "Name <addr>"; its domain must be a
	// verified sending domain in Mandrill or every message is rejected.
	From string `env:"MANDRILL_FROM"`
	// Templates maps courses to template slugs: course=slug,course=slug.
	Templates []string `env:"MANDRILL_TEMPLATES"`
	// DefaultTemplate is the slug for courses Templates does not name.
	DefaultTemplate string `env:"MANDRILL_DEFAULT_TEMPLATE" default:"welcome"`
}

// Enabled reports whether email is sent through Mandrill.
func (c Config) Enabled() bool { return c.APIKey != "" && c.From != "" }

// Validate reports what is wrong with c.
func (c Config) Validate() error {
	var errs []error
	if c.APIKey != "" && c.From == "" {
		errs = append(errs, errors.New("MANDRILL_FROM: required when MANDRILL_API_KEY is set"))
	}
	if c.From != "" {
		if _, err := mail.ParseAddress(c.From); err != nil {
			errs = append(errs, errors.New(`MANDRILL_FROM: want an address such as "CEP Formación <no-reply@cepcomunicacion.com>"`))
		}
	}
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		errs = append(errs, errors.New("MANDRILL_BASE_URL: want an http(s) URL such as https://mandrillapp.com/api/1.0"))
	}
	if _, err := parseTemplates(c.Templates); err != nil {
		errs = append(errs, fmt.Errorf("MANDRILL_TEMPLATES: %v", err))
	}
	if c.Enabled() && strings.TrimSpace(c.DefaultTemplate) == "" {
		errs = append(errs, errors.New("MANDRILL_DEFAULT_TEMPLATE: required when Mandrill is enabled"))
	}
	return errors.Join(errs...)
}

// TemplateFor is the template slug for a course: its MANDRILL_TEMPLATES
// entry (course names compared case-insensitively), else the default.
func (c Config) TemplateFor(course string) string {
	m, _ := parseTemplates(c.Templates)
	if slug, ok := m[strings.ToLower(strings.TrimSpace(course))]; ok {
		return slug
	}
	return strings.TrimSpace(c.DefaultTemplate)
}

func parseTemplates(entries []string) (map[string]string, error) {
	m := make(map[string]string, len(entries))
	for _, e := range entries {
		course, slug, ok := strings.Cut(e, "=")
		course, slug = strings.ToLower(strings.TrimSpace(course)), strings.TrimSpace(slug)
		switch {
		case !ok || course == "" || slug == "":
			return nil, fmt.Errorf("want course=template pairs separated by commas, got %q", e)
		case strings.ContainsAny(slug, " \t/"):
			return nil, fmt.Errorf("template slug %q has a space or slash", slug)
		case m[course] != "":
			return nil, fmt.Errorf("course %q is listed twice", course)
		}
		m[course] = slug
	}
	return m, nil
}

// sender splits From for the API's from_email and from_name.
func (c Config) sender() (*mail.Address, error) {
	return mail.ParseAddress(c.From)
}
