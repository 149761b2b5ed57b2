package api

// Fuzz targets for everything the API decodes from a request: bodies,
// query strings, path ids and the headers that steer them. They run the real
// handlers in process (httptest.NewRecorder, no network) on a store that
// records what reaches it and refuses what PostgreSQL would refuse, so they
// run thousands of inputs a second. FuzzEndToEnd (hostile_test.go) runs the
// same properties over HTTP against the real PostgreSQL and Redis.
//
// Under plain `go test` each target runs its seeds; `scripts/fuzz.sh 60s`
// fuzzes each one in turn.
//
// The properties, for every input:
//   - no panic, no 5xx;
//   - every non-2xx answer is application/problem+json: a JSON object with
//     type, title and status (equal to the HTTP status), and a 422 names
//     every offending field;
//   - a non-2xx answer stored and queued nothing;
//   - whatever reaches the store is storable: valid UTF-8 without NUL,
//     JSON that PostgreSQL's jsonb takes, times JSON can encode.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cepcomunicacion/cepjobs/internal/backup"
	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

const (
	fuzzToken       = "fuzz-token-0123456789abcdef"
	fuzzVerifyToken = "fuzz-verify-token-0123456789"
	fuzzAppSecret   = "fuzz-app-secret-0123456789abcdef"
)

// fakeStore stands in for *store.Store: it counts writes and checks that
// each value handed to it could be stored. An unstorable value is returned
// as an error, as PostgreSQL would, so the handler answers 500 and the
// property "no 5xx" reports it.
type fakeStore struct {
	mu     sync.Mutex
	writes int
	bad    []string
}

func (f *fakeStore) write(what string, vs ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, v := range vs {
		if err := storable(reflect.ValueOf(v), what); err != nil {
			f.bad = append(f.bad, err.Error())
			return err
		}
	}
	f.writes++
	return nil
}

func (f *fakeStore) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes
}

func (f *fakeStore) SubmitLead(_ context.Context, l store.NewLead, _ time.Time, idem *store.Idempotency) (store.LeadSubmission, error) {
	const id = "01a21f83-f54d-7489-8fae-08ea6ef64faa"
	if err := f.write("lead", l); err != nil {
		return store.LeadSubmission{}, err
	}
	res := store.LeadSubmission{LeadID: id, Status: store.LeadQueued}
	if idem != nil {
		if _, err := idem.Render(res); err != nil {
			return store.LeadSubmission{}, err
		}
		if err := f.write("idempotency key", idem.Principal, idem.Key); err != nil {
			return store.LeadSubmission{}, err
		}
	}
	return res, nil
}

func (f *fakeStore) LookupIdempotency(context.Context, *store.Idempotency) (*store.Response, error) {
	return nil, nil
}

func (f *fakeStore) LeadStatus(context.Context, string) (store.LeadStatus, error) {
	return store.LeadStatus{}, store.ErrNotFound
}

func (f *fakeStore) QueueTask(_ context.Context, taskType string, payload []byte, _ time.Time) (string, error) {
	return "01a21f83-0000-7000-8000-000000000001", f.write("task", taskType, json.RawMessage(payload))
}

func (f *fakeStore) CreateContentJob(_ context.Context, j store.ContentJob, _ time.Time, _ string, payload func(string) ([]byte, error)) (string, string, error) {
	p, err := payload("01a21f83-0000-7000-8000-000000000002")
	if err != nil {
		return "", "", err
	}
	return "01a21f83-0000-7000-8000-000000000002", "01a21f83-0000-7000-8000-000000000003", f.write("content job", j, json.RawMessage(p))
}

func (f *fakeStore) ContentJob(context.Context, string) (store.ContentJob, error) {
	return store.ContentJob{}, store.ErrNotFound
}

func (f *fakeStore) Ping(context.Context) error { return nil }

func (f *fakeStore) LaunchCampaign(_ context.Context, d store.CampaignDefinition, _ time.Time, _ string, payload func(string, string) ([]byte, error)) (store.CampaignChange, error) {
	p, err := payload(d.ID, "01a21f83-0000-7000-8000-00000000000a")
	if err != nil {
		return store.CampaignChange{}, err
	}
	// The store keeps the audience as JSON.
	aud, err := json.Marshal(d.Audience)
	if err != nil {
		return store.CampaignChange{}, err
	}
	if err := f.write("campaign", d, json.RawMessage(aud), json.RawMessage(p)); err != nil {
		return store.CampaignChange{}, err
	}
	return store.CampaignChange{Campaign: store.Campaign{CampaignDefinition: d, Status: "launching"},
		OutboxID: "01a21f83-0000-7000-8000-000000000004", Payload: p}, nil
}

func (f *fakeStore) PauseCampaign(context.Context, string, time.Time) (store.Campaign, error) {
	return store.Campaign{}, store.ErrNotFound
}

func (f *fakeStore) ResumeCampaign(context.Context, string, time.Time, string, func(string, string) ([]byte, error)) (store.CampaignChange, error) {
	return store.CampaignChange{}, store.ErrNotFound
}

func (f *fakeStore) Campaign(context.Context, string) (store.Campaign, error) {
	return store.Campaign{}, store.ErrNotFound
}

func (f *fakeStore) CreateExport(_ context.Context, e store.NewExport, _ time.Time, _ string, payload func(string) ([]byte, error)) (string, string, error) {
	// The store keeps the filters as JSON.
	filters, err := json.Marshal(e.Filters)
	if err != nil {
		return "", "", fmt.Errorf("create export: %w", err)
	}
	p, err := payload("01a21f83-0000-7000-8000-000000000005")
	if err != nil {
		return "", "", err
	}
	return "01a21f83-0000-7000-8000-000000000005", "01a21f83-0000-7000-8000-000000000006", f.write("export", e, json.RawMessage(filters), json.RawMessage(p))
}

func (f *fakeStore) Export(context.Context, string) (store.Export, error) {
	return store.Export{}, store.ErrNotFound
}

func (f *fakeStore) RenewExportURL(context.Context, string, time.Time, time.Time, string, func(string) ([]byte, error)) (string, error) {
	return "", store.ErrNotFound
}

func (f *fakeStore) QueueTasks(_ context.Context, ts []store.QueuedTask, _ time.Time) ([]string, error) {
	ids := make([]string, len(ts))
	for i, t := range ts {
		if err := f.write("webhook task", t.TaskType, t.Key, json.RawMessage(t.Payload)); err != nil {
			return nil, err
		}
		var p tasks.MetaLeadgen
		if err := json.Unmarshal(t.Payload, &p); err != nil || p.Validate() != nil {
			return nil, fmt.Errorf("queued a meta:leadgen payload that does not validate: %s", t.Payload)
		}
		ids[i] = fmt.Sprintf("01a21f83-0000-7000-8000-%012d", i)
	}
	return ids, nil
}

func (f *fakeStore) Stats(_ context.Context, from, to time.Time, by []string) ([]store.StatsRow, error) {
	return nil, nil
}

func (f *fakeStore) RequestErasure(context.Context, string, string, time.Time, string, func(string) ([]byte, error)) (string, error) {
	return "", store.ErrNotFound
}

// fakeDispatch counts inline dispatches.
type fakeDispatch struct {
	mu sync.Mutex
	n  int
}

func (d *fakeDispatch) Now(context.Context, string, string, []byte) {
	d.mu.Lock()
	d.n++
	d.mu.Unlock()
}

func (d *fakeDispatch) SendLead(ctx context.Context, leadID string) {
	d.Now(ctx, leadID, "lead:process", nil)
}

func (d *fakeDispatch) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n
}

type noBackups struct{}

func (noBackups) List(context.Context, string) ([]backup.Object, error) { return nil, nil }

// tailWriter keeps the end of the log, for a failure message.
type tailWriter struct {
	mu sync.Mutex
	b  []byte
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b = append(w.b, p...)
	if len(w.b) > 8<<10 {
		w.b = append([]byte(nil), w.b[len(w.b)-4<<10:]...)
	}
	return len(p), nil
}

func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.b)
}

type fuzzServer struct {
	srv      *Server
	store    *fakeStore
	dispatch *fakeDispatch
	logs     *tailWriter
}

func newFuzzServer(t testing.TB) *fuzzServer {
	t.Helper()
	fs := &fuzzServer{store: &fakeStore{}, dispatch: &fakeDispatch{}, logs: &tailWriter{}}
	cfg := Config{
		RequestTimeout: 5 * time.Second,
		Tokens: Tokens{{Name: "fuzz", Secret: fuzzToken, Scopes: []string{
			ScopeLeadsWrite, ScopeLeadsRead, ScopeLeadsErase, ScopeContentWrite, ScopeContentRead,
			ScopeCampaignsWrite, ScopeCampaignsRead, ScopeBackupsWrite, ScopeBackupsRead, ScopeExportsWrite, ScopeStatsRead,
		}}},
		MetaWebhook: MetaWebhookConfig{VerifyToken: fuzzVerifyToken, AppSecret: fuzzAppSecret},
	}
	s, err := NewServer(Deps{
		Config: cfg, Store: fs.store, Dispatch: fs.dispatch, Backups: noBackups{}, BackupDatabase: "cepcomunicacion",
		Logger:   slog.New(slog.NewTextHandler(fs.logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Registry: prometheus.NewRegistry(),
		Now:      func() time.Time { return time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC) },
	})
	if err != nil {
		t.Fatal(err)
	}
	fs.srv = s
	return fs
}

// serve runs one request through the whole handler (middleware included)
// and checks the properties common to every endpoint.
func (fs *fuzzServer) serve(t *testing.T, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	w0, d0 := fs.store.count(), fs.dispatch.count()
	rec := httptest.NewRecorder()
	fs.srv.ServeHTTP(rec, req)
	wrote, dispatched := fs.store.count()-w0, fs.dispatch.count()-d0
	checkAnswer(t, req, rec.Code, rec.Header(), rec.Body.Bytes(), fs.logs.String())
	if rec.Code >= 300 && (wrote != 0 || dispatched != 0) {
		t.Fatalf("%s %s answered %d but stored %d and dispatched %d: %s", req.Method, req.URL.Path, rec.Code, wrote, dispatched, rec.Body.Bytes())
	}
	return rec
}

// checkAnswer checks what every answer must be, whatever the input.
func checkAnswer(t *testing.T, req *http.Request, status int, h http.Header, body []byte, logs string) {
	t.Helper()
	what := req.Method + " " + req.URL.Path
	if status >= 500 {
		t.Fatalf("%s answered %d: %s\nlog: %s", what, status, body, logs)
	}
	for k, vs := range h {
		for _, v := range vs {
			if strings.ContainsAny(v, "\r\n\x00") {
				t.Fatalf("%s: header %s carries a control character: %q", what, k, v)
			}
		}
	}
	if status >= 300 && status < 400 {
		// ServeMux's redirect to the cleaned path ("/v1/leads/.." and the
		// like): no body to speak of, and nothing was run.
		if status != http.StatusMovedPermanently || h.Get("Location") == "" {
			t.Fatalf("%s answered %d: %v %q", what, status, h, body)
		}
		return
	}
	if status < 300 {
		if ct := h.Get("Content-Type"); ct != "application/json" && !strings.HasPrefix(ct, "text/plain") {
			t.Fatalf("%s answered %d with Content-Type %q", what, status, ct)
		} else if ct == "application/json" && !json.Valid(body) {
			t.Fatalf("%s answered %d with a body that is not JSON: %q", what, status, body)
		}
		return
	}
	if ct := h.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("%s answered %d with Content-Type %q, want application/problem+json: %q", what, status, ct, body)
	}
	var p struct {
		Type   *string `json:"type"`
		Title  *string `json:"title"`
		Status *int    `json:"status"`
		Errors []struct {
			Field   string `json:"field"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if !utf8.Valid(body) {
		t.Fatalf("%s answered %d with a body that is not UTF-8: %q", what, status, body)
	}
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("%s answered %d with a problem that is not JSON (%v): %q", what, status, err, body)
	}
	if p.Type == nil || *p.Type == "" || p.Title == nil || *p.Title == "" || p.Status == nil || *p.Status != status {
		t.Fatalf("%s answered %d with an incomplete problem: %s", what, status, body)
	}
	if status == http.StatusUnprocessableEntity {
		if len(p.Errors) == 0 {
			t.Fatalf("%s answered 422 naming no field: %s", what, body)
		}
		for _, e := range p.Errors {
			if e.Field == "" || e.Message == "" {
				t.Fatalf("%s answered 422 with an unnamed field error: %s", what, body)
			}
		}
	}
}

// storable walks v and reports what PostgreSQL (or the JSON the store
// writes) would refuse: invalid UTF-8 or NUL in a string, JSON that jsonb
// refuses, a time JSON cannot encode.
func storable(v reflect.Value, path string) error {
	if !v.IsValid() {
		return nil
	}
	switch x := v.Interface().(type) {
	case json.RawMessage:
		if len(x) == 0 {
			return nil
		}
		if err := jsonbOK(x); err != nil {
			return fmt.Errorf("%s: %v: %q", path, err, x)
		}
		return nil
	case time.Time:
		if y := x.UTC().Year(); y < 1 || y > 9999 {
			return fmt.Errorf("%s: time %s is outside years 1-9999", path, x)
		}
		return nil
	case []byte:
		return nil // bytea
	}
	switch v.Kind() {
	case reflect.String:
		s := v.String()
		if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
			return fmt.Errorf("%s: %q is not storable text", path, s)
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			return storable(v.Elem(), path)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				if err := storable(v.Field(i), path+"."+v.Type().Field(i).Name); err != nil {
					return err
				}
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if err := storable(v.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			if err := storable(it.Key(), path+"{key}"); err != nil {
				return err
			}
			if err := storable(it.Value(), path+"{value}"); err != nil {
				return err
			}
		}
	}
	return nil
}

// jsonbOK reports whether PostgreSQL's jsonb would take b: valid JSON in
// valid UTF-8, and no string holding \u0000 or an unpaired surrogate escape.
func jsonbOK(b []byte) error {
	if !utf8.Valid(b) {
		return errors.New("not UTF-8")
	}
	if !json.Valid(b) {
		return errors.New("not JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	for {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if _, ok := tok.(string); !ok {
			continue
		}
		raw := b[start:dec.InputOffset()]
		if i := bytes.IndexByte(raw, '"'); i >= 0 {
			raw = raw[i:]
		}
		if err := escapesOK(raw); err != nil {
			return err
		}
	}
}

// escapesOK checks the \u escapes of one raw JSON string as jsonb does.
func escapesOK(raw []byte) error {
	s := string(raw)
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			continue
		}
		i++
		if i >= len(s) || s[i] != 'u' || i+4 >= len(s) {
			continue
		}
		r, err := strconv.ParseUint(s[i+1:i+5], 16, 32)
		if err != nil {
			continue
		}
		switch {
		case r == 0:
			return errors.New(`\u0000 in a string`)
		case r >= 0xD800 && r < 0xDC00:
			var lo uint64
			if i+10 < len(s) && s[i+5] == '\\' && s[i+6] == 'u' {
				lo, _ = strconv.ParseUint(s[i+7:i+11], 16, 32)
			}
			if lo < 0xDC00 || lo > 0xDFFF {
				return errors.New("a high surrogate escape without its low half")
			}
			i += 10
			continue
		case r >= 0xDC00 && r <= 0xDFFF:
			return errors.New("a low surrogate escape without its high half")
		}
		i += 4
	}
	return nil
}

func jsonRequest(method, target string, body []byte, contentType string) *http.Request {
	req := httptest.NewRequest(method, "http://intake.test/", bytes.NewReader(body))
	req.URL.Path = target
	req.RequestURI = ""
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Authorization", "Bearer "+fuzzToken)
	return req
}

// Seeds shared by the body targets: the hostile shapes of the table test.
func bodySeeds(valid string) []string {
	return []string{
		valid,
		``, ` `, `null`, `true`, `1e400`, `"x"`, `[]`, `[{}]`, `{}`, `{} {}`, `{}x`, `{"a":1}garbage`,
		`{`, `{"`, `{"a"`, `{"a":`, `{"a":}`, `{,}`, `{"a":1,}`, `{'a':1}`,
		"\xef\xbb\xbf{}",
		// Deep nesting: the hostile table sends 10,000 levels; seeds that
		// large make the fuzzer spend its time minimizing them.
		strings.Repeat(`{"a":`, 100) + `"\ud800"` + strings.Repeat(`}`, 100),
		`{"utm":` + strings.Repeat(`[`, 100) + `1` + strings.Repeat(`]`, 100) + `}`,
		`{"first_name":1e400,"email":18446744073709551616,"course":-0,"consent":{"privacy":1}}`,
		`{"first_name":"\u0000","email":"a\u0000@example.com","course":"a\u0000"}`,
		"{\"first_name\":\"\xff\xfe\",\"\xff\":1}",
		`{"first_name":"\ud800","last_name":"\udc00x","message":"\ud83d\ude00"}`,
		`{"first_name":"Ana","first_name":"Eva","consent":{},"consent":null}`,
		`{"first_name":"Robert'); DROP TABLE cepjobs.leads;--","email":"x@example.com' OR '1'='1"}`,
		`{"first_name":"Ana\r\nX-Injected: 1","email":"ana@example.com\r\nBcc: all@example.com"}`,
		`{"first_name":"\u202eanA\u200b\u200d\ufeff","course":"curso\u200b"}`,
		`{"course":{"a":[1,2,{"b":null}]},"utm":[],"consent":"yes","client":1}`,
		`{"input":{"title":"\u0000"},"kind":"course_description"}`,
		`{"from":"9999-12-31","to":"9999-12-31","audience":{"to":"9999-12-31"}}`,
		`{"from":"0000-01-01T00:00:00+23:59","to":"0001-01-01"}`,
	}
}

func addSeeds(f *testing.F, valid string, extra ...string) {
	for _, s := range append(bodySeeds(valid), extra...) {
		f.Add([]byte(s))
	}
}

const validLeadJSON = `{"external_id":"cms-123","first_name":"Ana","last_name":"García","email":"ana@example.com",
"phone":"+34600111222","course":"tecnico-marketing-digital","campaign":"meta-otono-2026","site":"sevilla",
"source":"web-form","message":"Quiero información","utm":{"source":"facebook","medium":"cpc","campaign":"otono"},
"consent":{"privacy":true,"marketing":false,"text_version":"2026-01","accepted_at":"2026-11-27T10:00:00Z"},
"client":{"ip":"203.0.113.7","user_agent":"Mozilla/5.0"},"captcha_token":"10000000-aaaa-bbbb-cccc-000000000001"}`

// FuzzLeadDecodeValidate fuzzes the lead decoder and validator directly:
// the answer is a 400, field errors that each name a field, or a lead whose
// every value can be stored and says what was sent.
func FuzzLeadDecodeValidate(f *testing.F) {
	addSeeds(f, validLeadJSON,
		`{"first_name":"Ana","email":"ana@example.com","course":"c","source":"s","consent":{"privacy":true,"text_version":"v"}}`,
		`{"first_name":"Ana","email":"\"ana\"@example.com","course":"c","source":"s","consent":{"privacy":true,"text_version":"v"}}`,
		`{"first_name":"Ana","email":"ana@[127.0.0.1]","course":"c","source":"s","consent":{"privacy":true,"text_version":"v"}}`,
		`{"first_name":"Ana","email":"ana@example.com","course":"c","source":"s","consent":{"privacy":true,"text_version":"v"},"client":{"ip":"::ffff:1.2.3.4"}}`)
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		var req leadRequest
		shape, err := decodeJSON(body, &req)
		if err != nil {
			var p *Problem
			if !errors.As(err, &p) || p.Status != http.StatusBadRequest {
				t.Fatalf("decode error %v is not a 400 problem", err)
			}
			return
		}
		lead, errs := req.validate(now)
		merged := mergeFieldErrors(shape, errs)
		for _, e := range merged {
			if e.Field == "" || e.Message == "" {
				t.Fatalf("unnamed field error %+v", e)
			}
		}
		if len(merged) > 0 {
			return
		}
		if err := storable(reflect.ValueOf(lead), "lead"); err != nil {
			t.Fatalf("valid lead is not storable: %v", err)
		}
		for name, v := range map[string]string{"first_name": lead.FirstName, "last_name": lead.LastName, "email": lead.Email,
			"external_id": lead.ExternalID, "text_version": lead.ConsentTextVersion, "user_agent": lead.ClientUserAgent, "phone": lead.Phone} {
			if strings.ContainsFunc(v, unicode.IsControl) {
				t.Fatalf("valid lead's %s holds a control character: %q", name, v)
			}
		}
		if strings.ContainsFunc(lead.Email, unicode.IsSpace) || strings.Count(lead.Email, "@") < 1 {
			t.Fatalf("valid lead's email %q is not an address", lead.Email)
		}
		if lead.FirstName == "" || lead.Course == "" || lead.Source == "" || !lead.ConsentPrivacy {
			t.Fatalf("valid lead misses a required field: %+v", lead)
		}
		// Validating what was accepted, sent again, accepts it again.
		again, _ := json.Marshal(req)
		var req2 leadRequest
		if shape, err := decodeJSON(again, &req2); err != nil || len(shape) > 0 {
			t.Fatalf("re-encoded valid lead does not decode: %v %v", err, shape)
		}
		if _, errs := req2.validate(now); len(errs) > 0 {
			t.Fatalf("re-encoded valid lead does not validate: %v", errs)
		}
	})
}

// FuzzLeadRequest fuzzes POST /v1/leads with its media type and
// Idempotency-Key.
func FuzzLeadRequest(f *testing.F) {
	for _, s := range bodySeeds(validLeadJSON) {
		f.Add([]byte(s), "application/json", "")
	}
	f.Add([]byte(validLeadJSON), "application/json; charset=utf-8", "cms-form-123")
	f.Add([]byte(validLeadJSON), "application/merge-patch+json", "key with spaces")
	f.Add([]byte(validLeadJSON), "text/plain", "")
	f.Add([]byte(validLeadJSON), "application/x-www-form-urlencoded", "")
	f.Add([]byte(validLeadJSON), "", "\x7f")
	f.Add([]byte(validLeadJSON), "application/json; charset=\"", "k")
	f.Add([]byte(`first_name=Ana`), "multipart/form-data; boundary=x", "")
	fs := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte, contentType, idemKey string) {
		req := jsonRequest(http.MethodPost, "/v1/leads", body, contentType)
		if idemKey != "" && !strings.ContainsAny(idemKey, "\r\n\x00") {
			req.Header.Set("Idempotency-Key", idemKey)
		}
		rec := fs.serve(t, req)
		if rec.Code == http.StatusAccepted && !strings.HasPrefix(rec.Header().Get("Location"), "/v1/leads/") {
			t.Fatalf("202 without a Location: %v", rec.Header())
		}
	})
}

const validContentJSON = `{"kind":"course_description","language":"es-ES","input":{"title":"Técnico en Marketing Digital",
"modality":"online","duration":"600 horas","audience":"Personas que quieren trabajar en marketing","highlights":["a","b"]},
"callback_url":"https://cms.example.com/api/content-callback"}`

// FuzzContentRequest fuzzes POST /v1/content.
func FuzzContentRequest(f *testing.F) {
	addSeeds(f, validContentJSON,
		`{"kind":"meta_ad_copy","input":{"course_title":"T","offer":"O","audience":"A","variants":1e400,"call_to_action":"SIGN_UP"}}`,
		`{"kind":"meta_ad_copy","input":{"course_title":"T","offer":"O","audience":"A","variants":18446744073709551616}}`,
		`{"kind":"email_copy","input":{"purpose":"P","audience":"A","key_points":["\ud800"]}}`,
		"{\"kind\":\"email_copy\",\"input\":{\"purpose\":\"P\xff\",\"audience\":\"A\"}}",
		`{"kind":"email_copy","input":{"purpose":"P","audience":"A","tone":"\udc00"}}`,
		`{"kind":"course_description","input":[],"callback_url":"javascript:alert(1)"}`,
		`{"kind":"course_description","input":"x","callback_url":"https://user:pw@cms.example.com/"}`,
		`{"kind":"course_description","input":null,"language":"es-ES\u0000"}`)
	fs := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		fs.serve(t, jsonRequest(http.MethodPost, "/v1/content", body, "application/json"))
	})
}

const validCampaignJSON = `{"name":"Otoño 2026","course":"tecnico-marketing-digital","template":"otono-2026",
"audience":{"course":"tecnico-marketing-digital","campus":"sevilla","from":"2026-01-01","to":"2099-12-31T23:59:59Z"},
"meta_campaign_id":"120200001"}`

// FuzzCampaignRequest fuzzes POST /v1/campaigns/{id}/launch (body and
// path id), /pause and /resume, and GET /v1/campaigns/{id}.
func FuzzCampaignRequest(f *testing.F) {
	ids := []string{"otono-2026", "", "a/b", "..", "%00", "x\x00y", "\xff", strings.Repeat("a", 42), "a b", "é"}
	for i, s := range append(bodySeeds(validCampaignJSON),
		`{"name":"n","template":"t","audience":{"from":"9999-12-31","to":"9999-12-31"}}`,
		`{"name":"n","template":"t","audience":{"to":"9999-12-31T23:59:59.9999999Z"}}`,
		`{"name":"n","template":"t","audience":{"from":"2026-02-30","to":"2026-01-01"}}`,
		`{"name":"n","template":"t","audience":{},"meta_campaign_id":"1e5"}`) {
		f.Add(ids[i%len(ids)], byte(i), []byte(s))
	}
	fs := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, id string, action byte, body []byte) {
		if id == "" {
			id = "x"
		}
		path := "/v1/campaigns/" + url.PathEscape(id)
		var req *http.Request
		switch action % 4 {
		case 0, 1:
			req = jsonRequest(http.MethodPost, path+"/launch", body, "application/json")
		case 2:
			req = jsonRequest(http.MethodPost, path+[]string{"/pause", "/resume"}[int(action/4)%2], body, "application/json")
		case 3:
			req = jsonRequest(http.MethodGet, path, nil, "")
		}
		req.URL.RawPath = path
		fs.serve(t, req)
	})
}

const validExportJSON = `{"course":"tecnico-marketing-digital","campus":"sevilla","source":"web-form","campaign":"meta-otono-2026",
"from":"2026-11-01","to":"2026-11-30","marketing_consent":true}`

// FuzzExportRequest fuzzes POST /v1/exports.
func FuzzExportRequest(f *testing.F) {
	addSeeds(f, validExportJSON,
		`{"from":"9999-12-31"}`, `{"to":"9999-12-31"}`, `{"to":"9999-12-31T23:59:59-23:59"}`,
		`{"from":"0000-01-01T00:00:00+00:01"}`, `{"from":"2026-11-30","to":"2026-11-01"}`,
		`{"marketing_consent":"yes"}`, `{"marketing_consent":null,"course":""}`)
	fs := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		fs.serve(t, jsonRequest(http.MethodPost, "/v1/exports", body, "application/json"))
	})
}

// FuzzMetaWebhook fuzzes POST /v1/webhooks/meta. The body is signed with
// the app secret (else every input would stop at the signature), except
// when sig is non-empty: then sig is sent as the signature as it is.
func FuzzMetaWebhook(f *testing.F) {
	valid := `{"object":"page","entry":[{"id":"100200300","time":1764268206,"changes":[{"field":"leadgen","value":{"ad_id":"1","form_id":"900100200","leadgen_id":"444555666","created_time":1764268205,"page_id":"100200300"}}]}]}`
	for i, s := range append(bodySeeds(valid),
		`{"object":"page","entry":[{"id":100200300,"changes":[{"field":"leadgen","value":{"leadgen_id":1e400,"page_id":18446744073709551616}}]}]}`,
		`{"object":"page","entry":[{"id":"1","changes":[{"field":"leadgen","value":{"leadgen_id":"12\u00003"}}]}]}`,
		`{"object":"page","entry":[{"id":"1","changes":[{"field":"leadgen","value":{"leadgen_id":-1.5e3}}]}]}`,
		`{"object":"page","entry":[{"id":"1","changes":[{"field":"leadgen","value":"x"},{"field":"leadgen","value":null},{"field":"feed"}]}]}`,
		`{"object":"page","entry":[{"id":{"a":1},"changes":{}}]}`,
		`{"object":"page","entry":null}`) {
		sig := ""
		if i%7 == 3 {
			sig = "sha256=00"
		}
		f.Add([]byte(s), sig)
	}
	fs := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte, sig string) {
		req := jsonRequest(http.MethodPost, "/v1/webhooks/meta", body, "application/json")
		req.Header.Del("Authorization")
		if sig == "" {
			m := hmac.New(sha256.New, []byte(fuzzAppSecret))
			m.Write(body)
			sig = "sha256=" + hex.EncodeToString(m.Sum(nil))
		}
		if !strings.ContainsAny(sig, "\r\n\x00") {
			req.Header.Set("X-Hub-Signature-256", sig)
		}
		rec := fs.serve(t, req)
		if rec.Code == http.StatusOK {
			var a webhookAnswer
			if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil || a.Queued > a.Leadgen || a.Queued < 0 {
				t.Fatalf("webhook answer %s", rec.Body.Bytes())
			}
		}
	})
}

// FuzzQueryEndpoints fuzzes the endpoints that read a query string or a
// path id: GET /v1/stats, GET /v1/webhooks/meta (the subscription
// challenge), GET /v1/leads/{id}, DELETE /v1/leads/{id},
// GET /v1/content/{id}, GET /v1/exports/{id}, GET /v1/backups and
// POST /v1/backups (whose body is ignored).
func FuzzQueryEndpoints(f *testing.F) {
	for i, q := range []string{
		"from=2026-11-01&to=2026-11-30&by=day,course", "from=2026-11-01&to=2025-11-30", "from=0000-01-01&to=9999-12-31",
		"by=day,day,,%00", "from=2026-02-30", "from=%ff&to=%ff", "by=" + strings.Repeat("day,", 1000), "%zz", ";;&&==",
		"hub.mode=subscribe&hub.verify_token=" + fuzzVerifyToken + "&hub.challenge=1158201444",
		"hub.mode=subscribe&hub.verify_token=" + fuzzVerifyToken + "&hub.challenge=%3Cscript%3E",
		"hub.mode=subscribe&hub.verify_token=" + fuzzVerifyToken + "&hub.challenge=a%0d%0aX-Injected:%201",
		"hub.mode=subscribe&hub.verify_token=x&hub.challenge=1", "hub.mode=subscribe&hub.mode=unsubscribe",
	} {
		f.Add(byte(i), q, "01a21f83-f54d-7489-8fae-08ea6ef64faa")
	}
	for i, id := range []string{"not-a-uuid", "{01a21f83-f54d-7489-8fae-08ea6ef64faa}", "urn:uuid:01a21f83-f54d-7489-8fae-08ea6ef64faa",
		"01a21f83f54d74898fae08ea6ef64faa", "%00", "' OR 1=1 --", "\xff\xfe", "a\r\nb"} {
		f.Add(byte(i+2), "", id)
	}
	fs := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, which byte, query, id string) {
		if id == "" {
			id = "x"
		}
		pid := url.PathEscape(id)
		var req *http.Request
		switch which % 8 {
		case 0:
			req = jsonRequest(http.MethodGet, "/v1/stats", nil, "")
		case 1:
			req = jsonRequest(http.MethodGet, "/v1/webhooks/meta", nil, "")
		case 2:
			req = jsonRequest(http.MethodGet, "/v1/leads/"+id, nil, "")
		case 3:
			req = jsonRequest(http.MethodDelete, "/v1/leads/"+id, nil, "")
		case 4:
			req = jsonRequest(http.MethodGet, "/v1/content/"+id, nil, "")
		case 5:
			req = jsonRequest(http.MethodGet, "/v1/exports/"+id, nil, "")
		case 6:
			req = jsonRequest(http.MethodGet, "/v1/backups", nil, "")
		case 7:
			req = jsonRequest(http.MethodPost, "/v1/backups", []byte(query), "application/json")
		}
		req.URL.RawPath = strings.Replace(req.URL.Path, id, pid, 1)
		req.URL.RawQuery = query
		rec := fs.serve(t, req)
		if which%8 == 1 && rec.Code == http.StatusOK && !challengePattern.Match(rec.Body.Bytes()) {
			t.Fatalf("echoed a challenge outside the pattern: %q", rec.Body.Bytes())
		}
	})
}
