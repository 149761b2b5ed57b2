package handlers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cepcomunicacion/cepjobs/handlers"
	"github.com/cepcomunicacion/cepjobs/internal/meta"
	"github.com/cepcomunicacion/cepjobs/internal/outbox"
	"github.com/cepcomunicacion/cepjobs/internal/redisconn"
	"github.com/cepcomunicacion/cepjobs/internal/testenv"
	"github.com/cepcomunicacion/cepjobs/internal/vendor"
	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

const (
	metaPageToken = "EAAGpage-token-handlers-0123"
	metaAdsToken  = "EAAGads-token-handlers-0123"
	metaAccount   = "act_5550001"
	metaForm      = "900100200"
)

// graphFake stands in for the Graph API: GET /v26.0/{leadgen_id} answers
// the lead stored under that id (checking the fields and the Page token the
// way the lead retrieval guide documents them), GET
// /v26.0/{account}/insights the page stored under the after cursor.
type graphFake struct {
	t     *testing.T
	url   string
	mu    sync.Mutex
	leads map[string]string // leadgen id → JSON answer
	pages map[string]string // after cursor → JSON answer
	fail  []string          // error bodies answered (400) before the next calls
	calls int
}

func newGraphFake(t *testing.T) *graphFake {
	t.Helper()
	g := &graphFake{t: t, leads: map[string]string{}, pages: map[string]string{}}
	srv := httptest.NewServer(http.HandlerFunc(g.serve))
	t.Cleanup(srv.Close)
	g.url = srv.URL
	return g
}

func (g *graphFake) serve(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls++
	w.Header().Set("Content-Type", "application/json")
	if r.Method != http.MethodGet || r.URL.Query().Has("access_token") {
		g.t.Errorf("%s %s: want a GET with the token in the Authorization header only", r.Method, r.URL)
	}
	if len(g.fail) > 0 {
		body := g.fail[0]
		g.fail = g.fail[1:]
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, body)
		return
	}
	id, edge, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v26.0/"), "/")
	switch edge {
	case "":
		if got := r.Header.Get("Authorization"); got != "Bearer "+metaPageToken {
			g.t.Errorf("lead Authorization: got %q, want the page token", got)
		}
		if got := r.URL.Query().Get("fields"); got != "created_time,field_data,custom_disclaimer_responses,form_id,ad_id,campaign_id" {
			g.t.Errorf("lead fields: got %q", got)
		}
		lead, ok := g.leads[id]
		if !ok {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":{"message":"Unsupported get request","type":"GraphMethodException","code":100,"error_subcode":33}}`)
			return
		}
		_, _ = io.WriteString(w, lead)
	case "insights":
		if got := r.Header.Get("Authorization"); got != "Bearer "+metaAdsToken || id != metaAccount {
			g.t.Errorf("insights: got account %s, Authorization %q", id, got)
		}
		var tr map[string]string
		_ = json.Unmarshal([]byte(r.URL.Query().Get("time_range")), &tr)
		if tr["since"] != "2026-11-26" || tr["until"] != "2026-11-28" {
			g.t.Errorf("time_range: got %v, want the 3 days up to the task's day", tr)
		}
		page, ok := g.pages[r.URL.Query().Get("after")]
		if !ok {
			g.t.Errorf("insights: unknown cursor %q", r.URL.Query().Get("after"))
		}
		_, _ = io.WriteString(w, page)
	default:
		g.t.Errorf("unexpected path %s", r.URL.Path)
		w.WriteHeader(http.StatusNotFound)
	}
}

func (g *graphFake) setLead(id, body string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.leads[id] = body
}

func (g *graphFake) failNext(bodies ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.fail = append(g.fail, bodies...)
}

// leadJSON is a lead as Meta answers GET /{leadgen_id}.
func leadJSON(id, email string, fields map[string]string, marketing string) string {
	fd := []map[string]any{{"name": "email", "values": []string{email}}}
	for k, v := range fields {
		fd = append(fd, map[string]any{"name": k, "values": []string{v}})
	}
	ans := map[string]any{
		"id": id, "created_time": "2026-11-27T18:30:05+0000", "form_id": metaForm, "ad_id": "120300001", "campaign_id": "120200001",
		"field_data": fd,
	}
	if marketing != "" {
		ans["custom_disclaimer_responses"] = []map[string]any{{"checkbox_key": "marketing", "is_checked": marketing}}
	}
	b, _ := json.Marshal(ans)
	return string(b)
}

type metaBundle struct {
	graph     *graphFake
	store     *store.Store
	handler   *handlers.MetaLeadgen
	inspector *asynq.Inspector
	logs      *bytes.Buffer
	conn      *pgx.Conn
}

func metaSetup(t *testing.T, forms map[string]string) *metaBundle {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	opt, _ := redisconn.Parse(testenv.RedisURL(t, testenv.RedisDBMeta))
	rc := redisconn.Client(opt)
	t.Cleanup(func() { rc.Close() })
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	g := newGraphFake(t)
	client, err := meta.NewLeadAdsClient(meta.LeadAdsParams{
		Config:  meta.LeadAdsConfig{PageAccessToken: metaPageToken, DefaultCountry: "34", MarketingCheckbox: "marketing"},
		BaseURL: g.url, APIVersion: "v26.0", HTTPClient: vendor.NewHTTPClient(5 * time.Second),
	})
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	log := slog.New(slog.NewTextHandler(&syncWriter{w: logs}, nil))
	b := &metaBundle{graph: g, store: st, inspector: asynq.NewInspectorFromRedisClient(rc), logs: logs, conn: conn}
	b.handler = handlers.NewMetaLeadgen(handlers.MetaLeadgenDeps{
		Client: client, Store: st,
		Dispatch: outbox.NewDispatcher(st, asynq.NewClientFromRedisClient(rc), log, outbox.NewMetrics(prometheus.NewRegistry()), nil),
		Forms:    forms, DefaultCountry: "34", MarketingCheckbox: "marketing", Logger: log,
	})
	return b
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

func (b *metaBundle) run(t *testing.T, leadgenID string) error {
	t.Helper()
	task, err := tasks.NewMetaLeadgen(tasks.MetaLeadgen{LeadgenID: leadgenID, PageID: "100200300", FormID: metaForm}, store.OutboxKeyID(tasks.TypeMetaLeadgen, "meta:leadgen:"+leadgenID))
	if err != nil {
		t.Fatal(err)
	}
	return b.handler.ProcessTask(context.Background(), task)
}

// leadsOf lists the ids of leads with this external id.
func (b *metaBundle) leadsOf(t *testing.T, leadgenID string) []string {
	t.Helper()
	rows, err := b.conn.Query(context.Background(), `select id::text from cepjobs.leads where external_id = $1`, "meta:"+leadgenID)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// processTasks lists the lead ids of the lead:process tasks in Redis.
func (b *metaBundle) processTasks(t *testing.T) []string {
	t.Helper()
	infos, err := b.inspector.ListPendingTasks(tasks.QueueCritical)
	if err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
		t.Fatal(err)
	}
	var out []string
	for _, i := range infos {
		if i.Type == tasks.TypeLeadProcess {
			var p tasks.LeadProcess
			_ = json.Unmarshal(i.Payload, &p)
			out = append(out, p.LeadID)
		}
	}
	return out
}

var metaSeq atomic.Int64

func nextLeadgenID() string {
	return fmt.Sprintf("77%09d%03d", time.Now().UnixNano()%1e9, metaSeq.Add(1)%1000)
}

// These run one after another: they share Redis DB RedisDBMeta, which
// setup flushes.
func TestMetaLeadgenStoresTheLeadOnce(t *testing.T) {
	b := metaSetup(t, map[string]string{metaForm: "tecnico-marketing-digital"})
	ctx := context.Background()
	if _, err := b.conn.Exec(ctx, `
		insert into cepjobs.campaigns (id, name, template, audience, meta_campaign_id, status, launched_by, created_at, updated_at)
		values ('otono-2026', 'Otoño', 't', '{}', '120200001', 'completed', 'test', now(), now())
		on conflict (id) do nothing`); err != nil {
		t.Fatal(err)
	}
	id := nextLeadgenID()
	email := "ana." + id + "@example.com"
	b.graph.setLead(id, leadJSON(id, email, map[string]string{
		"full_name": "Ana María García López", "phone_number": "600 11 12 22", "sede": "San Sebastián",
		"cuando_quieres_empezar": "En enero",
	}, "1"))

	if err := b.run(t, id); err != nil {
		t.Fatal(err)
	}
	ids := b.leadsOf(t, id)
	if len(ids) != 1 {
		t.Fatalf("leads: got %d, want 1", len(ids))
	}
	got, err := b.store.LeadDetail(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	accepted := time.Date(2026, 11, 27, 18, 30, 5, 0, time.UTC)
	want := store.LeadDetail{
		ID: ids[0], ExternalID: "meta:" + id, FirstName: "Ana", LastName: "María García López", Email: email, Phone: "+34600111222",
		Course: "tecnico-marketing-digital", Campaign: "otono-2026", Site: "san-sebastian", Source: handlers.SourceMetaLeadAd,
		Message:        "cuando_quieres_empezar: En enero",
		UTM:            map[string]string{"source": "facebook", "medium": "lead-ad", "campaign": "120200001", "content": "120300001"},
		ConsentPrivacy: true, ConsentMarketing: true, ConsentTextVersion: "meta-form:" + metaForm, ConsentAcceptedAt: &accepted,
		Status: store.LeadQueued,
	}
	if diff := cmp.Diff(want, got, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".ReceivedAt" }, cmp.Ignore())); diff != "" {
		t.Errorf("lead (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{ids[0]}, b.processTasks(t)); diff != "" {
		t.Errorf("lead:process tasks (-want +got):\n%s", diff)
	}

	// The same task again (a retry after the commit, a redelivery once the
	// outbox row is gone): no second lead, no second lead:process.
	if err := b.run(t, id); err != nil {
		t.Fatal(err)
	}
	if n := len(b.leadsOf(t, id)); n != 1 {
		t.Errorf("after a second run: got %d leads, want 1", n)
	}
	if n := len(b.processTasks(t)); n != 1 {
		t.Errorf("after a second run: got %d lead:process tasks, want 1", n)
	}

	// Another lead form submission of the same person and course within
	// the window is a duplicate, as on POST /v1/leads.
	other := nextLeadgenID()
	b.graph.setLead(other, leadJSON(other, strings.ToUpper(email), map[string]string{"full_name": "Ana García"}, ""))
	if err := b.run(t, other); err != nil {
		t.Fatal(err)
	}
	if n := len(b.leadsOf(t, other)); n != 0 {
		t.Errorf("duplicate submission: got %d new leads, want 0", n)
	}
	for _, s := range []string{email, "García", "600 11 12 22", "+34600111222", "enero", "Sebastián"} {
		if strings.Contains(b.logs.String(), s) {
			t.Errorf("logs show %q:\n%s", s, b.logs.String())
		}
	}
}

func TestMetaLeadgenMapping(t *testing.T) {
	b := metaSetup(t, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		fields map[string]string
		check  func(t *testing.T, l store.LeadDetail)
	}{
		{"course question, first and last name, international phone, no checkbox",
			map[string]string{"course": "Técnico en Marketing Digital", "first_name": "Luis", "last_name": "Pérez", "phone_number": "+44 7700 900123"},
			func(t *testing.T, l store.LeadDetail) {
				if l.Course != "tecnico-en-marketing-digital" || l.FirstName != "Luis" || l.LastName != "Pérez" || l.Phone != "+447700900123" || l.ConsentMarketing {
					t.Errorf("got course %q name %q %q phone %q marketing %v", l.Course, l.FirstName, l.LastName, l.Phone, l.ConsentMarketing)
				}
				if l.Site != "" {
					t.Errorf("site: got %q, want none", l.Site)
				}
			}},
		{"00 prefix, curso and campus questions",
			map[string]string{"curso": "community-manager", "full_name": "Eva", "phone_number": "0034 611-222-333", "campus": "Sevilla"},
			func(t *testing.T, l store.LeadDetail) {
				if l.Course != "community-manager" || l.Phone != "+34611222333" || l.Site != "sevilla" || l.FirstName != "Eva" || l.LastName != "" {
					t.Errorf("got course %q phone %q site %q name %q %q", l.Course, l.Phone, l.Site, l.FirstName, l.LastName)
				}
			}},
		{"a phone that is no number is left out",
			map[string]string{"course": "community-manager", "full_name": "Eva", "phone_number": "llámame"},
			func(t *testing.T, l store.LeadDetail) {
				if l.Phone != "" {
					t.Errorf("phone: got %q, want none", l.Phone)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := nextLeadgenID()
			b.graph.setLead(id, leadJSON(id, "m."+id+"@example.com", tc.fields, ""))
			if err := b.run(t, id); err != nil {
				t.Fatal(err)
			}
			ids := b.leadsOf(t, id)
			if len(ids) != 1 {
				t.Fatalf("leads: got %d, want 1", len(ids))
			}
			l, err := b.store.LeadDetail(ctx, ids[0])
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, l)
		})
	}
}

func TestMetaLeadgenFailures(t *testing.T) {
	b := metaSetup(t, nil)
	for _, tc := range []struct {
		name      string
		lead      func(id string) string
		faults    []string
		permanent bool
		throttled bool
		reason    string
	}{
		{"no email question", func(id string) string {
			return strings.Replace(leadJSON(id, "x@example.com", map[string]string{"course": "c1"}, ""), `"name":"email"`, `"name":"correo"`, 1)
		}, nil, true, false, "the form has no email answer"},
		{"not an email", func(id string) string {
			return leadJSON(id, "ana at example", map[string]string{"course": "c1"}, "")
		}, nil, true, false, "the email answer is not an email address"},
		{"no course", func(id string) string {
			return leadJSON(id, "ana."+id+"@example.com", map[string]string{"full_name": "Ana García"}, "")
		}, nil, true, false, "no course: the form is not in META_LEAD_FORMS and has no course question"},
		{"lead gone or not permitted", nil, nil, true, false, "invalid parameter"},
		{"expired page token", func(id string) string { return leadJSON(id, "a@example.com", map[string]string{"course": "c1"}, "") },
			[]string{`{"error":{"message":"Error validating access token: ` + metaPageToken + `","type":"OAuthException","code":190}}`}, true, false, "access token invalid or expired"},
		{"page rate limit", func(id string) string { return leadJSON(id, "a@example.com", map[string]string{"course": "c1"}, "") },
			[]string{`{"error":{"code":32}}`}, false, true, "page rate limit reached"},
		{"transient", func(id string) string { return leadJSON(id, "a@example.com", map[string]string{"course": "c1"}, "") },
			[]string{`{"error":{"code":2,"is_transient":true}}`}, false, false, "service temporarily unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := nextLeadgenID()
			if tc.lead != nil {
				b.graph.setLead(id, tc.lead(id))
			}
			b.graph.failNext(tc.faults...)
			err := b.run(t, id)
			if err == nil {
				t.Fatal("got nil error")
			}
			if got := errors.Is(err, asynq.SkipRetry); got != tc.permanent {
				t.Errorf("SkipRetry: got %v, want %v (%v)", got, tc.permanent, err)
			}
			if got := handlers.IsThrottled(err); got != tc.throttled {
				t.Errorf("throttled: got %v, want %v (%v)", got, tc.throttled, err)
			}
			if !strings.Contains(err.Error(), tc.reason) || !strings.Contains(err.Error(), id) {
				t.Errorf("error %q: want the leadgen id and %q", err, tc.reason)
			}
			for _, s := range []string{"@example.com", "ana at example", "García", metaPageToken} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q shows %q", err, s)
				}
			}
			if n := len(b.leadsOf(t, id)); n != 0 {
				t.Errorf("leads: got %d, want 0", n)
			}
		})
	}
	// A malformed payload is permanent before any call.
	calls := b.graph.calls
	err := b.handler.ProcessTask(context.Background(), asynq.NewTask(tasks.TypeMetaLeadgen, []byte(`{"leadgen_id":"12ab"}`)))
	if !errors.Is(err, asynq.SkipRetry) || b.graph.calls != calls {
		t.Errorf("malformed payload: got %v after %d calls, want SkipRetry and no call", err, b.graph.calls-calls)
	}
}

func TestMetaInsightsSyncUpserts(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	g := newGraphFake(t)
	row := func(campaign, day, spend, leads string) string {
		return `{"campaign_id":"` + campaign + `","campaign_name":"C` + campaign + `","spend":"` + spend + `","impressions":"100","clicks":"5","account_currency":"EUR",
			"actions":[{"action_type":"lead","value":"` + leads + `"}],"date_start":"` + day + `","date_stop":"` + day + `"}`
	}
	pages := func(lastSpend string) map[string]string {
		return map[string]string{
			"":   `{"data":[` + row("8800001", "2026-11-26", "10", "1") + `],"paging":{"cursors":{"after":"p2"},"next":"https://x.invalid/next"}}`,
			"p2": `{"data":[` + row("8800001", "2026-11-27", "11", "2") + `],"paging":{"cursors":{"after":"p3"},"next":"https://x.invalid/next"}}`,
			"p3": `{"data":[` + row("8800001", "2026-11-28", lastSpend, "3") + `],"paging":{"cursors":{"after":"p4"}}}`,
		}
	}
	g.pages = pages("2.5")
	client, err := meta.NewAdsClient(meta.AdsParams{
		Config:  meta.AdsConfig{AdAccountID: metaAccount, AccessToken: metaAdsToken, Days: 3},
		BaseURL: g.url, APIVersion: "v26.0",
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 28, 5, 15, 0, 0, time.UTC)
	h := handlers.NewMetaInsights(handlers.MetaInsightsDeps{Client: client, Store: st, AccountID: metaAccount, Days: 3, Now: func() time.Time { return now }})
	task, err := tasks.NewCampaignSyncMeta(tasks.CampaignSyncMeta{Day: "2026-11-28"}, "campaign:sync-meta:2026-11-28T05:15:00Z")
	if err != nil {
		t.Fatal(err)
	}
	snapshot := func() string {
		t.Helper()
		rows, err := st.MetaInsights(ctx, time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, r := range rows {
			if r.MetaCampaignID == "8800001" {
				fmt.Fprintf(&b, "%s %s %s %d %d %d %s\n", r.Day.Format(time.DateOnly), r.Spend, r.Currency, r.Impressions, r.Clicks, r.Leads, r.UpdatedAt.UTC().Format(time.RFC3339))
			}
		}
		return b.String()
	}
	if err := h.ProcessTask(ctx, task); err != nil {
		t.Fatal(err)
	}
	first := snapshot()
	want := "2026-11-26 10 EUR 100 5 1 2026-11-28T05:15:00Z\n2026-11-27 11 EUR 100 5 2 2026-11-28T05:15:00Z\n2026-11-28 2.5 EUR 100 5 3 2026-11-28T05:15:00Z\n"
	if first != want {
		t.Fatalf("after the first sync: got\n%swant\n%s", first, want)
	}
	now = now.Add(time.Hour)
	if err := h.ProcessTask(ctx, task); err != nil {
		t.Fatal(err)
	}
	if got := snapshot(); got != first {
		t.Errorf("re-running changed the rows: got\n%swant\n%s", got, first)
	}
	// Meta restates the last day: its row takes the new spend.
	g.mu.Lock()
	g.pages = pages("7.25")
	g.mu.Unlock()
	if err := h.ProcessTask(ctx, task); err != nil {
		t.Fatal(err)
	}
	want = strings.Replace(first, "2026-11-28 2.5 EUR 100 5 3 2026-11-28T05:15:00Z", "2026-11-28 7.25 EUR 100 5 3 2026-11-28T06:15:00Z", 1)
	if got := snapshot(); got != want {
		t.Errorf("after the restatement: got\n%swant\n%s", got, want)
	}

	// A refused token is permanent; a throttle is not.
	g.failNext(`{"error":{"code":190,"type":"OAuthException"}}`)
	if err := h.ProcessTask(ctx, task); !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("expired token: got %v, want SkipRetry", err)
	}
	g.failNext(`{"error":{"code":80000}}`)
	if err := h.ProcessTask(ctx, task); err == nil || errors.Is(err, asynq.SkipRetry) || !handlers.IsThrottled(err) {
		t.Errorf("throttled: got %v, want a throttled, retryable error", err)
	}
	if err := handlers.MetaInsightsOff(slog.New(slog.DiscardHandler)).ProcessTask(ctx, task); err != nil {
		t.Errorf("off handler: got %v, want nil", err)
	}
}
