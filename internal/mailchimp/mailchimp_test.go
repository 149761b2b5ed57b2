package mailchimp_test

import (
	"context"
	"crypto/md5"
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

	"github.com/cepcomunicacion/cepjobs/internal/mailchimp"
	"github.com/cepcomunicacion/cepjobs/internal/vendor"
)

const (
	testKey  = "0123456789abcdef0123456789abcdef-us21"
	testList = "a1b2c3d4e5"
)

// ana is a lead whose every personal field is distinctive, so a leak into
// an error string is easy to spot.
var ana = mailchimp.Member{
	Email:     "Ana.Garcia@Example.COM",
	FirstName: "Anabel",
	LastName:  "Garcíaperez",
	Phone:     "+34 600 111 222",
	Tags:      []string{"curso-marketing", "lead-web", "curso-marketing", " "},
}

// anaHash is computed here, independently of the package: MD5 of the
// lower-cased address, as Mailchimp documents the subscriber hash.
var anaHash = func() string {
	s := md5.Sum([]byte("ana.garcia@example.com"))
	return hex.EncodeToString(s[:])
}()

// call is one request as the fake saw it.
type call struct {
	Method, Path string
	Body         map[string]any
}

// fake is a Mailchimp Marketing API that checks each request the way the
// API reference documents it: basic auth with the key as password, JSON
// bodies, the member addressed by subscriber hash. reply decides the
// answer; by default PUT member answers 200 with a member document and
// POST tags answers 204.
type fake struct {
	t     *testing.T
	srv   *httptest.Server
	mu    sync.Mutex
	calls []call
	reply func(w http.ResponseWriter, r *http.Request) bool
}

func setup(t *testing.T) (*fake, *mailchimp.Client) {
	t.Helper()
	f := &fake{t: t}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	c, err := mailchimp.New(mailchimp.Config{APIKey: testKey, ListID: testList, BaseURL: f.srv.URL}, f.srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

func (f *fake) serve(w http.ResponseWriter, r *http.Request) {
	t := f.t
	if _, pass, ok := r.BasicAuth(); !ok || pass != testKey {
		t.Errorf("%s %s: basic auth password is not the API key", r.Method, r.URL.Path)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type: got %q, want application/json", ct)
	}
	raw, _ := io.ReadAll(r.Body)
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Errorf("%s %s: body is not a JSON object: %v", r.Method, r.URL.Path, err)
	}
	f.mu.Lock()
	f.calls = append(f.calls, call{r.Method, r.URL.Path, body})
	f.mu.Unlock()
	if f.reply != nil && f.reply(w, r) {
		return
	}
	member := "/3.0/lists/" + testList + "/members/" + anaHash
	switch {
	case r.Method == http.MethodPut && r.URL.Path == member:
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"id": anaHash, "email_address": body["email_address"], "unique_email_id": "6135566265",
			"contact_id": "c8a1b2", "web_id": 257741541, "status": "subscribed", "list_id": testList,
			"merge_fields": body["merge_fields"], "tags_count": 0, "tags": []any{},
		})
	case r.Method == http.MethodPost && r.URL.Path == member+"/tags":
		w.WriteHeader(http.StatusNoContent)
	default:
		t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
		problemJSON(w, 404, "Resource Not Found", "The requested resource could not be found.")
	}
}

func (f *fake) seen() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

// problemJSON answers like Mailchimp's error documents.
func problemJSON(w http.ResponseWriter, status int, title, detail string, extra ...map[string]any) {
	doc := map[string]any{
		"type":     "https://mailchimp.com/developer/marketing/docs/errors/",
		"title":    title,
		"status":   status,
		"detail":   detail,
		"instance": "3b4dcb40-0b6b-4820-bfaa-41267b3826ea",
	}
	for _, e := range extra {
		for k, v := range e {
			doc[k] = v
		}
	}
	w.Header().Set("Content-Type", "application/problem+json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(doc)
}

// assertNoPersonalData fails if err's text holds any of ana's fields or
// the key.
func assertNoPersonalData(t *testing.T, err error) {
	t.Helper()
	text := strings.ToLower(err.Error())
	for _, s := range []string{ana.Email, ana.FirstName, ana.LastName, ana.Phone, "600 111", "example.com", testKey} {
		if strings.Contains(text, strings.ToLower(s)) {
			t.Errorf("error text %q holds %q", err, s)
		}
	}
}

func TestUpsertMember(t *testing.T) {
	t.Parallel()
	f, c := setup(t)
	got, err := c.UpsertMember(context.Background(), ana)
	if err != nil {
		t.Fatal(err)
	}
	if want := (mailchimp.MemberResult{ID: anaHash, UniqueEmailID: "6135566265", Status: "subscribed"}); got != want {
		t.Errorf("result: got %+v, want %+v", got, want)
	}
	member := "/3.0/lists/" + testList + "/members/" + anaHash
	want := []call{
		{http.MethodPut, member, map[string]any{
			"email_address": "Ana.Garcia@Example.COM",
			"status_if_new": "subscribed",
			"merge_fields":  map[string]any{"FNAME": "Anabel", "LNAME": "Garcíaperez", "PHONE": "+34 600 111 222"},
		}},
		{http.MethodPost, member + "/tags", map[string]any{"tags": []any{
			map[string]any{"name": "curso-marketing", "status": "active"},
			map[string]any{"name": "lead-web", "status": "active"},
		}}},
	}
	if diff := cmp.Diff(want, f.seen()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestUpsertMemberWithoutTagsOrNames(t *testing.T) {
	t.Parallel()
	f, c := setup(t)
	if _, err := c.UpsertMember(context.Background(), mailchimp.Member{Email: " ana.garcia@example.com "}); err != nil {
		t.Fatal(err)
	}
	calls := f.seen()
	if len(calls) != 1 {
		t.Fatalf("calls: got %d, want 1 (no tags call without tags)", len(calls))
	}
	if _, ok := calls[0].Body["merge_fields"]; ok {
		t.Errorf("merge_fields sent with no values: %v (would blank the member's fields)", calls[0].Body)
	}
	if got := calls[0].Body["email_address"]; got != "ana.garcia@example.com" {
		t.Errorf("email_address: got %q, want it trimmed", got)
	}
}

func TestSubscriberHash(t *testing.T) {
	t.Parallel()
	if got := mailchimp.SubscriberHash("Ana.Garcia@Example.COM"); got != anaHash {
		t.Errorf("got %s, want %s", got, anaHash)
	}
}

func TestUpsertMemberErrors(t *testing.T) {
	t.Parallel()
	echo := "Ana.Garcia@Example.COM is already a list member. Use PUT to insert or update list members."
	for _, tc := range []struct {
		name       string
		reply      func(w http.ResponseWriter, r *http.Request) bool
		op         string
		status     int
		code       string
		permanent  bool
		throttled  bool
		retryAfter time.Duration
		message    string
	}{
		{
			name:  "member exists",
			reply: putReply(func(w http.ResponseWriter) { problemJSON(w, 400, "Member Exists", echo) }),
			op:    "upsert member", status: 400, code: "Member Exists", permanent: true, message: "already a list member",
		},
		{
			name: "fake address",
			reply: putReply(func(w http.ResponseWriter) {
				problemJSON(w, 400, "Invalid Resource", "Ana.Garcia@Example.COM looks fake or invalid, please enter a real email address.")
			}),
			op: "upsert member", status: 400, code: "Invalid Resource", permanent: true, message: "looks fake or invalid",
		},
		{
			name: "bad merge field",
			reply: putReply(func(w http.ResponseWriter) {
				problemJSON(w, 400, "Invalid Resource", "Your merge fields were invalid.", map[string]any{
					"errors": []any{map[string]any{"field": "PHONE", "message": "+34 600 111 222 is not a valid phone number"}},
				})
			}),
			op: "upsert member", status: 400, code: "Invalid Resource", permanent: true, message: "invalid merge fields: PHONE",
		},
		{
			name: "sign-up throttle",
			reply: putReply(func(w http.ResponseWriter) {
				problemJSON(w, 400, "Invalid Resource", "Ana.Garcia@Example.COM has signed up to a lot of lists very recently; we're not allowing more signups for now")
			}),
			op: "upsert member", status: 400, code: "Invalid Resource", retryAfter: 5 * time.Minute, message: "too many lists recently",
		},
		{
			name: "forgotten",
			reply: putReply(func(w http.ResponseWriter) {
				problemJSON(w, 400, "Forgotten Email Not Subscribed", "Ana.Garcia@Example.COM was permanently deleted and cannot be re-imported. The contact must re-subscribe to get back on the list.")
			}),
			op: "upsert member", status: 400, code: "Forgotten Email Not Subscribed", permanent: true, message: "permanently deleted",
		},
		{
			name: "bad key",
			reply: putReply(func(w http.ResponseWriter) {
				problemJSON(w, 401, "API Key Invalid", "Your API key may be invalid, or you've attempted to access the wrong datacenter.")
			}),
			op: "upsert member", status: 401, code: "API Key Invalid", permanent: true, message: "API key invalid",
		},
		{
			name: "no such audience",
			reply: putReply(func(w http.ResponseWriter) {
				problemJSON(w, 404, "Resource Not Found", "The requested resource could not be found.")
			}),
			op: "upsert member", status: 404, code: "Resource Not Found", permanent: true, message: "not found",
		},
		{
			name: "rate limited",
			reply: putReply(func(w http.ResponseWriter) {
				w.Header().Set("Retry-After", "7")
				problemJSON(w, 429, "Too Many Requests", "You have exceeded the limit of 10 simultaneous connections.")
			}),
			op: "upsert member", status: 429, code: "Too Many Requests", throttled: true, retryAfter: 7 * time.Second,
		},
		{
			name: "outage",
			reply: putReply(func(w http.ResponseWriter) {
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(503)
				_, _ = io.WriteString(w, "<html><body>Service Unavailable</body></html>")
			}),
			op: "upsert member", status: 503,
		},
		{
			name: "internal error",
			reply: putReply(func(w http.ResponseWriter) {
				problemJSON(w, 500, "Internal Server Error", "An unexpected internal error has occurred.")
			}),
			op: "upsert member", status: 500, code: "Internal Server Error",
		},
		{
			name: "account review",
			reply: putReply(func(w http.ResponseWriter) {
				problemJSON(w, 503, "Compliance Related", "This account is currently under compliance review.")
			}),
			op: "upsert member", status: 503, code: "Compliance Related", retryAfter: time.Hour, message: "compliance review",
		},
		{
			name:  "bare 403 from the edge",
			reply: putReply(func(w http.ResponseWriter) { w.WriteHeader(403) }),
			op:    "upsert member", status: 403, message: "without an error document",
		},
		{
			name: "tags fail after the upsert",
			reply: func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method != http.MethodPost {
					return false
				}
				problemJSON(w, 500, "Internal Server Error", "An unexpected internal error has occurred.")
				return true
			},
			op: "tag member", status: 500, code: "Internal Server Error",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, c := setup(t)
			f.reply = tc.reply
			_, err := c.UpsertMember(context.Background(), ana)
			var ve *vendor.Error
			if !errors.As(err, &ve) {
				t.Fatalf("got %v, want a *vendor.Error", err)
			}
			if ve.Vendor != "mailchimp" || ve.Op != tc.op || ve.Status != tc.status || ve.Code != tc.code {
				t.Errorf("got vendor %q op %q status %d code %q, want mailchimp %q %d %q", ve.Vendor, ve.Op, ve.Status, ve.Code, tc.op, tc.status, tc.code)
			}
			if ve.Permanent != tc.permanent || ve.Throttled != tc.throttled || ve.RetryAfter != tc.retryAfter {
				t.Errorf("got permanent %v throttled %v retry after %s, want %v %v %s", ve.Permanent, ve.Throttled, ve.RetryAfter, tc.permanent, tc.throttled, tc.retryAfter)
			}
			if !strings.Contains(ve.Message, tc.message) {
				t.Errorf("message: got %q, want it to contain %q", ve.Message, tc.message)
			}
			assertNoPersonalData(t, err)
		})
	}
}

// putReply answers the member PUT with write and leaves other calls to the
// default.
func putReply(write func(w http.ResponseWriter)) func(w http.ResponseWriter, r *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPut {
			return false
		}
		write(w)
		return true
	}
}

func TestUpsertMemberTimeout(t *testing.T) {
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
	c, err := mailchimp.New(mailchimp.Config{APIKey: testKey, ListID: testList, BaseURL: srv.URL}, vendor.NewHTTPClient(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.UpsertMember(context.Background(), ana)
	var ve *vendor.Error
	if !errors.As(err, &ve) || ve.Permanent || ve.Status != 0 || !strings.Contains(ve.Message, "timed out") {
		t.Fatalf("got %v, want a transient timed-out vendor error", err)
	}
	assertNoPersonalData(t, err)
}

func TestUpsertMemberWithoutEmail(t *testing.T) {
	t.Parallel()
	f, c := setup(t)
	_, err := c.UpsertMember(context.Background(), mailchimp.Member{FirstName: "Anabel"})
	if !vendor.IsPermanent(err) {
		t.Errorf("got %v, want a permanent error", err)
	}
	if n := len(f.seen()); n != 0 {
		t.Errorf("calls: got %d, want 0", n)
	}
}
