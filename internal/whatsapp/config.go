package whatsapp

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/cepcomunicacion/cepjobs/internal/meta/graph"
)

// Config is the WhatsApp part of the configuration. With no token, no
// sender number or no sales numbers, the sales team is not notified.
type Config struct {
	// Token is a (system user) access token with whatsapp_business_messaging.
	Token string `env:"WHATSAPP_TOKEN" secret:"true"`
	// PhoneNumberID is the id Meta gives our sending number (not the
	// number itself).
	PhoneNumberID string `env:"WHATSAPP_PHONE_NUMBER_ID"`
	// SalesNumbers are the sales team's numbers in E.164 (+34611000000).
	SalesNumbers     []string `env:"WHATSAPP_SALES_NUMBERS"`
	Template         string   `env:"WHATSAPP_TEMPLATE" default:"nuevo_lead"`
	TemplateLanguage string   `env:"WHATSAPP_TEMPLATE_LANGUAGE" default:"es"`
	BaseURL          string   `env:"WHATSAPP_BASE_URL" default:"https://graph.facebook.com"`
	APIVersion       string   `env:"WHATSAPP_API_VERSION" default:"v26.0"`
	// RatePerSecond is our send rate for the shared limiter. Meta allows
	// 80 messages/s per number by default and 20 for numbers also used
	// in the WhatsApp Business app, so 20 is safe for both.
	RatePerSecond float64 `env:"WHATSAPP_RATE_PER_SECOND" default:"20"`
}

// DefaultTemplate and DefaultLanguage are the approved template the sales
// notification uses: body "Nuevo lead: {{1}} en {{2}}. Ver: {{3}}".
const (
	DefaultTemplate = "nuevo_lead"
	DefaultLanguage = "es"
)

var (
	// e164 is '+', a country code that does not start with 0, and at most
	// 15 digits in all.
	e164 = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
	// templateName is what Meta allows in template names.
	templateName = regexp.MustCompile(`^[a-z0-9_]{1,512}$`)
	// languageCode is Meta's template language form: es, es_ES, es_MX, …
	languageCode = regexp.MustCompile(`^[a-z]{2,3}(_[A-Z]{2})?$`)
)

// Enabled reports whether lead notifications are sent.
func (c Config) Enabled() bool {
	return c.Token != "" && c.PhoneNumberID != "" && len(c.SalesNumbers) > 0
}

// Validate reports what is wrong with c. A half-set configuration is an
// error: silently not notifying the sales team would look like it works.
// Numbers are named by position, not value: they are personal data.
func (c Config) Validate() error {
	var errs []error
	if c.Token != "" || c.PhoneNumberID != "" || len(c.SalesNumbers) > 0 {
		if c.Token == "" {
			errs = append(errs, errors.New("WHATSAPP_TOKEN: required when WhatsApp notifications are configured"))
		}
		if c.PhoneNumberID == "" {
			errs = append(errs, errors.New("WHATSAPP_PHONE_NUMBER_ID: required when WhatsApp notifications are configured"))
		}
		if len(c.SalesNumbers) == 0 {
			errs = append(errs, errors.New("WHATSAPP_SALES_NUMBERS: required when WhatsApp notifications are configured (comma-separated, such as +34611000000)"))
		}
	}
	if c.PhoneNumberID != "" {
		errs = append(errs, graph.CheckID("WHATSAPP_PHONE_NUMBER_ID", c.PhoneNumberID))
	}
	if strings.ContainsAny(c.Token, " \t\r\n") {
		errs = append(errs, errors.New("WHATSAPP_TOKEN: contains white space; paste the token alone"))
	}
	for i, n := range c.SalesNumbers {
		if !e164.MatchString(n) {
			errs = append(errs, fmt.Errorf("WHATSAPP_SALES_NUMBERS: number %d of %d is not E.164 ('+', country code, number, no spaces)", i+1, len(c.SalesNumbers)))
		}
	}
	if c.Template != "" && !templateName.MatchString(c.Template) {
		errs = append(errs, errors.New("WHATSAPP_TEMPLATE: want the template's name as approved: lowercase letters, digits and '_'"))
	}
	if c.TemplateLanguage != "" && !languageCode.MatchString(c.TemplateLanguage) {
		errs = append(errs, errors.New("WHATSAPP_TEMPLATE_LANGUAGE: want a template language code such as es or es_ES"))
	}
	if c.BaseURL != "" {
		errs = append(errs, graph.CheckBaseURL("WHATSAPP_BASE_URL", c.BaseURL))
	}
	if c.APIVersion != "" {
		errs = append(errs, graph.CheckVersion("WHATSAPP_API_VERSION", c.APIVersion))
	}
	if c.RatePerSecond < 0 || c.RatePerSecond > 1000 {
		errs = append(errs, errors.New("WHATSAPP_RATE_PER_SECOND: want a rate between 0 (unlimited) and 1000"))
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
	if c.Template == "" {
		c.Template = DefaultTemplate
	}
	if c.TemplateLanguage == "" {
		c.TemplateLanguage = DefaultLanguage
	}
	return c
}
