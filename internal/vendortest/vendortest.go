// Package vendortest runs stand-ins for the vendors' HTTP APIs on loopback
// for tests: Mailchimp Marketing, Mailchimp Transactional, Meta Conversions
// API and WhatsApp Cloud API. Each checks the request the way the vendor
// documents it (path, auth, JSON shape), answers as the vendor does, counts
// calls per logical key (member, recipient, event id, message) so tests can
// tell a repeated call from a retried one, and can be told to fail.
package vendortest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Fault makes the next calls fail.
type Fault struct {
	Status     int           // HTTP status to answer
	Body       string        // body to answer
	Header     http.Header   // extra headers (Retry-After…)
	Delay      time.Duration // hang this long before answering
	Times      int           // how many calls; 0 = every call
	remaining  int
	infinitely bool
}

// Server is one fake vendor.
type Server struct {
	*httptest.Server
	t      testing.TB
	name   string
	mu     sync.Mutex
	calls  map[string]int // successful calls per key
	total  int
	faults []*Fault
	bodies []map[string]any
	times  []time.Time
	lean   bool // count calls only (see Lean)
}

func newServer(t testing.TB, name string, h func(s *Server, w http.ResponseWriter, r *http.Request, body map[string]any) (key string, ok bool)) *Server {
	s := &Server{t: t, name: name, calls: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		if len(raw) > 0 {
			if err := json.Unmarshal(raw, &body); err != nil {
				s.t.Errorf("%s: body is not a JSON object: %v", name, err)
				http.Error(w, "bad json", http.StatusBadRequest)
				return
			}
		}
		if f := s.nextFault(); f != nil {
			if f.Delay > 0 {
				select {
				case <-time.After(f.Delay):
				case <-r.Context().Done():
					return
				}
			}
			if f.Status != 0 {
				for k, vs := range f.Header {
					w.Header()[k] = vs
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(f.Status)
				_, _ = io.WriteString(w, f.Body)
				return
			}
		}
		key, ok := h(s, w, r, body)
		if ok {
			s.mu.Lock()
			s.calls[key]++
			s.total++
			if !s.lean {
				s.bodies = append(s.bodies, body)
				s.times = append(s.times, time.Now())
			}
			s.mu.Unlock()
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *Server) nextFault() *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.faults) > 0 {
		f := s.faults[0]
		if f.infinitely {
			return f
		}
		if f.remaining > 0 {
			f.remaining--
			return f
		}
		s.faults = s.faults[1:]
	}
	return nil
}

// Fail queues a fault for the next calls.
func (s *Server) Fail(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f.remaining = f.Times
	f.infinitely = f.Times == 0
	s.faults = append(s.faults, &f)
}

// Heal removes every queued fault.
func (s *Server) Heal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// Calls returns how many successful calls each key got.
func (s *Server) Calls() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.calls))
	for k, v := range s.calls {
		out[k] = v
	}
	return out
}

// Total is the number of successful calls.
func (s *Server) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// Times returns when each successful call was answered.
func (s *Server) Times() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.times...)
}

// Bodies returns the JSON bodies of the successful calls.
func (s *Server) Bodies() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]map[string]any(nil), s.bodies...)
}

func (s *Server) reject(w http.ResponseWriter, status int, format string, args ...any) (string, bool) {
	msg := fmt.Sprintf(format, args...)
	s.t.Errorf("%s: %s", s.name, msg)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": msg})
	return "", false
}

func str(m map[string]any, k string) string {
	v, _ := m[k].(string)
	return v
}

var (
	hexMD5    = regexp.MustCompile(`^[0-9a-f]{32}$`)
	hexSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// Mailchimp is the Marketing API: PUT /3.0/lists/{list}/members/{md5} with
// basic auth whose password is the API key; POST …/tags. Key: the member
// hash.
func Mailchimp(t testing.TB, apiKey, listID string) *Server {
	return newServer(t, "mailchimp", func(s *Server, w http.ResponseWriter, r *http.Request, body map[string]any) (string, bool) {
		if _, pass, ok := r.BasicAuth(); !ok || pass != apiKey {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"type":"https://mailchimp.com/developer/marketing/docs/errors/","title":"API Key Invalid","status":401,"detail":"Your API key may be invalid, or you've attempted to access the wrong datacenter.","instance":"x"}`)
			return "", false
		}
		prefix := "/3.0/lists/" + listID + "/members/"
		if !strings.HasPrefix(r.URL.Path, prefix) {
			return s.reject(w, 404, "unexpected path %s", r.URL.Path)
		}
		rest := strings.TrimPrefix(r.URL.Path, prefix)
		hash, sub, _ := strings.Cut(rest, "/")
		if !hexMD5.MatchString(hash) {
			return s.reject(w, 400, "member id %q is not an md5 hex", hash)
		}
		switch {
		case r.Method == http.MethodPut && sub == "":
			email := str(body, "email_address")
			if email == "" || str(body, "status_if_new") == "" {
				return s.reject(w, 400, "PUT member without email_address or status_if_new")
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"id": hash, "email_address": email, "unique_email_id": "u" + hash[:10], "status": str(body, "status_if_new")})
			return "member:" + hash, true
		case r.Method == http.MethodPost && sub == "actions/delete-permanent":
			w.WriteHeader(http.StatusNoContent)
			return "delete:" + hash, true
		case r.Method == http.MethodPost && sub == "tags":
			if _, ok := body["tags"].([]any); !ok {
				return s.reject(w, 400, "tags body without a tags array")
			}
			w.WriteHeader(http.StatusNoContent)
			return "tags:" + hash, true
		}
		return s.reject(w, 405, "unexpected %s %s", r.Method, r.URL.Path)
	})
}

// Mandrill is Mailchimp Transactional: POST {base}/messages/send-template
// and /messages/send with the key in the JSON body. Key: recipient email.
func Mandrill(t testing.TB, apiKey string) *Server {
	return newServer(t, "mandrill", func(s *Server, w http.ResponseWriter, r *http.Request, body map[string]any) (string, bool) {
		if r.Method != http.MethodPost {
			return s.reject(w, 405, "method %s", r.Method)
		}
		if str(body, "key") != apiKey {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, `{"status":"error","code":-1,"name":"Invalid_Key","message":"Invalid API key"}`)
			return "", false
		}
		switch r.URL.Path {
		case "/messages/send-template", "/api/1.0/messages/send-template":
			if str(body, "template_name") == "" {
				return s.reject(w, 400, "send-template without template_name")
			}
		case "/messages/send", "/api/1.0/messages/send":
		default:
			return s.reject(w, 404, "unexpected path %s", r.URL.Path)
		}
		msg, _ := body["message"].(map[string]any)
		to, _ := msg["to"].([]any)
		if len(to) != 1 {
			return s.reject(w, 400, "want exactly one recipient, got %d", len(to))
		}
		rcpt, _ := to[0].(map[string]any)
		email := str(rcpt, "email")
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode([]map[string]any{{"email": email, "status": "sent", "_id": fmt.Sprintf("m%x", len(email)*7919+int(time.Now().UnixNano()%100000))}})
		return email, true
	})
}

// Meta is the Conversions API: POST /{version}/{pixel}/events. Key: the
// event_id.
func Meta(t testing.TB, pixelID, token string) *Server {
	return newServer(t, "meta", func(s *Server, w http.ResponseWriter, r *http.Request, body map[string]any) (string, bool) {
		if r.Method != http.MethodPost || !regexp.MustCompile(`^/v\d+\.\d+/`+regexp.QuoteMeta(pixelID)+`/events$`).MatchString(r.URL.Path) {
			return s.reject(w, 404, "unexpected %s %s", r.Method, r.URL.Path)
		}
		if r.URL.Query().Has("access_token") {
			return s.reject(w, 400, "access token in the query string (it ends up in logs)")
		}
		if str(body, "access_token") != token && r.Header.Get("Authorization") != "Bearer "+token {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":{"message":"Invalid OAuth access token.","type":"OAuthException","code":190,"fbtrace_id":"A1"}}`)
			return "", false
		}
		data, _ := body["data"].([]any)
		if len(data) != 1 {
			return s.reject(w, 400, "want one event, got %d", len(data))
		}
		ev, _ := data[0].(map[string]any)
		if str(ev, "event_name") != "Lead" || str(ev, "action_source") != "website" || str(ev, "event_id") == "" {
			return s.reject(w, 400, "event: got name %q source %q id %q", str(ev, "event_name"), str(ev, "action_source"), str(ev, "event_id"))
		}
		ud, _ := ev["user_data"].(map[string]any)
		for _, k := range []string{"em", "ph"} {
			vals, _ := ud[k].([]any)
			for _, v := range vals {
				if h, _ := v.(string); !hexSHA256.MatchString(h) {
					return s.reject(w, 400, "user_data.%s is not a sha256 hex", k)
				}
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"events_received":1,"messages":[],"fbtrace_id":"AbCdEf"}`)
		return str(ev, "event_id"), true
	})
}

// WhatsApp is the Cloud API: POST /{version}/{phone_number_id}/messages with
// a bearer token, template messages only. Key: recipient + the template's
// last body parameter (our lead link), i.e. one notification of one lead to
// one salesperson.
func WhatsApp(t testing.TB, phoneNumberID, token string) *Server {
	return newServer(t, "whatsapp", func(s *Server, w http.ResponseWriter, r *http.Request, body map[string]any) (string, bool) {
		if r.Method != http.MethodPost || !regexp.MustCompile(`^/v\d+\.\d+/`+regexp.QuoteMeta(phoneNumberID)+`/messages$`).MatchString(r.URL.Path) {
			return s.reject(w, 404, "unexpected %s %s", r.Method, r.URL.Path)
		}
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":{"message":"Invalid OAuth access token.","type":"OAuthException","code":190,"fbtrace_id":"A1"}}`)
			return "", false
		}
		if str(body, "messaging_product") != "whatsapp" || str(body, "type") != "template" || str(body, "to") == "" {
			return s.reject(w, 400, "not a whatsapp template message")
		}
		tmpl, _ := body["template"].(map[string]any)
		var last string
		comps, _ := tmpl["components"].([]any)
		for _, c := range comps {
			cm, _ := c.(map[string]any)
			params, _ := cm["parameters"].([]any)
			for _, p := range params {
				pm, _ := p.(map[string]any)
				last = str(pm, "text")
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"messaging_product": "whatsapp",
			"contacts":          []map[string]any{{"input": str(body, "to"), "wa_id": str(body, "to")}},
			"messages":          []map[string]any{{"id": fmt.Sprintf("wamid.%d", time.Now().UnixNano())}},
		})
		return str(body, "to") + " " + last, true
	})
}
