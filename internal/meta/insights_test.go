package meta_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cepcomunicacion/cepjobs/internal/meta"
	"github.com/cepcomunicacion/cepjobs/internal/vendor"
)

const (
	adAccount = "act_1234567890"
	adsToken  = "EAAGads-token-0123456789"
)

var (
	syncFrom = time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	syncTo   = time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
)

// insightsPages are three pages of Meta's answer, keyed by the after
// cursor that asks for them ("" for the first). Numbers are strings as Meta
// sends them, except one row's, sent as numbers. paging.next points at
// another host: a client that followed it instead of our own base URL with
// the cursor would send the token there, and fail.
var insightsPages = map[string]string{
	"": `{"data":[
		{"campaign_id":"120200001","campaign_name":"Otoño leads","spend":"12.34","impressions":"1000","clicks":"50","account_currency":"EUR",
		 "actions":[{"action_type":"link_click","value":"50"},{"action_type":"onsite_conversion.lead_grouped","value":"4"},{"action_type":"lead","value":"5"}],
		 "date_start":"2026-11-26","date_stop":"2026-11-26"},
		{"campaign_id":"120200002","campaign_name":"Marca","spend":"3.5","impressions":"200","clicks":"3","account_currency":"EUR",
		 "date_start":"2026-11-26","date_stop":"2026-11-26"}],
		"paging":{"cursors":{"before":"b0","after":"c1"},"next":"https://elsewhere.invalid/v26.0/act_1234567890/insights?after=c1&access_token=leak"}}`,
	"c1": `{"data":[
		{"campaign_id":"120200001","campaign_name":"Otoño leads","spend":"20","impressions":"1500","clicks":"70","account_currency":"EUR",
		 "actions":[{"action_type":"onsite_conversion.lead_grouped","value":"7"}],
		 "date_start":"2026-11-27","date_stop":"2026-11-27"},
		{"campaign_id":"120200002","campaign_name":"Marca","spend":0.99,"impressions":10,"clicks":1,"account_currency":"EUR",
		 "date_start":"2026-11-27","date_stop":"2026-11-27"}],
		"paging":{"cursors":{"before":"b1","after":"c2"},"next":"https://elsewhere.invalid/v26.0/act_1234567890/insights?after=c2&access_token=leak"}}`,
	"c2": `{"data":[
		{"campaign_id":"120200001","campaign_name":"Otoño leads","spend":"1.0001","impressions":"80","clicks":"2","account_currency":"EUR",
		 "actions":[{"action_type":"lead","value":"1"}],
		 "date_start":"2026-11-28","date_stop":"2026-11-28"}],
		"paging":{"cursors":{"before":"b2","after":"c3"}}}`,
}

type adsFake struct {
	url    string
	mu     sync.Mutex
	afters []string
}

func (f *adsFake) cursors() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.afters...)
}

// adsServer stands in for the Ads Insights API: it checks each request the
// way Meta documents GET /{ad_account_id}/insights (level, time_increment,
// fields, time_range as JSON, cursor in after), with the token in the
// Authorization header and nowhere in the URL, then answers with respond.
func adsServer(t *testing.T, respond func(w http.ResponseWriter, after string)) *adsFake {
	t.Helper()
	f := &adsFake{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			t.Errorf("method: got %s, want GET", r.Method)
		}
		if want := "/v26.0/" + adAccount + "/insights"; r.URL.Path != want {
			t.Errorf("path: got %s, want %s", r.URL.Path, want)
		}
		if got := r.Header.Get("Authorization"); got != "Bearer "+adsToken {
			t.Errorf("Authorization: got %q, want the ads token as a bearer", got)
		}
		q := r.URL.Query()
		if strings.Contains(r.URL.RawQuery, adsToken) || q.Has("access_token") {
			t.Errorf("query %q carries the token", r.URL.RawQuery)
		}
		for k, want := range map[string]string{"level": "campaign", "time_increment": "1", "limit": "500"} {
			if got := q.Get(k); got != want {
				t.Errorf("%s: got %q, want %q", k, got, want)
			}
		}
		fields := map[string]bool{}
		for _, f := range strings.Split(q.Get("fields"), ",") {
			fields[f] = true
		}
		for _, f := range []string{"campaign_id", "campaign_name", "spend", "impressions", "clicks", "actions", "account_currency"} {
			if !fields[f] {
				t.Errorf("fields %q lacks %s", q.Get("fields"), f)
			}
		}
		var tr map[string]string
		if err := json.Unmarshal([]byte(q.Get("time_range")), &tr); err != nil || tr["since"] != "2026-11-26" || tr["until"] != "2026-11-28" || len(tr) != 2 {
			t.Errorf("time_range: got %q, want {\"since\":\"2026-11-26\",\"until\":\"2026-11-28\"}", q.Get("time_range"))
		}
		f.mu.Lock()
		f.afters = append(f.afters, q.Get("after"))
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		respond(w, q.Get("after"))
	}))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func adsClient(t *testing.T, base string) *meta.AdsClient {
	t.Helper()
	c, err := meta.NewAdsClient(meta.AdsParams{
		Config:  meta.AdsConfig{AdAccountID: adAccount, AccessToken: adsToken, Days: 3},
		BaseURL: base, APIVersion: "v26.0", HTTPClient: vendor.NewHTTPClient(5 * time.Second),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestInsightsFollowsCursorPages(t *testing.T) {
	t.Parallel()
	f := adsServer(t, func(w http.ResponseWriter, after string) {
		page, ok := insightsPages[after]
		if !ok {
			t.Errorf("asked for unknown cursor %q", after)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		_, _ = io.WriteString(w, page)
	})
	got, err := adsClient(t, f.url).Insights(context.Background(), adAccount, syncFrom, syncTo)
	if err != nil {
		t.Fatal(err)
	}
	day := func(d int) time.Time { return time.Date(2026, 11, d, 0, 0, 0, 0, time.UTC) }
	want := []meta.Insight{
		// "lead" is the total; the grouped form count is part of it.
		{CampaignID: "120200001", CampaignName: "Otoño leads", Day: day(26), Spend: "12.34", Currency: "EUR", Impressions: 1000, Clicks: 50, Leads: 5},
		{CampaignID: "120200002", CampaignName: "Marca", Day: day(26), Spend: "3.5", Currency: "EUR", Impressions: 200, Clicks: 3},
		// Only the grouped count: it is used.
		{CampaignID: "120200001", CampaignName: "Otoño leads", Day: day(27), Spend: "20", Currency: "EUR", Impressions: 1500, Clicks: 70, Leads: 7},
		{CampaignID: "120200002", CampaignName: "Marca", Day: day(27), Spend: "0.99", Currency: "EUR", Impressions: 10, Clicks: 1},
		{CampaignID: "120200001", CampaignName: "Otoño leads", Day: day(28), Spend: "1.0001", Currency: "EUR", Impressions: 80, Clicks: 2, Leads: 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("insights (-want +got):\n%s", diff)
	}
	// Three requests: the first page, then each cursor while next is set;
	// the last page's after cursor is not followed (no next).
	if diff := cmp.Diff([]string{"", "c1", "c2"}, f.cursors()); diff != "" {
		t.Errorf("cursors asked for (-want +got):\n%s", diff)
	}
}

func TestInsightsErrors(t *testing.T) {
	t.Parallel()
	buc := `{"1234567890":[{"type":"ads_insights","call_count":100,"estimated_time_to_regain_access":7}]}`
	for _, tc := range []struct {
		name                 string
		respond              func(w http.ResponseWriter, after string)
		permanent, throttled bool
		retryAfter           time.Duration
	}{
		{"insights rate limit", func(w http.ResponseWriter, _ string) {
			w.Header().Set("X-Business-Use-Case-Usage", buc)
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":{"message":"User request limit reached","type":"OAuthException","code":80000,"error_subcode":2446079,"fbtrace_id":"Ax1"}}`)
		}, false, true, 7 * time.Minute},
		{"expired token", func(w http.ResponseWriter, _ string) {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":{"message":"Error validating access token: `+adsToken+`","type":"OAuthException","code":190,"error_subcode":463}}`)
		}, true, false, 0},
		{"server error", func(w http.ResponseWriter, _ string) {
			w.WriteHeader(http.StatusBadGateway)
			_, _ = io.WriteString(w, `<html>bad gateway</html>`)
		}, false, false, 0},
		{"error on the second page", func(w http.ResponseWriter, after string) {
			if after == "" {
				_, _ = io.WriteString(w, insightsPages[""])
				return
			}
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, `{"error":{"code":2,"is_transient":true}}`)
		}, false, false, 0},
		{"cursor repeats", func(w http.ResponseWriter, after string) {
			_, _ = io.WriteString(w, `{"data":[],"paging":{"cursors":{"after":"same"},"next":"https://x.invalid/"}}`)
		}, false, false, 0},
		{"unreadable row", func(w http.ResponseWriter, after string) {
			_, _ = io.WriteString(w, `{"data":[{"campaign_id":"1","spend":"lots","date_start":"2026-11-26"}]}`)
		}, false, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := adsServer(t, tc.respond)
			_, err := adsClient(t, f.url).Insights(context.Background(), adAccount, syncFrom, syncTo)
			var ve *vendor.Error
			if !errors.As(err, &ve) {
				t.Fatalf("got %v, want a *vendor.Error", err)
			}
			if ve.Permanent != tc.permanent || ve.Throttled != tc.throttled || ve.RetryAfter != tc.retryAfter {
				t.Errorf("got permanent=%v throttled=%v retryAfter=%s, want %v %v %s (%v)", ve.Permanent, ve.Throttled, ve.RetryAfter, tc.permanent, tc.throttled, tc.retryAfter, err)
			}
			if strings.Contains(err.Error(), adsToken) {
				t.Errorf("error %q shows the token", err)
			}
		})
	}
}

func TestAdsConfigValidate(t *testing.T) {
	t.Parallel()
	good := meta.AdsConfig{AdAccountID: adAccount, AccessToken: adsToken, Days: 3}
	if err := good.Validate(); err != nil || !good.Enabled() {
		t.Fatalf("good config: err %v, enabled %v", err, good.Enabled())
	}
	if off := (meta.AdsConfig{Days: 3}); off.Validate() != nil || off.Enabled() {
		t.Errorf("unset config: got err %v enabled %v, want valid and off", off.Validate(), off.Enabled())
	}
	for name, tc := range map[string]struct {
		edit func(*meta.AdsConfig)
		want string
	}{
		"token without account": {func(c *meta.AdsConfig) { c.AdAccountID = "" }, "META_AD_ACCOUNT_ID: "},
		"account without token": {func(c *meta.AdsConfig) { c.AccessToken = "" }, "META_ADS_ACCESS_TOKEN: "},
		"account without act_":  {func(c *meta.AdsConfig) { c.AdAccountID = "1234567890" }, "META_AD_ACCOUNT_ID: want act_"},
		"token with a space":    {func(c *meta.AdsConfig) { c.AccessToken = "EAA abc" }, "META_ADS_ACCESS_TOKEN: "},
		"no days":               {func(c *meta.AdsConfig) { c.Days = 0 }, "META_INSIGHTS_DAYS: "},
		"too many days":         {func(c *meta.AdsConfig) { c.Days = 91 }, "META_INSIGHTS_DAYS: "},
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
}
