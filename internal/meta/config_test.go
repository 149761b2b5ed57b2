package meta_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/cepcomunicacion/cepjobs/internal/meta"
	"github.com/cepcomunicacion/cepjobs/internal/meta/graph"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	good := meta.Config{PixelID: pixelID, AccessToken: token, BaseURL: graph.DefaultBaseURL, APIVersion: "v26.0"}
	if err := good.Validate(); err != nil || !good.Enabled() {
		t.Fatalf("good config: err %v, enabled %v", err, good.Enabled())
	}
	if err := (meta.Config{BaseURL: graph.DefaultBaseURL, APIVersion: "v26.0"}).Validate(); err != nil {
		t.Errorf("unset config: got %v, want nil (off)", err)
	}
	for name, tc := range map[string]struct {
		edit func(*meta.Config)
		want string
	}{
		"token without pixel": {func(c *meta.Config) { c.PixelID = "" }, "META_PIXEL_ID: "},
		"pixel without token": {func(c *meta.Config) { c.AccessToken = "" }, "META_ACCESS_TOKEN: "},
		"pixel not numeric":   {func(c *meta.Config) { c.PixelID = "px-1" }, "META_PIXEL_ID: "},
		"token with a space":  {func(c *meta.Config) { c.AccessToken = "EAA abc" }, "META_ACCESS_TOKEN: "},
		"base URL":            {func(c *meta.Config) { c.BaseURL = "graph.facebook.com" }, "META_BASE_URL: "},
		"version":             {func(c *meta.Config) { c.APIVersion = "26" }, "META_API_VERSION: "},
		"test code":           {func(c *meta.Config) { c.TestEventCode = "TEST 1" }, "META_TEST_EVENT_CODE: "},
	} {
		c := good
		tc.edit(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error starting %q", name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "EAA") {
			t.Errorf("%s: error %q shows the token", name, err)
		}
	}
	if c := (meta.Config{PixelID: pixelID}); c.Enabled() {
		t.Error("Enabled without a token: got true")
	}
}

// The loader's defaults and the ones New applies to a Config built in code
// must agree.
func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	typ := reflect.TypeFor[meta.Config]()
	for field, want := range map[string]string{"BaseURL": graph.DefaultBaseURL, "APIVersion": graph.DefaultVersion} {
		f, _ := typ.FieldByName(field)
		if got := f.Tag.Get("default"); got != want {
			t.Errorf("%s default tag: got %q, want %q", field, got, want)
		}
	}
	if _, err := meta.New(meta.Config{PixelID: pixelID, AccessToken: token}, nil); err != nil {
		t.Errorf("New with defaults: %v", err)
	}
	if _, err := meta.New(meta.Config{}, nil); err == nil {
		t.Error("New when disabled: got nil error")
	}
	if _, err := meta.New(meta.Config{PixelID: "x", AccessToken: token}, nil); err == nil {
		t.Error("New with a bad pixel id: got nil error")
	}
}
