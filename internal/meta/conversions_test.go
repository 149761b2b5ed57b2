package meta_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	pixelID = "1234567890123"
	token   = "EAAGm0PX4ZCpsBAKZCtest-token-1234"
)

// sha is computed here, not with meta.HashSHA256, so the test checks the
// client's hashing rather than repeating it.
func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

var leadTime = time.Date(2026, 11, 27, 18, 30, 0, 0, time.UTC)

func lead() meta.LeadEvent {
	return meta.LeadEvent{
		EventID:        "lead_01JDXYZ",
		EventTime:      leadTime,
		Email:          " Ana.Garcia@Example.COM ",
		Phone:          "+34 600-111-222",
		FirstName:      " Ana ",
		LastName:       "García",
		City:           "San Sebastián",
		Country:        "ES",
		ClientIP:       "203.0.113.7:51234",
		UserAgent:      "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
		EventSourceURL: "https://cepcomunicacion.com/cursos/marketing-digital",
		CustomData:     map[string]any{"course": "marketing-digital", "campaign": "otono-2026"},
	}
}

// personal holds every form of the lead's personal data and our token that
// must never show up in an error.
var personal = []string{
	"Ana.Garcia@Example.COM", "ana.garcia@example.com", "600-111-222", "600111222", "34600111222",
	"García", "garcía", "Ana ", token,
}

type bundle struct {
	client *meta.Client
	mu     sync.Mutex
	bodies []map[string]any
}

func (b *bundle) requests() []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bodies
}

// setup starts a fake Graph API that checks each request the way the
// Conversions API documents it (POST /{version}/{pixel_id}/events, JSON
// body with data and access_token, the token in no URL or header), records
// its body, and answers with respond.
func setup(t *testing.T, cfg meta.Config, timeout time.Duration, respond http.HandlerFunc) *bundle {
	t.Helper()
	b := &bundle{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			t.Errorf("method: got %s, want POST", r.Method)
		}
		if want := "/v26.0/" + pixelID + "/events"; r.URL.Path != want {
			t.Errorf("path: got %s, want %s", r.URL.Path, want)
		}
		if r.URL.RawQuery != "" {
			t.Errorf("query: got %q, want none (the token must not be in the URL)", r.URL.RawQuery)
		}
		if a := r.Header.Get("Authorization"); a != "" {
			t.Errorf("Authorization: got %q, want the token in the body only", a)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("content type: got %q, want application/json", ct)
		}
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Errorf("body is not JSON: %v", err)
		}
		if body["access_token"] != token {
			t.Errorf("access_token: got %v, want the configured token", body["access_token"])
		}
		b.mu.Lock()
		b.bodies = append(b.bodies, body)
		b.mu.Unlock()
		respond(w, r)
	}))
	t.Cleanup(srv.Close)
	cfg.PixelID, cfg.AccessToken, cfg.BaseURL = pixelID, token, srv.URL
	c, err := meta.New(cfg, vendor.NewHTTPClient(timeout))
	if err != nil {
		t.Fatal(err)
	}
	b.client = c
	return b
}

func ok(w http.ResponseWriter, _ *http.Request) {
	_, _ = io.WriteString(w, `{"events_received":1,"messages":[],"fbtrace_id":"AAbbCC_12-x"}`)
}

func TestSendLead(t *testing.T) {
	t.Parallel()
	b := setup(t, meta.Config{}, 5*time.Second, ok)
	res, err := b.client.SendLead(context.Background(), lead())
	if err != nil {
		t.Fatal(err)
	}
	if want := (meta.Result{EventsReceived: 1, FBTraceID: "AAbbCC_12-x"}); res != want {
		t.Errorf("result: got %+v, want %+v", res, want)
	}
	got := b.requests()
	if len(got) != 1 {
		t.Fatalf("requests: got %d, want 1", len(got))
	}
	want := map[string]any{
		"access_token": token,
		"data": []any{map[string]any{
			"event_name":       "Lead",
			"event_time":       float64(leadTime.Unix()),
			"event_id":         "lead_01JDXYZ",
			"action_source":    "website",
			"event_source_url": "https://cepcomunicacion.com/cursos/marketing-digital",
			"user_data": map[string]any{
				"em":                []any{sha("ana.garcia@example.com")},
				"ph":                []any{sha("34600111222")},
				"fn":                []any{sha("ana")},
				"ln":                []any{sha("garcía")},
				"ct":                []any{sha("sansebastián")},
				"country":           []any{sha("es")},
				"client_ip_address": "203.0.113.7",
				"client_user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
			},
			"custom_data": map[string]any{"course": "marketing-digital", "campaign": "otono-2026"},
		}},
	}
	if diff := cmp.Diff(want, got[0]); diff != "" {
		t.Errorf("request body (-want +got):\n%s", diff)
	}
}

func TestSendLeadOmitsEmptyFields(t *testing.T) {
	t.Parallel()
	b := setup(t, meta.Config{}, 5*time.Second, ok)
	ev := lead()
	ev.Phone, ev.City, ev.Country, ev.LastName, ev.ClientIP, ev.CustomData = "", "", "Spain", "", "not-an-ip", nil
	if _, err := b.client.SendLead(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	event := b.requests()[0]["data"].([]any)[0].(map[string]any)
	ud := event["user_data"].(map[string]any)
	for _, k := range []string{"ph", "ct", "country", "ln", "client_ip_address"} {
		if v, ok := ud[k]; ok {
			t.Errorf("user_data.%s: got %v, want it left out", k, v)
		}
	}
	if _, ok := event["custom_data"]; ok {
		t.Error("custom_data: sent although empty")
	}
}

func TestSendLeadTestEventCode(t *testing.T) {
	t.Parallel()
	with := setup(t, meta.Config{TestEventCode: "TEST4242"}, 5*time.Second, ok)
	without := setup(t, meta.Config{}, 5*time.Second, ok)
	for _, c := range []*meta.Client{with.client, without.client} {
		if _, err := c.SendLead(context.Background(), lead()); err != nil {
			t.Fatal(err)
		}
	}
	if got := with.requests()[0]["test_event_code"]; got != "TEST4242" {
		t.Errorf("test_event_code: got %v, want TEST4242", got)
	}
	if got, ok := without.requests()[0]["test_event_code"]; ok {
		t.Errorf("test_event_code: got %v, want it absent", got)
	}
}

// graphError answers with Meta's error object, echoing the lead's data and
// the token in every free-text field, as Meta's messages may.
func graphError(status int, header http.Header, fields string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, `{"error":{"message":"Invalid parameter ana.garcia@example.com +34 600-111-222 García access_token=`+token+`",`+
			`"error_user_msg":"The email Ana.Garcia@Example.COM for García is invalid",`+
			`"fbtrace_id":"AxYz_9",`+fields+`}}`)
	}
}

func TestSendLeadErrors(t *testing.T) {
	t.Parallel()
	usage := http.Header{"X-Business-Use-Case-Usage": {`{"98765":[{"type":"ads_management","call_count":100,"total_cputime":10,"total_time":10,"estimated_time_to_regain_access":15}]}`}}
	for _, tc := range []struct {
		name                 string
		respond              http.HandlerFunc
		permanent, throttled bool
		retryAfter           time.Duration
	}{
		{"invalid parameter", graphError(400, nil, `"type":"OAuthException","code":100,"error_subcode":2804003,"error_user_title":"Invalid parameter"`), true, false, 0},
		{"expired token", graphError(401, nil, `"type":"OAuthException","code":190,"error_subcode":463`), true, false, 0},
		{"permission", graphError(403, nil, `"type":"OAuthException","code":200`), true, false, 0},
		{"transient flag", graphError(500, nil, `"type":"OAuthException","code":2,"is_transient":true`), false, false, 0},
		{"unavailable without body", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) }, false, false, 0},
		{"app throttle", graphError(400, nil, `"type":"OAuthException","code":4,"is_transient":true`), false, true, 0},
		{"ads management throttle with usage", graphError(400, usage, `"type":"OAuthException","code":80004,"error_subcode":2446079,"is_transient":true`), false, true, 15 * time.Minute},
		{"429 with Retry-After", graphError(429, http.Header{"Retry-After": {"20"}}, `"code":613`), false, true, 20 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, meta.Config{}, 5*time.Second, tc.respond)
			_, err := b.client.SendLead(context.Background(), lead())
			var ve *vendor.Error
			if !errors.As(err, &ve) {
				t.Fatalf("got %v, want a *vendor.Error", err)
			}
			if ve.Vendor != "meta" || ve.Permanent != tc.permanent || ve.Throttled != tc.throttled || ve.RetryAfter != tc.retryAfter {
				t.Errorf("got vendor=%s permanent=%v throttled=%v retryAfter=%s, want meta %v %v %s (%v)",
					ve.Vendor, ve.Permanent, ve.Throttled, ve.RetryAfter, tc.permanent, tc.throttled, tc.retryAfter, err)
			}
			for _, s := range personal {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error text %q holds %q", err, s)
				}
			}
		})
	}
}

func TestSendLeadTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, meta.Config{}, 50*time.Millisecond, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	_, err := b.client.SendLead(context.Background(), lead())
	var ve *vendor.Error
	if !errors.As(err, &ve) || ve.Permanent || ve.Status != 0 || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("got %v, want a transient timed-out vendor error", err)
	}
	for _, s := range personal {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error text %q holds %q", err, s)
		}
	}
}

func TestSendLeadUnreadableAnswerIsTransient(t *testing.T) {
	t.Parallel()
	b := setup(t, meta.Config{}, 5*time.Second, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `<html>ok</html>`)
	})
	_, err := b.client.SendLead(context.Background(), lead())
	if err == nil || vendor.IsPermanent(err) {
		t.Fatalf("got %v, want a transient error", err)
	}
}

func TestSendLeadRefusesIncompleteEvent(t *testing.T) {
	t.Parallel()
	b := setup(t, meta.Config{}, 5*time.Second, ok)
	for name, edit := range map[string]func(*meta.LeadEvent){
		"no event id":   func(e *meta.LeadEvent) { e.EventID = "" },
		"no event time": func(e *meta.LeadEvent) { e.EventTime = time.Time{} },
		"no user agent": func(e *meta.LeadEvent) { e.UserAgent = "" },
		"no source URL": func(e *meta.LeadEvent) { e.EventSourceURL = "" },
		"bad custom":    func(e *meta.LeadEvent) { e.CustomData = map[string]any{"f": func() {}} },
	} {
		ev := lead()
		edit(&ev)
		_, err := b.client.SendLead(context.Background(), ev)
		if !vendor.IsPermanent(err) {
			t.Errorf("%s: got %v, want a permanent error", name, err)
		}
	}
	if n := len(b.requests()); n != 0 {
		t.Errorf("requests: got %d, want none for events refused locally", n)
	}
}
