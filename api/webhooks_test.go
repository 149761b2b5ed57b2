package api_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cepcomunicacion/cepjobs/api"
	"github.com/cepcomunicacion/cepjobs/handlers"
	"github.com/cepcomunicacion/cepjobs/internal/meta"
	"github.com/cepcomunicacion/cepjobs/internal/outbox"
	"github.com/cepcomunicacion/cepjobs/internal/redisconn"
	"github.com/cepcomunicacion/cepjobs/internal/testenv"
	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

const (
	verifyToken = "verify-token-0123456789abcdef"
	appSecret   = "0123456789abcdef0123456789abcdef"
	pageToken   = "EAAGpage-token-api-test-0123"
	leadForm    = "900100200"
)

func withMetaWebhook(c api.MetaWebhookConfig) option {
	return func(cfg *api.Config, _ *api.Deps) { cfg.MetaWebhook = c }
}

// sign is X-Hub-Signature-256 as Meta computes it: HMAC-SHA256 of the raw
// body keyed with the app secret, hex, after "sha256=".
func sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// post sends a raw body, as Meta does: no bearer token.
func (b *bundle) post(t *testing.T, path string, body []byte, signature string) response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, b.srv.URL+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if signature != "" {
		req.Header.Set("X-Hub-Signature-256", signature)
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

// leadgenBody is a Page notification with one leadgen change per id, in
// the shape of Meta's webhook reference.
func leadgenBody(ids ...string) []byte {
	var changes []map[string]any
	for _, id := range ids {
		changes = append(changes, map[string]any{"field": "leadgen", "value": map[string]any{
			"ad_id": "120300001", "form_id": leadForm, "leadgen_id": id, "created_time": 1764268205, "page_id": "100200300", "adgroup_id": "120300001",
		}})
	}
	b, _ := json.Marshal(map[string]any{"object": "page", "entry": []any{map[string]any{"id": "100200300", "time": 1764268206, "changes": changes}}})
	return b
}

func TestMetaWebhookVerification(t *testing.T) {
	b := setup(t, withMetaWebhook(api.MetaWebhookConfig{VerifyToken: verifyToken, AppSecret: appSecret}))
	off := setup(t)
	q := func(mode, token, challenge string) string {
		return "/v1/webhooks/meta?hub.mode=" + mode + "&hub.verify_token=" + token + "&hub.challenge=" + challenge
	}
	r := b.do(t, http.MethodGet, q("subscribe", verifyToken, "1158201444"), "", nil)
	if r.status != http.StatusOK || r.raw != "1158201444" || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Errorf("good token: got %d %q (%s), want 200 and the challenge as text", r.status, r.raw, r.header.Get("Content-Type"))
	}
	for name, path := range map[string]string{
		"wrong token":   q("subscribe", "verify-token-0123456789abcdeX", "1158201444"),
		"no token":      "/v1/webhooks/meta?hub.mode=subscribe&hub.challenge=1158201444",
		"wrong mode":    q("unsubscribe", verifyToken, "1158201444"),
		"bearer is not": q("subscribe", writer, "1158201444"),
	} {
		r := b.do(t, http.MethodGet, path, writer, nil)
		if r.status != http.StatusForbidden || strings.Contains(r.raw, "1158201444") {
			t.Errorf("%s: got %d %q, want 403 without the challenge", name, r.status, r.raw)
		}
	}
	if r := off.do(t, http.MethodGet, q("subscribe", "", "1158201444"), "", nil); r.status != http.StatusForbidden {
		t.Errorf("not configured: got %d %s, want 403", r.status, r.raw)
	}
}

func TestMetaWebhookSignature(t *testing.T) {
	b := setup(t, withMetaWebhook(api.MetaWebhookConfig{VerifyToken: verifyToken, AppSecret: appSecret}))
	unsigned := setup(t, withMetaWebhook(api.MetaWebhookConfig{VerifyToken: verifyToken}))
	// A notification of another field: signed, it is acknowledged and
	// nothing is queued.
	body := []byte(`{"object":"page","entry":[{"id":"100200300","time":1764268206,"changes":[{"field":"feed","value":{"item":"status"}}]}]}`)
	for _, tc := range []struct {
		name   string
		b      *bundle
		body   []byte
		sig    string
		status int
	}{
		{"valid", b, body, sign(appSecret, body), http.StatusOK},
		{"valid, upper-case hex", b, body, "sha256=" + strings.ToUpper(strings.TrimPrefix(sign(appSecret, body), "sha256=")), http.StatusOK},
		{"other secret", b, body, sign("fedcba9876543210fedcba9876543210", body), http.StatusUnauthorized},
		{"body changed after signing", b, append([]byte(" "), body...), sign(appSecret, body), http.StatusUnauthorized},
		{"sha1 only", b, body, "sha1=0123456789abcdef0123456789abcdef01234567", http.StatusUnauthorized},
		{"garbage", b, body, "sha256=zz", http.StatusUnauthorized},
		{"missing", b, body, "", http.StatusUnauthorized},
		{"no secret configured", unsigned, body, sign(appSecret, body), http.StatusUnauthorized},
		{"no secret configured, empty-key signature", unsigned, body, sign("", body), http.StatusUnauthorized},
	} {
		r := tc.b.post(t, "/v1/webhooks/meta", tc.body, tc.sig)
		if r.status != tc.status {
			t.Errorf("%s: got %d %s, want %d", tc.name, r.status, r.raw, tc.status)
		}
		if tc.status == http.StatusUnauthorized && r.header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: content type %q, want problem+json", tc.name, r.header.Get("Content-Type"))
		}
	}
	big := bytes.Repeat([]byte(" "), api.MaxWebhookBytes+1)
	if r := b.post(t, "/v1/webhooks/meta", big, sign(appSecret, big)); r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("over 1 MiB: got %d, want 413", r.status)
	}
	bad := []byte(`{"object":"page","entry":[`)
	if r := b.post(t, "/v1/webhooks/meta", bad, sign(appSecret, bad)); r.status != http.StatusBadRequest {
		t.Errorf("signed but malformed: got %d, want 400", r.status)
	}
	if q, _ := b.inspector.GetQueueInfo(tasks.QueueCritical); q != nil && q.Size != 0 {
		t.Errorf("critical queue: got %d tasks, want none", q.Size)
	}
}

// TestMetaLeadgenEndToEnd follows a lead from Meta's webhook to a stored
// lead: the notification becomes meta:leadgen outbox rows (ids only), the
// rows reach Redis, the worker's handler reads the lead from a Graph API
// fake, stores it through SubmitLead and queues its lead:process. Meta
// delivering the same notification again changes nothing.
func TestMetaLeadgenEndToEnd(t *testing.T) {
	b := setup(t, withMetaWebhook(api.MetaWebhookConfig{VerifyToken: verifyToken, AppSecret: appSecret}))
	ctx := context.Background()

	stamp := time.Now().UnixNano() % 1e9
	first, second := fmt.Sprintf("51%09d", stamp), fmt.Sprintf("52%09d", stamp)
	emails := map[string]string{first: fmt.Sprintf("lucia.%d@example.com", stamp), second: fmt.Sprintf("marcos.%d@example.com", stamp)}
	graph := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimPrefix(r.URL.Path, "/v26.0/")
		if r.Header.Get("Authorization") != "Bearer "+pageToken || r.URL.Query().Get("fields") != "created_time,field_data,custom_disclaimer_responses,form_id,ad_id,campaign_id" {
			t.Errorf("graph request %s: token or fields not as documented", r.URL)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"id":%q,"created_time":"2026-11-27T18:30:05+0000","form_id":%q,"ad_id":"120300001","campaign_id":"120200001",
			"field_data":[{"name":"email","values":[%q]},{"name":"full_name","values":["Lucía Gómez"]},{"name":"phone_number","values":["+34 600 111 222"]}],
			"custom_disclaimer_responses":[{"checkbox_key":"marketing","is_checked":%q}]}`, id, leadForm, emails[id], map[string]string{first: "1", second: ""}[id])
	}))
	t.Cleanup(graph.Close)

	// One delivery carrying both leads, the first one twice.
	body := leadgenBody(first, second, first)
	r := b.post(t, "/v1/webhooks/meta", body, sign(appSecret, body))
	if r.status != http.StatusOK {
		t.Fatalf("notification: got %d %s, want 200", r.status, r.raw)
	}
	if diff := cmp.Diff(map[string]any{"leadgen": 3.0, "queued": 2.0, "ignored": 0.0}, r.body); diff != "" {
		t.Errorf("answer (-want +got):\n%s", diff)
	}
	pending := func(typ string) []*asynq.TaskInfo {
		t.Helper()
		infos, err := b.inspector.ListPendingTasks(tasks.QueueCritical)
		if err != nil {
			t.Fatal(err)
		}
		var out []*asynq.TaskInfo
		for _, i := range infos {
			if i.Type == typ {
				out = append(out, i)
			}
		}
		return out
	}
	leadgen := pending(tasks.TypeMetaLeadgen)
	if len(leadgen) != 2 {
		t.Fatalf("meta:leadgen tasks: got %d, want 2", len(leadgen))
	}
	for _, i := range leadgen {
		var p map[string]any
		_ = json.Unmarshal(i.Payload, &p)
		id, _ := p["leadgen_id"].(string)
		if diff := cmp.Diff(map[string]any{"leadgen_id": id, "page_id": "100200300", "form_id": leadForm}, p); diff != "" || (id != first && id != second) {
			t.Errorf("payload (-want +got), ids only:\n%s", diff)
		}
		if i.ID != store.OutboxKeyID(tasks.TypeMetaLeadgen, "meta:leadgen:"+id) {
			t.Errorf("task id %s: want the outbox id derived from the leadgen id", i.ID)
		}
	}

	// Meta delivers the same notification again: acknowledged, nothing new.
	r = b.post(t, "/v1/webhooks/meta", body, sign(appSecret, body))
	if r.status != http.StatusOK || r.body["queued"] != 0.0 {
		t.Errorf("redelivery: got %d %s, want 200 with nothing queued", r.status, r.raw)
	}
	if n := len(pending(tasks.TypeMetaLeadgen)); n != 2 {
		t.Errorf("after the redelivery: got %d meta:leadgen tasks, want 2", n)
	}

	// The worker runs each task, the first twice (as after a redelivery
	// that outlived the outbox row, or a retry after the commit).
	opt, err := redisconn.Parse(fmt.Sprintf("redis://%s/%d", testenv.RedisAddr(), testenv.RedisDBAPI))
	if err != nil {
		t.Fatal(err)
	}
	rc := redisconn.Client(opt)
	t.Cleanup(func() { rc.Close() })
	leads, err := meta.NewLeadAdsClient(meta.LeadAdsParams{
		Config:  meta.LeadAdsConfig{PageAccessToken: pageToken, DefaultCountry: "34", MarketingCheckbox: "marketing"},
		BaseURL: graph.URL, APIVersion: "v26.0",
	})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	h := handlers.NewMetaLeadgen(handlers.MetaLeadgenDeps{
		Client: leads, Store: b.store,
		Dispatch: outbox.NewDispatcher(b.store, asynq.NewClientFromRedisClient(rc), log, outbox.NewMetrics(prometheus.NewRegistry()), nil),
		Forms:    map[string]string{leadForm: "tecnico-marketing-digital"}, DefaultCountry: "34", MarketingCheckbox: "marketing", Logger: log,
	})
	for _, i := range append(leadgen, leadgen[0]) {
		if err := h.ProcessTask(ctx, asynq.NewTask(i.Type, i.Payload)); err != nil {
			t.Fatalf("meta:leadgen %s: %v", i.ID, err)
		}
	}

	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	type row struct {
		ExternalID, Source, Course, Phone, TextVersion, SubmittedBy string
		Privacy, Marketing                                          bool
		AcceptedAt                                                  time.Time
		ID                                                          string
	}
	rows, err := conn.Query(ctx, `
		select external_id, source, course, coalesce(phone, ''), consent_text_version, submitted_by,
			consent_privacy, consent_marketing, consent_accepted_at, id::text
		from cepjobs.leads where external_id = any($1) order by external_id`, []string{"meta:" + first, "meta:" + second})
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		t.Fatal(err)
	}
	accepted := time.Date(2026, 11, 27, 18, 30, 5, 0, time.UTC)
	want := []row{
		{ExternalID: "meta:" + first, Source: handlers.SourceMetaLeadAd, Course: "tecnico-marketing-digital", Phone: "+34600111222",
			TextVersion: "meta-form:" + leadForm, SubmittedBy: "meta-lead-ads", Privacy: true, Marketing: true, AcceptedAt: accepted},
		{ExternalID: "meta:" + second, Source: handlers.SourceMetaLeadAd, Course: "tecnico-marketing-digital", Phone: "+34600111222",
			TextVersion: "meta-form:" + leadForm, SubmittedBy: "meta-lead-ads", Privacy: true, Marketing: false, AcceptedAt: accepted},
	}
	ignoreID := cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".ID" }, cmp.Ignore())
	sameInstant := cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })
	if diff := cmp.Diff(want, got, ignoreID, sameInstant); diff != "" {
		t.Fatalf("leads (-want +got):\n%s", diff)
	}
	var processed []string
	for _, i := range pending(tasks.TypeLeadProcess) {
		var p tasks.LeadProcess
		_ = json.Unmarshal(i.Payload, &p)
		processed = append(processed, p.LeadID)
	}
	if diff := cmp.Diff([]string{got[0].ID, got[1].ID}, processed, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("lead:process tasks, one per lead (-want +got):\n%s", diff)
	}
	// The intake's logs hold ids, never the person.
	for _, s := range []string{emails[first], "Lucía", "600 111 222"} {
		if strings.Contains(b.logs.String(), s) {
			t.Errorf("intake logs show %q", s)
		}
	}
}
