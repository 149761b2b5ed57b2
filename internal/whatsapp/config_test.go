package whatsapp_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/cepcomunicacion/cepjobs/internal/meta/graph"
	"github.com/cepcomunicacion/cepjobs/internal/whatsapp"
)

func goodConfig() whatsapp.Config {
	return whatsapp.Config{
		Token: token, PhoneNumberID: phoneNumberID, SalesNumbers: []string{salesNumber, "+5215512345678"},
		Template: "nuevo_lead", TemplateLanguage: "es", BaseURL: graph.DefaultBaseURL, APIVersion: "v26.0", RatePerSecond: 20,
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	if c := goodConfig(); c.Validate() != nil || !c.Enabled() {
		t.Fatalf("good config: err %v, enabled %v", c.Validate(), c.Enabled())
	}
	off := whatsapp.Config{Template: "nuevo_lead", TemplateLanguage: "es", BaseURL: graph.DefaultBaseURL, APIVersion: "v26.0", RatePerSecond: 20}
	if err := off.Validate(); err != nil || off.Enabled() {
		t.Errorf("unset config: err %v, enabled %v, want nil and off", err, off.Enabled())
	}
	for name, tc := range map[string]struct {
		edit func(*whatsapp.Config)
		want string
	}{
		"no token":            {func(c *whatsapp.Config) { c.Token = "" }, "WHATSAPP_TOKEN: "},
		"no phone number id":  {func(c *whatsapp.Config) { c.PhoneNumberID = "" }, "WHATSAPP_PHONE_NUMBER_ID: "},
		"no sales numbers":    {func(c *whatsapp.Config) { c.SalesNumbers = nil }, "WHATSAPP_SALES_NUMBERS: "},
		"phone id not digits": {func(c *whatsapp.Config) { c.PhoneNumberID = "+34600" }, "WHATSAPP_PHONE_NUMBER_ID: "},
		"national number":     {func(c *whatsapp.Config) { c.SalesNumbers = []string{salesNumber, "600111222"} }, "WHATSAPP_SALES_NUMBERS: number 2 of 2"},
		"spaces in number":    {func(c *whatsapp.Config) { c.SalesNumbers = []string{"+34 600 111 222"} }, "WHATSAPP_SALES_NUMBERS: number 1 of 1"},
		"template name":       {func(c *whatsapp.Config) { c.Template = "Nuevo Lead" }, "WHATSAPP_TEMPLATE: "},
		"language":            {func(c *whatsapp.Config) { c.TemplateLanguage = "spanish" }, "WHATSAPP_TEMPLATE_LANGUAGE: "},
		"base URL":            {func(c *whatsapp.Config) { c.BaseURL = "localhost:8080" }, "WHATSAPP_BASE_URL: "},
		"version":             {func(c *whatsapp.Config) { c.APIVersion = "v26" }, "WHATSAPP_API_VERSION: "},
		"rate":                {func(c *whatsapp.Config) { c.RatePerSecond = -1 }, "WHATSAPP_RATE_PER_SECOND: "},
	} {
		c := goodConfig()
		tc.edit(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error starting %q", name, err, tc.want)
			continue
		}
		for _, s := range []string{"600111222", "600 111 222", token} {
			if strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q shows %q", name, err, s)
			}
		}
	}
}

// The loader's defaults and the ones New applies to a Config built in code
// must agree.
func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	typ := reflect.TypeFor[whatsapp.Config]()
	for field, want := range map[string]string{
		"BaseURL": graph.DefaultBaseURL, "APIVersion": graph.DefaultVersion,
		"Template": whatsapp.DefaultTemplate, "TemplateLanguage": whatsapp.DefaultLanguage,
	} {
		f, _ := typ.FieldByName(field)
		if got := f.Tag.Get("default"); got != want {
			t.Errorf("%s default tag: got %q, want %q", field, got, want)
		}
	}
	if _, err := whatsapp.New(whatsapp.Config{Token: token, PhoneNumberID: phoneNumberID, SalesNumbers: []string{salesNumber}}, nil); err != nil {
		t.Errorf("New with defaults: %v", err)
	}
	if _, err := whatsapp.New(whatsapp.Config{Token: token, PhoneNumberID: phoneNumberID}, nil); err == nil {
		t.Error("New without sales numbers: got nil error")
	}
}
