package meta_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cepcomunicacion/cepjobs/internal/meta"
	"github.com/cepcomunicacion/cepjobs/internal/vendor"
)

const (
	pageToken = "EAAGpage-token-0123456789"
	leadgenID = "4445556667778"
)

// leadServer stands in for GET /{leadgen_id}: it checks the request the way
// the lead retrieval guide documents it (the fields asked for, a Page token,
// here as a bearer and never in the URL) and answers with respond.
func leadServer(t *testing.T, respond func(w http.ResponseWriter)) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			t.Errorf("method: got %s, want GET", r.Method)
		}
		if want := "/v26.0/" + leadgenID; r.URL.Path != want {
			t.Errorf("path: got %s, want %s", r.URL.Path, want)
		}
		if got := r.Header.Get("Authorization"); got != "Bearer "+pageToken {
			t.Errorf("Authorization: got %q, want the page token as a bearer", got)
		}
		q := r.URL.Query()
		if q.Has("access_token") || strings.Contains(r.URL.RawQuery, pageToken) {
			t.Errorf("query %q carries the token", r.URL.RawQuery)
		}
		if got, want := q.Get("fields"), "created_time,field_data,custom_disclaimer_responses,form_id,ad_id,campaign_id"; got != want {
			t.Errorf("fields: got %q, want %q", got, want)
		}
		w.Header().Set("Content-Type", "application/json")
		respond(w)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func leadAdsClient(t *testing.T, base string) *meta.LeadAdsClient {
	t.Helper()
	c, err := meta.NewLeadAdsClient(meta.LeadAdsParams{
		Config:  meta.LeadAdsConfig{PageAccessToken: pageToken, DefaultCountry: "34", MarketingCheckbox: "marketing"},
		BaseURL: base, APIVersion: "v26.0", HTTPClient: vendor.NewHTTPClient(5 * time.Second),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLeadReadsFieldsAndCheckboxes(t *testing.T) {
	t.Parallel()
	base := leadServer(t, func(w http.ResponseWriter) {
		_, _ = io.WriteString(w, `{
			"id":"`+leadgenID+`","created_time":"2026-11-27T18:30:05+0000",
			"form_id":"900100200","ad_id":"120300001","campaign_id":"120200001",
			"field_data":[
				{"name":"email","values":["ana.garcia@example.com"]},
				{"name":"full_name","values":["Ana García"]},
				{"name":"phone_number","values":["+34600111222"]}],
			"custom_disclaimer_responses":[
				{"checkbox_key":"marketing","is_checked":"1"},
				{"checkbox_key":"whatsapp","is_checked":""},
				{"checkbox_key":"calls","is_checked":true}]}`)
	})
	got, err := leadAdsClient(t, base).Lead(context.Background(), leadgenID)
	if err != nil {
		t.Fatal(err)
	}
	want := meta.LeadAd{
		ID: leadgenID, CreatedTime: time.Date(2026, 11, 27, 18, 30, 5, 0, time.UTC),
		FormID: "900100200", AdID: "120300001", CampaignID: "120200001",
		Fields: []meta.LeadField{
			{Name: "email", Values: []string{"ana.garcia@example.com"}},
			{Name: "full_name", Values: []string{"Ana García"}},
			{Name: "phone_number", Values: []string{"+34600111222"}},
		},
		Checkboxes: map[string]bool{"marketing": true, "whatsapp": false, "calls": true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lead (-want +got):\n%s", diff)
	}
}

func TestLeadErrorsAreClassifiedWithoutPersonalData(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                 string
		status               int
		body                 string
		permanent, throttled bool
	}{
		// Meta's answer when the lead is gone or the token may not read it.
		{"missing or not permitted", 400, `{"error":{"message":"Unsupported get request. Object with ID '` + leadgenID + `' does not exist","type":"GraphMethodException","code":100,"error_subcode":33}}`, true, false},
		{"token expired", 400, `{"error":{"message":"Error validating access token: ` + pageToken + `","type":"OAuthException","code":190}}`, true, false},
		{"page rate limit", 400, `{"error":{"code":32,"message":"Page request limit reached"}}`, false, true},
		{"unavailable", 503, `{"error":{"code":2,"is_transient":true}}`, false, false},
		{"answer without id", 200, `{"field_data":[{"name":"email","values":["ana.garcia@example.com"]}]}`, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base := leadServer(t, func(w http.ResponseWriter) {
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			})
			_, err := leadAdsClient(t, base).Lead(context.Background(), leadgenID)
			var ve *vendor.Error
			if !errors.As(err, &ve) {
				t.Fatalf("got %v, want a *vendor.Error", err)
			}
			if ve.Permanent != tc.permanent || ve.Throttled != tc.throttled {
				t.Errorf("got permanent=%v throttled=%v, want %v %v (%v)", ve.Permanent, ve.Throttled, tc.permanent, tc.throttled, err)
			}
			for _, s := range []string{pageToken, "ana.garcia@example.com"} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q shows %q", err, s)
				}
			}
		})
	}
}

func TestLeadAdsConfig(t *testing.T) {
	t.Parallel()
	var forms meta.FormCourses
	if err := forms.UnmarshalText([]byte(" 900100200=tecnico-marketing-digital, 900100300=community-manager ,")); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(meta.FormCourses{"900100200": "tecnico-marketing-digital", "900100300": "community-manager"}, forms); diff != "" {
		t.Errorf("forms (-want +got):\n%s", diff)
	}
	if got, want := forms.String(), "900100200=tecnico-marketing-digital,900100300=community-manager"; got != want {
		t.Errorf("String: got %q, want %q", got, want)
	}
	var bad meta.FormCourses
	err := bad.UnmarshalText([]byte("900100200=ok,form=x,900100300,900100400=Not A Slug,900100200=dup"))
	for _, want := range []string{"entry 2: the form id", "entry 3: want form_id=course-slug", "entry 4: the course must be a slug", "entry 5: form 900100200 listed twice"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad forms: got %v, want it to contain %q", err, want)
		}
	}

	good := meta.LeadAdsConfig{PageAccessToken: pageToken, DefaultCountry: "34", MarketingCheckbox: "marketing"}
	if err := good.Validate(); err != nil || !good.Enabled() {
		t.Fatalf("good config: err %v, enabled %v", err, good.Enabled())
	}
	for name, tc := range map[string]struct {
		edit func(*meta.LeadAdsConfig)
		want string
	}{
		"country with +":        {func(c *meta.LeadAdsConfig) { c.DefaultCountry = "+34" }, "META_LEAD_DEFAULT_COUNTRY: "},
		"country too long":      {func(c *meta.LeadAdsConfig) { c.DefaultCountry = "3456" }, "META_LEAD_DEFAULT_COUNTRY: "},
		"checkbox with a space": {func(c *meta.LeadAdsConfig) { c.MarketingCheckbox = "mark eting" }, "META_LEAD_MARKETING_CHECKBOX: "},
		"token with a space":    {func(c *meta.LeadAdsConfig) { c.PageAccessToken = "EAA abc" }, "META_PAGE_ACCESS_TOKEN: "},
	} {
		c := good
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error starting %q", name, err, tc.want)
		}
	}

	// The loader's defaults are what the handler and Validate expect.
	for typ, defaults := range map[reflect.Type]map[string]string{
		reflect.TypeFor[meta.LeadAdsConfig](): {"DefaultCountry": "34", "MarketingCheckbox": "marketing"},
		reflect.TypeFor[meta.AdsConfig]():     {"Days": "3"},
	} {
		for field, want := range defaults {
			f, _ := typ.FieldByName(field)
			if got := f.Tag.Get("default"); got != want {
				t.Errorf("%s.%s default: got %q, want %q", typ.Name(), field, got, want)
			}
		}
	}
}
