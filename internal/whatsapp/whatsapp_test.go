package whatsapp_test

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

	"github.com/cepcomunicacion/cepjobs/internal/vendor"
	"github.com/cepcomunicacion/cepjobs/internal/whatsapp"
)

const (
	phoneNumberID = "106540352242922"
	token         = "EAAJB8sQ9ZCwhatsapp-test-token"
	salesNumber   = "+34600111222"
)

// personal holds the recipient in every form, and our token: none may show
// up in an error.
var personal = []string{"+34600111222", "34600111222", "600111222", token}

type bundle struct {
	client *whatsapp.Client
	mu     sync.Mutex
	bodies []map[string]any
}

func (b *bundle) requests() []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bodies
}

// setup starts a fake Cloud API that checks each request as documented
// (POST /{version}/{phone_number_id}/messages, Bearer token, JSON body),
// records its body, and answers with respond.
func setup(t *testing.T, cfg whatsapp.Config, timeout time.Duration, respond http.HandlerFunc) *bundle {
	t.Helper()
	b := &bundle{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			t.Errorf("method: got %s, want POST", r.Method)
		}
		if want := "/v26.0/" + phoneNumberID + "/messages"; r.URL.Path != want {
			t.Errorf("path: got %s, want %s", r.URL.Path, want)
		}
		if r.URL.RawQuery != "" {
			t.Errorf("query: got %q, want none", r.URL.RawQuery)
		}
		if a := r.Header.Get("Authorization"); a != "Bearer "+token {
			t.Errorf("Authorization: got %q, want the Bearer token", a)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("content type: got %q, want application/json", ct)
		}
		raw, _ := io.ReadAll(r.Body)
		if strings.Contains(string(raw), token) {
			t.Error("body holds the token; it belongs in the Authorization header")
		}
		var body map[string]any
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Errorf("body is not JSON: %v", err)
		}
		b.mu.Lock()
		b.bodies = append(b.bodies, body)
		b.mu.Unlock()
		respond(w, r)
	}))
	t.Cleanup(srv.Close)
	cfg.Token, cfg.PhoneNumberID, cfg.BaseURL = token, phoneNumberID, srv.URL
	if cfg.SalesNumbers == nil {
		cfg.SalesNumbers = []string{salesNumber}
	}
	c, err := whatsapp.New(cfg, vendor.NewHTTPClient(timeout))
	if err != nil {
		t.Fatal(err)
	}
	b.client = c
	return b
}

func accepted(w http.ResponseWriter, _ *http.Request) {
	_, _ = io.WriteString(w, `{"messaging_product":"whatsapp","contacts":[{"input":"34600111222","wa_id":"34600111222"}],`+
		`"messages":[{"id":"wamid.HBgLMzQ2MDAxMTEyMjIVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA","message_status":"accepted"}]}`)
}

func TestSendLeadNotification(t *testing.T) {
	t.Parallel()
	b := setup(t, whatsapp.Config{}, 5*time.Second, accepted)
	tmpl := whatsapp.LeadNotification("Marketing Digital", "Donostia", "https://app.cepcomunicacion.com/leads/01JDXYZ")
	id, err := b.client.SendTemplate(context.Background(), salesNumber, tmpl)
	if err != nil {
		t.Fatal(err)
	}
	if id != "wamid.HBgLMzQ2MDAxMTEyMjIVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA" {
		t.Errorf("message id: got %q", id)
	}
	want := map[string]any{
		"messaging_product": "whatsapp",
		"recipient_type":    "individual",
		"to":                "34600111222",
		"type":              "template",
		"template": map[string]any{
			"name":     "nuevo_lead",
			"language": map[string]any{"code": "es"},
			"components": []any{map[string]any{
				"type": "body",
				"parameters": []any{
					map[string]any{"type": "text", "text": "Marketing Digital"},
					map[string]any{"type": "text", "text": "Donostia"},
					map[string]any{"type": "text", "text": "https://app.cepcomunicacion.com/leads/01JDXYZ"},
				},
			}},
		},
	}
	if diff := cmp.Diff(want, b.requests()[0]); diff != "" {
		t.Errorf("request body (-want +got):\n%s", diff)
	}
}

func TestSendTemplateWithButtonAndOwnName(t *testing.T) {
	t.Parallel()
	b := setup(t, whatsapp.Config{Template: "otro", TemplateLanguage: "es_ES"}, 5*time.Second, accepted)
	_, err := b.client.SendTemplate(context.Background(), salesNumber, whatsapp.Template{
		Name: "aviso_curso", Language: "es_MX",
		BodyParams:      []string{"Curso\tde\n  diseño      gráfico"},
		ButtonURLSuffix: "leads/01JDXYZ",
	})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := b.requests()[0]["template"].(map[string]any)
	want := map[string]any{
		"name":     "aviso_curso",
		"language": map[string]any{"code": "es_MX"},
		"components": []any{
			map[string]any{"type": "body", "parameters": []any{map[string]any{"type": "text", "text": "Curso de diseño gráfico"}}},
			map[string]any{"type": "button", "sub_type": "url", "index": "0", "parameters": []any{map[string]any{"type": "text", "text": "leads/01JDXYZ"}}},
		},
	}
	if diff := cmp.Diff(want, tmpl); diff != "" {
		t.Errorf("template (-want +got):\n%s", diff)
	}
}

func TestLeadNotificationFillsEmptyValues(t *testing.T) {
	t.Parallel()
	got := whatsapp.LeadNotification("Fotografía", " ", "")
	want := whatsapp.Template{BodyParams: []string{"Fotografía", "-", "-"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LeadNotification (-want +got):\n%s", diff)
	}
}

// cloudError answers with the Cloud API's error object, echoing the
// recipient in message and details as Meta does.
func cloudError(status int, header http.Header, code int) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for k, v := range header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
			"message":    "(#" + itoa(code) + ") failed for +34600111222 with token " + token,
			"type":       "OAuthException",
			"code":       code,
			"error_data": map[string]any{"messaging_product": "whatsapp", "details": "Recipient 34600111222 cannot be reached"},
			"fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam",
		}})
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestSendTemplateErrors(t *testing.T) {
	t.Parallel()
	usage := http.Header{"X-Business-Use-Case-Usage": {`{"102290129340398":[{"type":"whatsapp_business_management","call_count":100,"total_cputime":1,"total_time":1,"estimated_time_to_regain_access":4}]}`}}
	for _, tc := range []struct {
		name                 string
		respond              http.HandlerFunc
		permanent, throttled bool
		retryAfter           time.Duration
		reason               string
	}{
		{"undeliverable", cloudError(400, nil, 131026), true, false, 0, "message undeliverable"},
		{"re-engagement", cloudError(400, nil, 131047), true, false, 0, "re-engagement"},
		{"template missing", cloudError(404, nil, 132001), true, false, 0, "template does not exist"},
		{"param count", cloudError(400, nil, 132000), true, false, 0, "parameter count"},
		{"expired token", cloudError(401, nil, 190), true, false, 0, "access token"},
		{"invalid parameter", cloudError(400, nil, 100), true, false, 0, "invalid parameter"},
		{"spam restriction", cloudError(400, nil, 131048), true, false, 0, "spam"},
		{"throughput", cloudError(400, nil, 130429), false, true, 0, "throughput"},
		{"pair rate", cloudError(400, nil, 131056), false, true, 6 * time.Second, "pair rate"},
		{"WABA rate with usage", cloudError(400, usage, 80007), false, true, 4 * time.Minute, "rate limit"},
		{"app rate", cloudError(429, nil, 4), false, true, 0, "app rate limit"},
		{"something went wrong", cloudError(500, nil, 131000), false, false, 0, "something went wrong"},
		{"service unavailable", cloudError(503, nil, 131016), false, false, 0, "service unavailable"},
		{"bad gateway", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "<html>", http.StatusBadGateway) }, false, false, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, whatsapp.Config{}, 5*time.Second, tc.respond)
			_, err := b.client.SendTemplate(context.Background(), salesNumber, whatsapp.LeadNotification("Curso", "Sede", "https://x.test/l/1"))
			var ve *vendor.Error
			if !errors.As(err, &ve) {
				t.Fatalf("got %v, want a *vendor.Error", err)
			}
			if ve.Vendor != "whatsapp" || ve.Permanent != tc.permanent || ve.Throttled != tc.throttled || ve.RetryAfter != tc.retryAfter {
				t.Errorf("got vendor=%s permanent=%v throttled=%v retryAfter=%s, want whatsapp %v %v %s (%v)",
					ve.Vendor, ve.Permanent, ve.Throttled, ve.RetryAfter, tc.permanent, tc.throttled, tc.retryAfter, err)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("error text %q: want it to say %q", err, tc.reason)
			}
			for _, s := range personal {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error text %q holds %q", err, s)
				}
			}
		})
	}
}

func TestSendTemplateTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, whatsapp.Config{}, 50*time.Millisecond, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	_, err := b.client.SendTemplate(context.Background(), salesNumber, whatsapp.LeadNotification("Curso", "Sede", "https://x.test/l/1"))
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

func TestSendTemplateRefusesBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t, whatsapp.Config{}, 5*time.Second, accepted)
	for name, call := range map[string]func() error{
		"national number": func() error {
			_, err := b.client.SendTemplate(context.Background(), "600111222", whatsapp.LeadNotification("a", "b", "c"))
			return err
		},
		"empty parameter": func() error {
			_, err := b.client.SendTemplate(context.Background(), salesNumber, whatsapp.Template{BodyParams: []string{"a", " \n "}})
			return err
		},
	} {
		err := call()
		if !vendor.IsPermanent(err) {
			t.Errorf("%s: got %v, want a permanent error", name, err)
		}
		for _, s := range personal {
			if err != nil && strings.Contains(err.Error(), s) {
				t.Errorf("%s: error text %q holds %q", name, err, s)
			}
		}
	}
	if n := len(b.requests()); n != 0 {
		t.Errorf("requests: got %d, want none for input refused locally", n)
	}
}

func TestSendTemplateAnswerWithoutID(t *testing.T) {
	t.Parallel()
	b := setup(t, whatsapp.Config{}, 5*time.Second, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"messaging_product":"whatsapp","messages":[]}`)
	})
	_, err := b.client.SendTemplate(context.Background(), salesNumber, whatsapp.LeadNotification("a", "b", "c"))
	if err == nil || vendor.IsPermanent(err) {
		t.Fatalf("got %v, want a transient error", err)
	}
}
