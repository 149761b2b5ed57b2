package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cepcomunicacion/cepjobs/api"
	"github.com/cepcomunicacion/cepjobs/internal/backup"
	"github.com/cepcomunicacion/cepjobs/internal/backup/backuptest"
	"github.com/cepcomunicacion/cepjobs/internal/hcaptcha"
	"github.com/cepcomunicacion/cepjobs/internal/outbox"
	"github.com/cepcomunicacion/cepjobs/internal/redisconn"
	"github.com/cepcomunicacion/cepjobs/internal/testenv"
	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

const (
	writer       = "writer-token-0123456789"
	reader       = "reader-token-0123456789"
	contentToken = "content-token-0123456789"
	dashUser     = "ops"
	dashPass     = "correct horse battery staple"
)

var (
	dbURL    string
	dashHash string
)

func TestMain(m *testing.M) {
	dashHash, _ = api.HashPassword(dashPass)
	os.Exit(testenv.RunWithDatabase(m, "api", &dbURL, migrate))
}

func migrate(ctx context.Context, url string) error {
	s, err := store.Open(ctx, store.Config{URL: url})
	if err != nil {
		return err
	}
	defer s.Close()
	_, err = s.Migrate(ctx)
	return err
}

type bundle struct {
	srv       *httptest.Server
	store     *store.Store
	inspector *asynq.Inspector
	logs      *bytes.Buffer
}

type option func(*api.Config, *api.Deps)

func setup(t testing.TB, opts ...option) *bundle {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	redisURL := testenv.RedisURL(t, testenv.RedisDBAPI)
	connOpt, err := redisconn.Parse(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rc := redisconn.Client(connOpt)
	t.Cleanup(func() { rc.Close() })
	client := asynq.NewClientFromRedisClient(rc)
	inspector := asynq.NewInspectorFromRedisClient(rc)

	logs := &bytes.Buffer{}
	log := slog.New(slog.NewJSONHandler(&lockedWriter{w: logs}, nil))
	reg := prometheus.NewRegistry()
	cfg := api.Config{
		Addr: ":0", RateLimit: 1000, RateBurst: 1000, RequestTimeout: 5 * time.Second, ShutdownTimeout: time.Second,
		Tokens: api.Tokens{
			{Name: "cms", Secret: writer, Scopes: []string{api.ScopeLeadsWrite, api.ScopeLeadsRead}},
			{Name: "reporting", Secret: reader, Scopes: []string{api.ScopeLeadsRead}},
			{Name: "content", Secret: contentToken, Scopes: []string{api.ScopeContentWrite, api.ScopeContentRead}},
		},
		Dashboard: api.DashboardConfig{User: dashUser, PasswordHash: dashHash},
	}
	deps := api.Deps{
		Store: st, Dispatch: outbox.NewDispatcher(st, client, log, outbox.NewMetrics(reg), nil),
		Redis: pingFunc(func(ctx context.Context) error { return redisconn.Ping(ctx, rc, time.Second) }), RedisConnOpt: connOpt,
		Logger: log, Registry: reg,
	}
	for _, o := range opts {
		o(&cfg, &deps)
	}
	deps.Config = cfg
	s, err := api.NewServer(deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return &bundle{srv: srv, store: st, inspector: inspector, logs: logs}
}

type pingFunc func(context.Context) error

func (f pingFunc) Ping(ctx context.Context) error { return f(ctx) }

type lockedWriter struct {
	mu atomic.Int32
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	for !l.mu.CompareAndSwap(0, 1) {
	}
	defer l.mu.Store(0)
	return l.w.Write(b)
}

var seq atomic.Int64

// validLead is the README's example with a unique email.
func validLead() map[string]any {
	return map[string]any{
		"external_id": "cms-123", "first_name": "Ana", "last_name": "García",
		"email": fmt.Sprintf("ana.%d.%d@example.com", time.Now().UnixNano(), seq.Add(1)),
		"phone": "+34600111222", "course": "tecnico-marketing-digital", "campaign": "meta-otono-2026",
		"site": "sevilla", "source": "web-form", "message": "Quiero información",
		"utm":           map[string]any{"source": "facebook", "medium": "cpc", "campaign": "otono"},
		"consent":       map[string]any{"privacy": true, "marketing": false, "text_version": "2026-01", "accepted_at": "2026-11-27T10:00:00Z"},
		"client":        map[string]any{"ip": "203.0.113.7", "user_agent": "Mozilla/5.0"},
		"captcha_token": "10000000-aaaa-bbbb-cccc-000000000001",
	}
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (b *bundle) do(t *testing.T, method, path, token string, body any, hdr ...string) response {
	t.Helper()
	var rd io.Reader
	switch v := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(v)
	default:
		j, _ := json.Marshal(v)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, b.srv.URL+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func fieldsOf(r response) []string {
	var out []string
	errs, _ := r.body["errors"].([]any)
	for _, e := range errs {
		out = append(out, e.(map[string]any)["field"].(string))
	}
	return out
}

func TestCreateLeadQueuesTaskWithIDsOnly(t *testing.T) {
	b := setup(t)
	lead := validLead()
	r := b.do(t, "POST", "/v1/leads", writer, lead)
	if r.status != http.StatusAccepted {
		t.Fatalf("status: got %d, want 202: %s", r.status, r.raw)
	}
	id, _ := r.body["id"].(string)
	if r.body["status"] != "queued" || r.body["duplicate"] != false || len(id) != 36 {
		t.Errorf("body: got %s", r.raw)
	}
	if got, want := r.header.Get("Location"), "/v1/leads/"+id; got != want {
		t.Errorf("Location: got %q, want %q", got, want)
	}

	pending, err := b.inspector.ListPendingTasks(tasks.QueueCritical)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 1 {
		t.Fatalf("pending lead:process tasks: got %d, want 1", len(pending))
	}
	task := pending[0]
	if task.Type != tasks.TypeLeadProcess || string(task.Payload) != `{"lead_id":"`+id+`"}` {
		t.Errorf("task: got %s %s, want lead:process with the lead id only", task.Type, task.Payload)
	}
	for _, pii := range []string{lead["email"].(string), "Ana", "+34600111222", "203.0.113.7"} {
		if strings.Contains(string(task.Payload), pii) || strings.Contains(b.logs.String(), pii) {
			t.Errorf("personal data %q reached the task payload or the log", pii)
		}
	}
	// Sent at once, the lead's task left nothing in the outbox.
	if db, err := pgx.Connect(context.Background(), dbURL); err != nil {
		t.Error(err)
	} else {
		var n int
		if err := db.QueryRow(context.Background(), `select count(*) from cepjobs.outbox where id = $1 or position($2 in convert_from(payload, 'UTF8')) > 0`, id, id).Scan(&n); err != nil || n != 0 {
			t.Errorf("outbox rows for a lead sent at once: %d (%v), want none", n, err)
		}
		_ = db.Close(context.Background())
	}

	g := b.do(t, "GET", "/v1/leads/"+id, reader, nil)
	if g.status != http.StatusOK || g.body["status"] != "queued" || g.body["course"] != "tecnico-marketing-digital" {
		t.Errorf("GET lead: got %d %s", g.status, g.raw)
	}
	if d, ok := g.body["deliveries"].([]any); !ok || len(d) != 0 {
		t.Errorf("deliveries: got %v, want an empty list", g.body["deliveries"])
	}
}

func TestCreateLeadRejectsBadInput(t *testing.T) {
	b := setup(t)
	with := func(edit func(map[string]any)) map[string]any { l := validLead(); edit(l); return l }
	for _, tc := range []struct {
		name        string
		body        any
		contentType string
		status      int
		fields      []string
	}{
		{name: "malformed json", body: `{"first_name": "Ana"`, status: 400},
		{name: "not an object", body: `[1,2]`, status: 400},
		{name: "trailing data", body: `{} {}`, status: 400},
		{name: "empty body", body: ``, status: 400},
		{name: "form content type", body: `first_name=Ana`, contentType: "application/x-www-form-urlencoded", status: 415},
		{name: "too large", body: `{"message":"` + strings.Repeat("a", api.MaxBodyBytes) + `"}`, status: 413},
		{name: "everything missing", body: `{}`, status: 422, fields: []string{"first_name", "email", "course", "source", "consent"}},
		{name: "every kind of bad field", body: with(func(l map[string]any) {
			l["first_name"] = 5
			l["emial"] = "typo"
			l["email"] = "Ana <ana@example.com>"
			l["phone"] = "600 111 222"
			l["course"] = "técnico marketing"
			l["utm"] = map[string]any{"source": "fb", "nope": 1}
			l["consent"] = map[string]any{"privacy": false, "accepted_at": "yesterday"}
			l["client"] = map[string]any{"ip": "300.1.1.1"}
		}), status: 422, fields: []string{"emial", "first_name", "utm.nope", "email", "phone", "course",
			"consent.privacy", "consent.text_version", "consent.accepted_at", "client.ip"}},
		{name: "privacy as a string", body: with(func(l map[string]any) {
			l["consent"] = map[string]any{"privacy": "yes", "text_version": "2026-01"}
		}), status: 422, fields: []string{"consent.privacy"}},
		{name: "control characters", body: with(func(l map[string]any) { l["first_name"] = "Ana\x00" }), status: 422, fields: []string{"first_name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rd string
			if s, ok := tc.body.(string); ok {
				rd = s
			} else {
				j, _ := json.Marshal(tc.body)
				rd = string(j)
			}
			req, _ := http.NewRequest("POST", b.srv.URL+"/v1/leads", strings.NewReader(rd))
			ct := tc.contentType
			if ct == "" {
				ct = "application/json"
			}
			req.Header.Set("Content-Type", ct)
			req.Header.Set("Authorization", "Bearer "+writer)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			var body map[string]any
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Fatalf("body is not JSON: %q", raw)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status: got %d, want %d: %s", resp.StatusCode, tc.status, raw)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("content type: got %q, want application/problem+json", ct)
			}
			if body["status"] != float64(tc.status) || body["title"] == "" {
				t.Errorf("problem body: got %s", raw)
			}
			if tc.fields != nil {
				if diff := cmp.Diff(tc.fields, fieldsOf(response{body: body})); diff != "" {
					t.Errorf("field errors (-want +got):\n%s", diff)
				}
			}
		})
	}
	// Nothing of the above was stored or queued.
	if n, _ := b.inspector.GetQueueInfo(tasks.QueueCritical); n != nil && n.Size != 0 {
		t.Errorf("queued tasks after bad input only: got %d, want 0", n.Size)
	}
}

func TestDuplicateLeadWithin24Hours(t *testing.T) {
	b := setup(t)
	lead := validLead()
	first := b.do(t, "POST", "/v1/leads", writer, lead)
	lead["email"] = strings.ToUpper(lead["email"].(string))
	lead["first_name"] = "Ana María"
	second := b.do(t, "POST", "/v1/leads", writer, lead)
	if second.status != http.StatusOK || second.body["duplicate"] != true || second.body["id"] != first.body["id"] {
		t.Errorf("duplicate: got %d %s, want 200 with id %v and duplicate true", second.status, second.raw, first.body["id"])
	}
	q, err := b.inspector.GetQueueInfo(tasks.QueueCritical)
	if err != nil {
		t.Fatal(err)
	}
	if q.Pending != 1 {
		t.Errorf("pending tasks: got %d, want 1 (no task for the duplicate)", q.Pending)
	}
}

func TestIdempotencyKey(t *testing.T) {
	b := setup(t)
	lead := validLead()
	first := b.do(t, "POST", "/v1/leads", writer, lead, "Idempotency-Key", "form-42")
	again := b.do(t, "POST", "/v1/leads", writer, lead, "Idempotency-Key", "form-42")
	if again.status != first.status || again.raw != first.raw || again.header.Get("Idempotency-Replayed") != "true" {
		t.Errorf("replay: got %d %s, want %d %s", again.status, again.raw, first.status, first.raw)
	}
	lead["first_name"] = "Otra"
	conflict := b.do(t, "POST", "/v1/leads", writer, lead, "Idempotency-Key", "form-42")
	if conflict.status != http.StatusConflict {
		t.Errorf("same key, other body: got %d %s, want 409", conflict.status, conflict.raw)
	}
	bad := b.do(t, "POST", "/v1/leads", writer, validLead(), "Idempotency-Key", "has space")
	if bad.status != http.StatusUnprocessableEntity {
		t.Errorf("bad key: got %d, want 422", bad.status)
	}
	q, _ := b.inspector.GetQueueInfo(tasks.QueueCritical)
	if q == nil || q.Pending != 1 {
		t.Errorf("pending tasks: got %+v, want 1", q)
	}
}

func TestAuth(t *testing.T) {
	b := setup(t, func(c *api.Config, _ *api.Deps) { c.RateLimit, c.RateBurst = 0.001, 1 })
	for _, tc := range []struct {
		name, method, path, token string
		want                      int
	}{
		{"no token", "POST", "/v1/leads", "", 401},
		{"wrong token", "POST", "/v1/leads", "writer-token-012345678X", 401},
		{"missing scope", "POST", "/v1/leads", reader, 403},
		{"unknown lead", "GET", "/v1/leads/0b7f4a4e-8f0e-4c1b-9d7a-3c2f1e0d9b8a", reader, 404},
		{"rate limited", "GET", "/v1/leads/x", reader, 429},
	} {
		r := b.do(t, tc.method, tc.path, tc.token, map[string]any{})
		if r.status != tc.want {
			t.Errorf("%s: got %d, want %d: %s", tc.name, r.status, tc.want, r.raw)
		}
		switch tc.want {
		case 401:
			if r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s: no WWW-Authenticate header", tc.name)
			}
		case 429:
			if r.header.Get("Retry-After") == "" {
				t.Errorf("%s: no Retry-After header", tc.name)
			}
		}
	}
	// Another token has its own bucket.
	if r := b.do(t, "POST", "/v1/leads", writer, validLead()); r.status != 202 {
		t.Errorf("other token while one is limited: got %d", r.status)
	}
}

func TestCaptcha(t *testing.T) {
	siteverify := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		ok := r.PostForm.Get("secret") == "0xsecret" && r.PostForm.Get("response") == "good-token" && r.PostForm.Get("remoteip") == "203.0.113.7"
		if ok {
			fmt.Fprint(w, `{"success":true}`)
			return
		}
		fmt.Fprint(w, `{"success":false,"error-codes":["invalid-input-response"]}`)
	}))
	defer siteverify.Close()
	b := setup(t, func(_ *api.Config, d *api.Deps) {
		d.Captcha = hcaptcha.New(hcaptcha.Config{Secret: "0xsecret", VerifyURL: siteverify.URL}, siteverify.Client())
	})
	lead := validLead()
	lead["captcha_token"] = "forged"
	if r := b.do(t, "POST", "/v1/leads", writer, lead); r.status != 422 || !cmp.Equal(fieldsOf(r), []string{"captcha_token"}) {
		t.Errorf("bad captcha: got %d %s, want 422 on captcha_token", r.status, r.raw)
	}
	lead["captcha_token"] = "good-token"
	if r := b.do(t, "POST", "/v1/leads", writer, lead); r.status != 202 {
		t.Errorf("good captcha: got %d %s, want 202", r.status, r.raw)
	}
	siteverify.Close()
	lead = validLead()
	lead["captcha_token"] = "good-token"
	if r := b.do(t, "POST", "/v1/leads", writer, lead); r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Errorf("hCaptcha down: got %d %s, want 503 with Retry-After", r.status, r.raw)
	}
}

func TestUnknownRoutesAnswerProblems(t *testing.T) {
	b := setup(t)
	if r := b.do(t, "GET", "/v1/nope", writer, nil); r.status != 404 || r.body["status"] != float64(404) {
		t.Errorf("unknown path: got %d %s", r.status, r.raw)
	}
	if r := b.do(t, "DELETE", "/v1/leads", writer, nil); r.status != 405 || r.header.Get("Allow") != "POST" {
		t.Errorf("wrong method: got %d allow %q", r.status, r.header.Get("Allow"))
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	b := setup(t)
	if r := b.do(t, "GET", "/healthz", "", nil); r.status != 200 {
		t.Errorf("healthz: got %d", r.status)
	}
	if r := b.do(t, "GET", "/readyz", "", nil); r.status != 200 || r.body["status"] != "ready" {
		t.Errorf("readyz: got %d %s", r.status, r.raw)
	}
	b.do(t, "POST", "/v1/leads", writer, validLead())
	r := b.do(t, "GET", "/metrics", "", nil)
	for _, want := range []string{
		`cepjobs_http_requests_total{code="202",route="POST /v1/leads"} 1`,
		`cepjobs_http_request_duration_seconds_bucket{route="POST /v1/leads"`,
		`cepjobs_outbox_dispatched_total{path="inline"} 1`,
	} {
		if !strings.Contains(r.raw, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	down := setup(t, func(_ *api.Config, d *api.Deps) {
		d.Redis = pingFunc(func(context.Context) error { return fmt.Errorf("connection refused") })
	})
	if r := down.do(t, "GET", "/readyz", "", nil); r.status != 503 || r.raw == "" {
		t.Errorf("readyz with redis down: got %d %s, want 503", r.status, r.raw)
	}
}

func TestDashboard(t *testing.T) {
	b := setup(t)
	get := func(path, user, pass string) *http.Response {
		req, _ := http.NewRequest("GET", b.srv.URL+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	if r := get("/monitoring/", "", ""); r.StatusCode != 401 || r.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("no credentials: got %d", r.StatusCode)
	}
	if r := get("/monitoring/", dashUser, "wrong"); r.StatusCode != 401 {
		t.Errorf("wrong password: got %d", r.StatusCode)
	}
	if r := get("/monitoring/", "root", dashPass); r.StatusCode != 401 {
		t.Errorf("wrong user: got %d", r.StatusCode)
	}
	if r := get("/monitoring/", dashUser, dashPass); r.StatusCode != 200 {
		t.Errorf("with credentials: got %d", r.StatusCode)
	}
	b.do(t, "POST", "/v1/leads", writer, validLead())
	r := get("/monitoring/api/queues", dashUser, dashPass)
	var body struct {
		Queues []struct {
			Queue string `json:"queue"`
			Size  int    `json:"size"`
		} `json:"queues"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || r.StatusCode != 200 {
		t.Fatalf("api/queues: got %d, %v", r.StatusCode, err)
	}
	if len(body.Queues) == 0 || body.Queues[0].Queue != "critical" || body.Queues[0].Size != 1 {
		t.Errorf("api/queues: got %+v, want the critical queue with 1 task", body.Queues)
	}

	off := setup(t, func(c *api.Config, _ *api.Deps) { c.Dashboard = api.DashboardConfig{} })
	if r := off.do(t, "GET", "/monitoring/", "", nil); r.status != 404 {
		t.Errorf("dashboard without credentials configured: got %d, want 404 (not mounted)", r.status)
	}
	if !strings.Contains(off.logs.String(), "dashboard not mounted") {
		t.Error("log does not say why the dashboard is not mounted")
	}
}

// panicStore makes every write panic: the server must answer 500 problem
// and keep serving.
type panicStore struct{ *store.Store }

func (panicStore) LookupIdempotency(context.Context, *store.Idempotency) (*store.Response, error) {
	panic("boom")
}

func TestPanicBecomesProblem(t *testing.T) {
	b := setup(t, func(_ *api.Config, d *api.Deps) { d.Store = panicStore{d.Store.(*store.Store)} })
	r := b.do(t, "POST", "/v1/leads", writer, validLead(), "Idempotency-Key", "k")
	if r.status != 500 || r.body["status"] != float64(500) {
		t.Errorf("panic: got %d %s, want 500 problem", r.status, r.raw)
	}
	if r := b.do(t, "GET", "/healthz", "", nil); r.status != 200 {
		t.Errorf("after a panic: got %d", r.status)
	}
}

func TestBackupsEndpoints(t *testing.T) {
	s3 := backuptest.StartS3(t)
	bk, err := backup.New(s3.Config(t), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	db, _ := backup.DatabaseName(dbURL)
	b := setup(t, func(c *api.Config, d *api.Deps) {
		c.Tokens = append(c.Tokens, api.Token{Name: "ops", Secret: "ops-token-0123456789", Scopes: []string{api.ScopeBackupsWrite, api.ScopeBackupsRead}})
		d.Backups, d.BackupDatabase = bk, db
	})
	if r := b.do(t, "GET", "/v1/backups", "ops-token-0123456789", nil); r.status != 200 || !strings.Contains(r.raw, `"backups":[]`) {
		t.Errorf("list with no backups: got %d %s", r.status, r.raw)
	}
	if r := b.do(t, "POST", "/v1/backups", writer, nil); r.status != 403 {
		t.Errorf("POST without backups:write: got %d", r.status)
	}
	r := b.do(t, "POST", "/v1/backups", "ops-token-0123456789", nil)
	if r.status != 202 || r.body["status"] != "queued" {
		t.Fatalf("POST /v1/backups: got %d %s", r.status, r.raw)
	}
	info, err := b.inspector.GetTaskInfo(tasks.QueueBackup, r.body["task_id"].(string))
	if err != nil || info.Type != tasks.TypeBackupDatabase {
		t.Errorf("queued backup task: got %+v, %v", info, err)
	}

	res, err := bk.Run(context.Background(), dbURL, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	r = b.do(t, "GET", "/v1/backups", "ops-token-0123456789", nil)
	if r.status != 200 || !strings.Contains(r.raw, res.Key) || !strings.Contains(r.raw, res.SHA256) {
		t.Errorf("list: got %d %s, want %s", r.status, r.raw, res.Key)
	}
}

func TestContentEndpoints(t *testing.T) {
	b := setup(t)
	bad := b.do(t, "POST", "/v1/content", contentToken, map[string]any{
		"kind": "course_description", "language": "es_ES!", "input": map[string]any{"title": "", "modality": "a distancia", "extra": 1},
		"callback_url": "ftp://cms.example/x",
	})
	if bad.status != 422 {
		t.Fatalf("bad content request: got %d %s", bad.status, bad.raw)
	}
	fields := strings.Join(fieldsOf(bad), ",")
	for _, f := range []string{"language", "input.title", "input.modality", "input.duration", "input.audience", "input.extra", "callback_url"} {
		if !strings.Contains(fields, f) {
			t.Errorf("422 lacks field %s (got %s)", f, fields)
		}
	}
	if r := b.do(t, "POST", "/v1/content", contentToken, map[string]any{"kind": "poem", "input": map[string]any{}}); r.status != 422 || !strings.Contains(strings.Join(fieldsOf(r), ","), "kind") {
		t.Errorf("unknown kind: got %d %s", r.status, r.raw)
	}
	if r := b.do(t, "POST", "/v1/content", writer, map[string]any{}); r.status != 403 {
		t.Errorf("without content:write: got %d", r.status)
	}

	ok := b.do(t, "POST", "/v1/content", contentToken, map[string]any{
		"kind": "course_description", "language": "es-ES", "callback_url": "https://cms.example/api/content-callback",
		"input": map[string]any{"title": "Técnico en Marketing Digital", "modality": "online", "duration": "600 horas", "audience": "Personas que quieren trabajar en marketing"},
	})
	if ok.status != 202 || ok.body["status"] != "queued" {
		t.Fatalf("valid content request: got %d %s", ok.status, ok.raw)
	}
	id := ok.body["id"].(string)
	pending, _ := b.inspector.ListPendingTasks(tasks.QueueLLM)
	if len(pending) != 1 || pending[0].Type != tasks.TypeContentGenerate || string(pending[0].Payload) != `{"job_id":"`+id+`"}` {
		t.Errorf("queued task: got %+v", pending)
	}
	g := b.do(t, "GET", "/v1/content/"+id, contentToken, nil)
	if g.status != 200 || g.body["status"] != "queued" || g.body["kind"] != "course_description" {
		t.Errorf("GET content: got %d %s", g.status, g.raw)
	}
	if r := b.do(t, "GET", "/v1/content/0b7f4a4e-8f0e-4c1b-9d7a-3c2f1e0d9b8a", contentToken, nil); r.status != 404 {
		t.Errorf("unknown job: got %d", r.status)
	}
}

func TestEraseAndStatsEndpoints(t *testing.T) {
	b := setup(t, func(c *api.Config, _ *api.Deps) {
		c.Tokens = append(c.Tokens, api.Token{Name: "dpo", Secret: "dpo-token-0123456789", Scopes: []string{api.ScopeLeadsErase, api.ScopeStatsRead}})
	})
	r := b.do(t, "POST", "/v1/leads", writer, validLead())
	id := r.body["id"].(string)
	if r := b.do(t, "DELETE", "/v1/leads/"+id, writer, nil); r.status != 403 {
		t.Errorf("erase without leads:erase: got %d", r.status)
	}
	e := b.do(t, "DELETE", "/v1/leads/"+id, "dpo-token-0123456789", nil)
	if e.status != 202 || e.body["status"] != "erasing" {
		t.Fatalf("erase: got %d %s", e.status, e.raw)
	}
	pending, _ := b.inspector.ListPendingTasks(tasks.QueueDefault)
	if len(pending) != 1 || pending[0].Type != tasks.TypeLeadErase {
		t.Errorf("queued erase task: got %+v", pending)
	}
	if again := b.do(t, "DELETE", "/v1/leads/"+id, "dpo-token-0123456789", nil); again.status != 202 {
		t.Errorf("second erase request: got %d", again.status)
	}
	if p, _ := b.inspector.ListPendingTasks(tasks.QueueDefault); len(p) != 1 {
		t.Errorf("a second request queued another task: %d", len(p))
	}
	if r := b.do(t, "DELETE", "/v1/leads/0b7f4a4e-8f0e-4c1b-9d7a-3c2f1e0d9b8a", "dpo-token-0123456789", nil); r.status != 404 {
		t.Errorf("erase unknown lead: got %d", r.status)
	}

	bad := b.do(t, "GET", "/v1/stats?from=2026-13-01&by=course,planet", "dpo-token-0123456789", nil)
	if bad.status != 422 || strings.Join(fieldsOf(bad), ",") != "from,to,by" {
		t.Errorf("bad stats query: got %d %v", bad.status, fieldsOf(bad))
	}
	ok := b.do(t, "GET", "/v1/stats?from=2026-11-01&to=2026-11-30&by=course", "dpo-token-0123456789", nil)
	if ok.status != 200 || ok.body["rows"] == nil {
		t.Errorf("stats: got %d %s", ok.status, ok.raw)
	}
}

// The request log line names the request id (the caller's when it is sane,
// echoed back; a fresh one otherwise), the route, the status and the token;
// handlers see the same id and token.
func TestRequestIDAndLogLine(t *testing.T) {
	b := setup(t)
	db, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	long := strings.Repeat("a", 64)
	for _, c := range []struct {
		sent string
		echo bool
	}{
		{"cms-req.42_A", true},
		{long, true},
		{long + "a", false},
		{"has space", false},
		{"semi;colon", false},
		{"", false},
	} {
		lead := validLead()
		lead["email"] = fmt.Sprintf("rid.%d@example.com", time.Now().UnixNano())
		r := b.do(t, "POST", "/v1/leads", writer, lead, "X-Request-Id", c.sent)
		if r.status != http.StatusAccepted {
			t.Fatalf("%q: status %d: %s", c.sent, r.status, r.raw)
		}
		got := r.header.Get("X-Request-Id")
		if c.echo && got != c.sent {
			t.Errorf("X-Request-Id %q: answered %q, want it echoed", c.sent, got)
		}
		if !c.echo && (got == c.sent || len(got) != 24 || strings.Trim(got, "0123456789abcdef") != "") {
			t.Errorf("X-Request-Id %q: answered %q, want a fresh 24-hex-digit id", c.sent, got)
		}
		want := fmt.Sprintf(`"msg":"request","request_id":%q,"route":"POST /v1/leads","status":202,`, got)
		line := ""
		for l := range strings.SplitSeq(b.logs.String(), "\n") {
			if strings.Contains(l, want) {
				line = l
			}
		}
		if line == "" || !strings.Contains(line, `"token":"cms"`) {
			t.Errorf("X-Request-Id %q: no request log line with %s and the token name; log:\n%s", c.sent, want, b.logs.String())
		}
		var by string
		if err := db.QueryRow(context.Background(), `select submitted_by from cepjobs.leads where id = $1`, r.body["id"]).Scan(&by); err != nil || by != "cms" {
			t.Errorf("submitted_by: got %q (%v), want the token name cms", by, err)
		}
	}
}
