package mandrill_test

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

	"github.com/cepcomunicacion/cepjobs/internal/mandrill"
	"github.com/cepcomunicacion/cepjobs/internal/vendor"
)

const (
	testKey  = "md-TESTKEY0123456789abcdef"
	testFrom = "CEP Formación <no-reply@cepcomunicacion.com>"
	msgID    = "abc123abc123abc123abc123abc123ab"
)

var ana = mandrill.Recipient{Email: "Ana.Garcia@Example.COM", Name: "Anabel Garcíaperez"}

// welcome is the task's template message: IDs in metadata, names only in
// merge vars.
var welcome = mandrill.TemplateMessage{
	Template:  "welcome-marketing",
	To:        ana,
	MergeVars: map[string]string{"FNAME": "Anabel", "COURSE": "Marketing Digital"},
	Tags:      []string{"welcome"},
	Metadata:  map[string]string{"lead_id": "0190f3e2-7c1a-7b7e-9c1d-3f2a1b4c5d6e"},
}

type call struct {
	Path string
	Body map[string]any
}

// fake is the Mailchimp Transactional API as documented: POST with a JSON
// body carrying the key; the answer is an array with one entry per
// recipient, or an error object. reply, when set, writes the answer.
type fake struct {
	t     *testing.T
	srv   *httptest.Server
	mu    sync.Mutex
	calls []call
	reply func(w http.ResponseWriter)
}

func setup(t *testing.T) (*fake, *mandrill.Client) {
	t.Helper()
	f := &fake{t: t}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	c, err := mandrill.New(mandrill.Config{APIKey: testKey, From: testFrom, BaseURL: f.srv.URL, DefaultTemplate: "welcome"}, f.srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

func (f *fake) serve(w http.ResponseWriter, r *http.Request) {
	t := f.t
	if r.Method != http.MethodPost {
		t.Errorf("method: got %s, want POST", r.Method)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type: got %q, want application/json", ct)
	}
	raw, _ := io.ReadAll(r.Body)
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Errorf("body is not a JSON object: %v", err)
	}
	f.mu.Lock()
	f.calls = append(f.calls, call{r.URL.Path, body})
	f.mu.Unlock()
	if body["key"] != testKey {
		errorJSON(w, 500, "Invalid_Key", "Invalid API key")
		return
	}
	if f.reply != nil {
		f.reply(w)
		return
	}
	to, _ := body["message"].(map[string]any)["to"].([]any)
	if len(to) != 1 {
		t.Fatalf("to: got %v, want one recipient", to)
	}
	answer(w, map[string]any{"email": to[0].(map[string]any)["email"], "status": "sent", "reject_reason": nil, "queued_reason": nil, "_id": msgID})
}

func (f *fake) seen() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

func answer(w http.ResponseWriter, entries ...map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(entries)
}

func errorJSON(w http.ResponseWriter, status int, name, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "error", "code": -1, "name": name, "message": message})
}

func assertNoPersonalData(t *testing.T, err error) {
	t.Helper()
	text := strings.ToLower(err.Error())
	for _, s := range []string{ana.Email, "example.com", "anabel", "garcíaperez", testKey} {
		if strings.Contains(text, strings.ToLower(s)) {
			t.Errorf("error text %q holds %q", err, s)
		}
	}
}

func TestSendTemplate(t *testing.T) {
	t.Parallel()
	f, c := setup(t)
	got, err := c.SendTemplate(context.Background(), welcome)
	if err != nil {
		t.Fatal(err)
	}
	if want := (mandrill.SendResult{ID: msgID, Status: "sent"}); got != want {
		t.Errorf("result: got %+v, want %+v", got, want)
	}
	want := []call{{"/messages/send-template", map[string]any{
		"key":              testKey,
		"template_name":    "welcome-marketing",
		"template_content": []any{},
		"message": map[string]any{
			"from_email": "no-reply@cepcomunicacion.com",
			"from_name":  "CEP Formación",
			"to":         []any{map[string]any{"email": "Ana.Garcia@Example.COM", "name": "Anabel Garcíaperez", "type": "to"}},
			"global_merge_vars": []any{
				map[string]any{"name": "COURSE", "content": "Marketing Digital"},
				map[string]any{"name": "FNAME", "content": "Anabel"},
			},
			"tags":     []any{"welcome"},
			"metadata": map[string]any{"lead_id": "0190f3e2-7c1a-7b7e-9c1d-3f2a1b4c5d6e"},
		},
	}}}
	if diff := cmp.Diff(want, f.seen()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestSendMessage(t *testing.T) {
	t.Parallel()
	f, c := setup(t)
	got, err := c.SendMessage(context.Background(), mandrill.Message{
		To: ana, Subject: "Tu plaza", HTML: "<p>Hola</p>", Text: "Hola",
		Headers: map[string]string{"Reply-To": "info@cepcomunicacion.com"}, Tags: []string{"email-send"},
		Metadata: map[string]string{"lead_id": "42"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != msgID {
		t.Errorf("id: got %q, want %q", got.ID, msgID)
	}
	want := []call{{"/messages/send", map[string]any{
		"key": testKey,
		"message": map[string]any{
			"subject": "Tu plaza", "html": "<p>Hola</p>", "text": "Hola",
			"from_email": "no-reply@cepcomunicacion.com", "from_name": "CEP Formación",
			"to":       []any{map[string]any{"email": "Ana.Garcia@Example.COM", "name": "Anabel Garcíaperez", "type": "to"}},
			"headers":  map[string]any{"Reply-To": "info@cepcomunicacion.com"},
			"tags":     []any{"email-send"},
			"metadata": map[string]any{"lead_id": "42"},
		},
	}}}
	if diff := cmp.Diff(want, f.seen()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestSendTemplateQueued(t *testing.T) {
	t.Parallel()
	f, c := setup(t)
	f.reply = func(w http.ResponseWriter) {
		answer(w, map[string]any{"email": ana.Email, "status": "queued", "queued_reason": "attachments", "_id": msgID})
	}
	got, err := c.SendTemplate(context.Background(), welcome)
	if err != nil {
		t.Fatal(err)
	}
	if want := (mandrill.SendResult{ID: msgID, Status: "queued", QueuedReason: "attachments"}); got != want {
		t.Errorf("result: got %+v, want %+v", got, want)
	}
}

func TestSendTemplateErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		key        string
		reply      func(w http.ResponseWriter)
		status     int
		code       string
		permanent  bool
		throttled  bool
		retryAfter time.Duration
		message    string
		wantID     bool
	}{
		{
			name: "bad key, legacy HTTP 500", key: "md-wrong",
			status: 500, code: "Invalid_Key", permanent: true, message: "API key invalid",
		},
		{
			name:   "bad key, HTTP 401",
			reply:  func(w http.ResponseWriter) { errorJSON(w, 401, "Invalid_Key", "Invalid API key") },
			status: 401, code: "Invalid_Key", permanent: true, message: "API key invalid",
		},
		{
			name: "general error",
			reply: func(w http.ResponseWriter) {
				errorJSON(w, 500, "GeneralError", "An unexpected error occurred processing the request.")
			},
			status: 500, code: "GeneralError", message: "unexpected error",
		},
		{
			name: "maintenance",
			reply: func(w http.ResponseWriter) {
				errorJSON(w, 500, "ServiceUnavailable", "The subsystem providing this API call is down for maintenance")
			},
			status: 500, code: "ServiceUnavailable", message: "maintenance",
		},
		{
			name: "validation error echoing the address",
			reply: func(w http.ResponseWriter) {
				errorJSON(w, 500, "ValidationError", `Validation error: {"message":{"to":[{"email":"Ana.Garcia@Example.COM is not a valid email address"}]}}`)
			},
			status: 500, code: "ValidationError", permanent: true, message: "request failed validation: message.to.email",
		},
		{
			name: "unknown template",
			reply: func(w http.ResponseWriter) {
				errorJSON(w, 404, "Unknown_Template", `No such template "welcome-marketing"`)
			},
			status: 404, code: "Unknown_Template", permanent: true, message: `template "welcome-marketing" does not exist`,
		},
		{
			name: "unknown template, legacy HTTP 500",
			reply: func(w http.ResponseWriter) {
				errorJSON(w, 500, "Unknown_Template", `No such template "welcome-marketing"`)
			},
			status: 500, code: "Unknown_Template", permanent: true,
		},
		{
			name: "payment required",
			reply: func(w http.ResponseWriter) {
				errorJSON(w, 500, "PaymentRequired", "This feature is only available for accounts with a positive balance.")
			},
			status: 500, code: "PaymentRequired", permanent: true,
		},
		{
			name: "unknown subaccount",
			reply: func(w http.ResponseWriter) {
				errorJSON(w, 500, "Unknown_Subaccount", "No subaccount exists with the id 'cep'")
			},
			status: 500, code: "Unknown_Subaccount", permanent: true,
		},
		{
			name: "unknown name with 5xx",
			reply: func(w http.ResponseWriter) {
				errorJSON(w, 500, "Brand_New_Error", "Something for Ana.Garcia@Example.COM")
			},
			status: 500, code: "Brand_New_Error",
		},
		{
			name: "unknown name with 4xx",
			reply: func(w http.ResponseWriter) {
				errorJSON(w, 400, "Brand_New_Error", "Something for Ana.Garcia@Example.COM")
			},
			status: 400, code: "Brand_New_Error", permanent: true,
		},
		{
			name: "rate limited",
			reply: func(w http.ResponseWriter) {
				w.Header().Set("Retry-After", "30")
				errorJSON(w, 429, "Too_Many_Requests", "Too many requests")
			},
			status: 429, code: "Too_Many_Requests", throttled: true, retryAfter: 30 * time.Second,
		},
		{
			name: "gateway page",
			reply: func(w http.ResponseWriter) {
				w.WriteHeader(503)
				_, _ = io.WriteString(w, "<html>503 Service Unavailable</html>")
			},
			status: 503,
		},
		{
			name: "recipient rejected",
			reply: func(w http.ResponseWriter) {
				answer(w, map[string]any{"email": ana.Email, "status": "rejected", "reject_reason": "hard-bounce", "_id": msgID})
			},
			status: 200, code: "rejected", permanent: true, message: "recipient rejected: hard-bounce", wantID: true,
		},
		{
			name: "recipient invalid",
			reply: func(w http.ResponseWriter) {
				answer(w, map[string]any{"email": ana.Email, "status": "invalid", "_id": msgID})
			},
			status: 200, code: "invalid", permanent: true, message: "address invalid", wantID: true,
		},
		{
			name:    "empty answer",
			reply:   func(w http.ResponseWriter) { answer(w) },
			message: "no recipient",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, c := setup(t)
			f.reply = tc.reply
			if tc.key != "" {
				var err error
				c, err = mandrill.New(mandrill.Config{APIKey: tc.key, From: testFrom, BaseURL: f.srv.URL, DefaultTemplate: "welcome"}, f.srv.Client())
				if err != nil {
					t.Fatal(err)
				}
			}
			res, err := c.SendTemplate(context.Background(), welcome)
			var ve *vendor.Error
			if !errors.As(err, &ve) {
				t.Fatalf("got %v, want a *vendor.Error", err)
			}
			if ve.Vendor != "mandrill" || ve.Op != "send template" || ve.Status != tc.status || ve.Code != tc.code {
				t.Errorf("got vendor %q op %q status %d code %q, want mandrill, send template, %d %q", ve.Vendor, ve.Op, ve.Status, ve.Code, tc.status, tc.code)
			}
			if ve.Permanent != tc.permanent || ve.Throttled != tc.throttled || ve.RetryAfter != tc.retryAfter {
				t.Errorf("got permanent %v throttled %v retry after %s, want %v %v %s", ve.Permanent, ve.Throttled, ve.RetryAfter, tc.permanent, tc.throttled, tc.retryAfter)
			}
			if !strings.Contains(ve.Message, tc.message) {
				t.Errorf("message: got %q, want it to contain %q", ve.Message, tc.message)
			}
			if tc.wantID && res.ID != msgID {
				t.Errorf("result id: got %q, want %q kept for the record", res.ID, msgID)
			}
			assertNoPersonalData(t, err)
		})
	}
}

func TestSendMessageRejected(t *testing.T) {
	t.Parallel()
	f, c := setup(t)
	f.reply = func(w http.ResponseWriter) {
		answer(w, map[string]any{"email": ana.Email, "status": "rejected", "reject_reason": "unsub", "_id": msgID})
	}
	_, err := c.SendMessage(context.Background(), mandrill.Message{To: ana, Subject: "x", Text: "x"})
	if !vendor.IsPermanent(err) || !strings.Contains(err.Error(), "unsub") {
		t.Errorf("got %v, want a permanent rejection naming unsub", err)
	}
	assertNoPersonalData(t, err)
}

func TestSendTemplateTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	c, err := mandrill.New(mandrill.Config{APIKey: testKey, From: testFrom, BaseURL: srv.URL, DefaultTemplate: "welcome"}, vendor.NewHTTPClient(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.SendTemplate(context.Background(), welcome)
	var ve *vendor.Error
	if !errors.As(err, &ve) || ve.Permanent || ve.Status != 0 || !strings.Contains(ve.Message, "timed out") {
		t.Fatalf("got %v, want a transient timed-out vendor error", err)
	}
	assertNoPersonalData(t, err)
}

func TestSendWithoutRecipient(t *testing.T) {
	t.Parallel()
	f, c := setup(t)
	if _, err := c.SendTemplate(context.Background(), mandrill.TemplateMessage{Template: "welcome"}); !vendor.IsPermanent(err) {
		t.Errorf("no recipient: got %v, want a permanent error", err)
	}
	if _, err := c.SendMessage(context.Background(), mandrill.Message{To: ana}); !vendor.IsPermanent(err) {
		t.Errorf("no content: got %v, want a permanent error", err)
	}
	if n := len(f.seen()); n != 0 {
		t.Errorf("calls: got %d, want 0", n)
	}
}
