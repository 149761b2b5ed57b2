package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cepcomunicacion/cepjobs/api"
	"github.com/cepcomunicacion/cepjobs/internal/testenv"
	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

const (
	campaignWriter = "campaign-writer-token-0123456789"
	campaignReader = "campaign-reader-token-0123456789"
)

func withCampaignTokens(c *api.Config, _ *api.Deps) {
	c.Tokens = append(c.Tokens,
		api.Token{Name: "cms-campaigns", Secret: campaignWriter, Scopes: []string{api.ScopeCampaignsWrite, api.ScopeCampaignsRead}},
		api.Token{Name: "campaign-viewer", Secret: campaignReader, Scopes: []string{api.ScopeCampaignsRead}})
}

// mailOffStore is the store of an intake that knows campaign email is not
// configured.
type mailOffStore struct{ *store.Store }

func (mailOffStore) CampaignMailOff() string {
	return "campaign email goes through Mailchimp Transactional: set MANDRILL_API_KEY and MANDRILL_FROM"
}

func newCampaignID() string {
	return fmt.Sprintf("c%d", time.Now().UnixNano()%1e12)
}

func validCampaign(course string) map[string]any {
	return map[string]any{
		"name": "Otoño 2026", "course": "tecnico-marketing-digital", "template": "otono-2026",
		"audience":         map[string]any{"course": course, "campus": "sevilla", "from": "2026-01-01", "to": "2099-12-31T23:59:59Z"},
		"meta_campaign_id": "120200001",
	}
}

func (b *bundle) campaignTasks(t *testing.T) []map[string]string {
	t.Helper()
	pending, err := b.inspector.ListPendingTasks(tasks.QueueDefault)
	if err != nil {
		return nil
	}
	var out []map[string]string
	for _, ti := range pending {
		if ti.Type != tasks.TypeCampaignLaunch {
			t.Errorf("queued %s, want campaign:launch only", ti.Type)
			continue
		}
		var p map[string]string
		if err := json.Unmarshal(ti.Payload, &p); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func TestLaunchCampaignRejectsBadInput(t *testing.T) {
	b := setup(t, withCampaignTokens)
	id := newCampaignID()
	with := func(edit func(map[string]any)) map[string]any { c := validCampaign("curso"); edit(c); return c }
	for _, tc := range []struct {
		name   string
		path   string
		body   any
		status int
		fields []string
	}{
		{name: "everything missing", body: map[string]any{}, status: 422, fields: []string{"name", "template", "audience"}},
		{name: "unknown fields, wrong types", body: with(func(c map[string]any) {
			c["segment"] = "vip"
			c["name"] = 7
			c["audience"] = map[string]any{"course": "curso", "campuss": "sevilla", "marketing": false}
		}), status: 422, fields: []string{"audience.campuss", "audience.marketing", "name", "segment"}},
		{name: "bad values", body: with(func(c map[string]any) {
			c["template"] = "otoño 2026"
			c["meta_campaign_id"] = "act_123"
			c["audience"] = map[string]any{"campus": "sevilla centro", "from": "01/11/2026", "to": "2026-13-01"}
		}), status: 422, fields: []string{"template", "meta_campaign_id", "audience.campus", "audience.from", "audience.to"}},
		{name: "to before from", body: with(func(c map[string]any) {
			c["audience"] = map[string]any{"from": "2026-11-02", "to": "2026-11-01"}
		}), status: 422, fields: []string{"audience.to"}},
		{name: "bad id", path: "/v1/campaigns/otoño:2026/launch", body: validCampaign("curso"), status: 422, fields: []string{"id"}},
		{name: "id too long for the Mandrill tag", path: "/v1/campaigns/" + strings.Repeat("a", 42) + "/launch", body: validCampaign("curso"), status: 422, fields: []string{"id"}},
		{name: "malformed json", body: `{"name":`, status: 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path
			if path == "" {
				path = "/v1/campaigns/" + id + "/launch"
			}
			r := b.do(t, "POST", path, campaignWriter, tc.body)
			if r.status != tc.status {
				t.Fatalf("status: got %d, want %d: %s", r.status, tc.status, r.raw)
			}
			got := fieldsOf(r)
			slices.Sort(got)
			want := slices.Clone(tc.fields)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("fields: got %v, want %v (%s)", got, want, r.raw)
			}
		})
	}
	if r := b.do(t, "GET", "/v1/campaigns/"+id, campaignReader, nil); r.status != 404 {
		t.Errorf("after refused launches: got %d, want 404 (nothing stored)", r.status)
	}
	if n := len(b.campaignTasks(t)); n != 0 {
		t.Errorf("queued: got %d tasks, want none", n)
	}
	if r := b.do(t, "POST", "/v1/campaigns/"+id+"/launch", campaignReader, validCampaign("curso")); r.status != 403 {
		t.Errorf("launch with campaigns:read only: got %d, want 403", r.status)
	}
	if r := b.do(t, "GET", "/v1/campaigns/"+id, writer, nil); r.status != 403 {
		t.Errorf("GET with a leads token: got %d, want 403", r.status)
	}
}

func TestLaunchCampaignQueuesOnceAndReportsCounts(t *testing.T) {
	b := setup(t, withCampaignTokens)
	ctx := context.Background()
	id := newCampaignID()
	course := "curso-" + id
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// 5 leads in the audience, one without marketing consent, one erased,
	// one of another campus.
	for i, l := range []struct {
		campus            string
		marketing, erased bool
	}{{"sevilla", true, false}, {"sevilla", true, false}, {"sevilla", true, false}, {"sevilla", true, false}, {"sevilla", true, false},
		{"sevilla", false, false}, {"sevilla", true, true}, {"malaga", true, false}} {
		_, err := conn.Exec(ctx, `
			insert into cepjobs.leads (id, first_name, email, email_normalized, course, site, source, consent_privacy,
				consent_marketing, consent_text_version, received_at, submitted_by, status, status_changed_at, erased_at)
			values (gen_random_uuid(), 'Ana', $1, $1, $2, $3, 'web-form', true, $4, 'v1', now() - interval '1 hour', 'test', 'completed', now(),
				case when $5::bool then now() end)`,
			fmt.Sprintf("a%d.%s@example.com", i, id), course, l.campus, l.marketing, l.erased)
		if err != nil {
			t.Fatal(err)
		}
	}

	r := b.do(t, "POST", "/v1/campaigns/"+id+"/launch", campaignWriter, validCampaign(course))
	if r.status != 202 || r.body["status"] != "launching" || r.body["id"] != id || r.body["launched_by"] != "cms-campaigns" {
		t.Fatalf("launch: got %d %s", r.status, r.raw)
	}
	if got, want := r.header.Get("Location"), "/v1/campaigns/"+id; got != want {
		t.Errorf("Location: got %q, want %q", got, want)
	}
	queued := b.campaignTasks(t)
	if len(queued) != 1 || queued[0]["campaign_id"] != id || len(queued[0]["run"]) != 36 || len(queued[0]) != 2 {
		t.Fatalf("queued: got %v, want one campaign:launch with the campaign id and a run", queued)
	}
	// The dispatched mark is recorded off the request path, moments later.
	testenv.Eventually(t, 5*time.Second, "outbox backlog 0 after an inline dispatch", func() bool {
		n, _, err := b.store.OutboxBacklog(ctx, time.Now())
		return err == nil && n == 0
	})

	// The CMS retries the same launch: the same answer, nothing new queued.
	again := b.do(t, "POST", "/v1/campaigns/"+id+"/launch", campaignWriter, validCampaign(course))
	if again.status != 202 || again.body["status"] != "launching" {
		t.Errorf("same launch again: got %d %s", again.status, again.raw)
	}
	if n := len(b.campaignTasks(t)); n != 1 {
		t.Errorf("queued after a repeated launch: got %d, want 1", n)
	}
	// Another definition while it runs: 409.
	other := validCampaign(course)
	other["template"] = "otro"
	if c := b.do(t, "POST", "/v1/campaigns/"+id+"/launch", campaignWriter, other); c.status != 409 ||
		c.body["type"] != "https://cepjobs.dev/problems/campaign-state" || !strings.Contains(c.raw, "launching") {
		t.Errorf("other definition while launching: got %d %s, want 409", c.status, c.raw)
	}

	// The worker's side, through the store: the scan, then outcomes.
	if _, err := b.store.LaunchCampaignPage(ctx, id, 1000, 2, time.Now()); err != nil {
		t.Fatal(err)
	}
	rows, _ := conn.Query(ctx, `select lead_id::text from cepjobs.campaign_sends where campaign_id = $1 order by lead_id`, id)
	leads, _ := pgx.CollectRows(rows, pgx.RowTo[string])
	if len(leads) != 5 {
		t.Fatalf("recipients: got %d, want 5", len(leads))
	}
	for i, o := range []store.CampaignSendOutcome{{Status: store.CampaignSendSent}, {Status: store.CampaignSendSent}, {Status: store.CampaignSendFailed}, {Status: store.CampaignSendSkipped}} {
		if err := b.store.RecordCampaignSend(ctx, id, leads[i], o, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.store.FinishCampaignLaunch(ctx, id, time.Now()); err != nil {
		t.Fatal(err)
	}
	g := b.do(t, "GET", "/v1/campaigns/"+id, campaignReader, nil)
	if g.status != 200 {
		t.Fatalf("GET: got %d %s", g.status, g.raw)
	}
	want := map[string]any{"status": "sending", "audience_size": 5.0, "batches": 3.0, "sent": 2.0, "failed": 1.0, "skipped": 1.0, "pending": 1.0,
		"template": "otono-2026", "meta_campaign_id": "120200001"}
	for k, v := range want {
		if g.body[k] != v {
			t.Errorf("GET %s: got %v, want %v", k, g.body[k], v)
		}
	}
	for _, k := range []string{"created_at", "launched_at", "updated_at"} {
		if _, err := time.Parse(time.RFC3339, fmt.Sprint(g.body[k])); err != nil {
			t.Errorf("GET %s: got %v, want an RFC 3339 time", k, g.body[k])
		}
	}
	if aud, _ := g.body["audience"].(map[string]any); aud["campus"] != "sevilla" || aud["from"] != "2026-01-01" {
		t.Errorf("GET audience: got %v", g.body["audience"])
	}
	if strings.Contains(g.raw, "@example.com") {
		t.Errorf("GET shows personal data: %s", g.raw)
	}
	if r := b.do(t, "GET", "/v1/campaigns/no-such-campaign", campaignReader, nil); r.status != 404 {
		t.Errorf("unknown campaign: got %d, want 404", r.status)
	}
}

func TestPauseAndResumeCampaign(t *testing.T) {
	b := setup(t, withCampaignTokens)
	ctx := context.Background()
	id := newCampaignID()
	if r := b.do(t, "POST", "/v1/campaigns/"+id+"/pause", campaignWriter, nil); r.status != 404 {
		t.Errorf("pause unknown: got %d, want 404", r.status)
	}
	if r := b.do(t, "POST", "/v1/campaigns/"+id+"/launch", campaignWriter, validCampaign("nadie-"+id)); r.status != 202 {
		t.Fatalf("launch: got %d %s", r.status, r.raw)
	}
	if r := b.do(t, "POST", "/v1/campaigns/"+id+"/pause", campaignReader, nil); r.status != 403 {
		t.Errorf("pause with campaigns:read: got %d, want 403", r.status)
	}
	for range 2 {
		p := b.do(t, "POST", "/v1/campaigns/"+id+"/pause", campaignWriter, nil)
		if p.status != 200 || p.body["status"] != "paused" || p.body["paused_at"] == nil {
			t.Errorf("pause: got %d %s, want 200 paused (again: unchanged)", p.status, p.raw)
		}
	}
	r := b.do(t, "POST", "/v1/campaigns/"+id+"/resume", campaignWriter, nil)
	if r.status != 202 || r.body["status"] != "launching" || r.body["paused_at"] != nil {
		t.Fatalf("resume: got %d %s, want 202 launching", r.status, r.raw)
	}
	queued := b.campaignTasks(t)
	if len(queued) != 2 || queued[0]["run"] == queued[1]["run"] {
		t.Errorf("queued: got %v, want the launch and the resume, each its own run", queued)
	}
	if again := b.do(t, "POST", "/v1/campaigns/"+id+"/resume", campaignWriter, nil); again.status != 200 || again.body["status"] != "launching" {
		t.Errorf("resume while launching: got %d %s, want 200 unchanged", again.status, again.raw)
	}
	if n := len(b.campaignTasks(t)); n != 2 {
		t.Errorf("queued after a second resume: got %d, want 2", n)
	}

	// Nobody in the audience: the launch completes it.
	if _, err := b.store.LaunchCampaignPage(ctx, id, 100, 10, time.Now()); err != nil {
		t.Fatal(err)
	}
	if status, err := b.store.FinishCampaignLaunch(ctx, id, time.Now()); err != nil || status != store.CampaignCompleted {
		t.Fatalf("finish: got %q, %v", status, err)
	}
	for _, action := range []string{"pause", "resume"} {
		c := b.do(t, "POST", "/v1/campaigns/"+id+"/"+action, campaignWriter, nil)
		if c.status != http.StatusConflict || !strings.Contains(c.raw, "completed") {
			t.Errorf("%s a completed campaign: got %d %s, want 409", action, c.status, c.raw)
		}
	}
	// A relaunch of the completed campaign is accepted.
	if r := b.do(t, "POST", "/v1/campaigns/"+id+"/launch", campaignWriter, validCampaign("nadie-"+id)); r.status != 202 || r.body["status"] != "launching" {
		t.Errorf("relaunch completed: got %d %s", r.status, r.raw)
	}
}

func TestCampaignsWithoutMandrill(t *testing.T) {
	b := setup(t, withCampaignTokens, func(_ *api.Config, d *api.Deps) {
		d.Store = mailOffStore{d.Store.(*store.Store)}
	})
	id := newCampaignID()
	for _, path := range []string{"/v1/campaigns/" + id + "/launch", "/v1/campaigns/" + id + "/resume"} {
		var body any
		if strings.HasSuffix(path, "launch") {
			body = validCampaign("curso")
		}
		r := b.do(t, "POST", path, campaignWriter, body)
		if r.status != 503 || !strings.Contains(r.raw, "MANDRILL_API_KEY") || !strings.Contains(r.raw, "MANDRILL_FROM") {
			t.Errorf("%s without Mandrill: got %d %s, want 503 naming the variables", path, r.status, r.raw)
		}
	}
	if r := b.do(t, "GET", "/v1/campaigns/"+id, campaignReader, nil); r.status != 404 {
		t.Errorf("GET: got %d, want 404 (nothing stored)", r.status)
	}
	if n := len(b.campaignTasks(t)); n != 0 {
		t.Errorf("queued: got %d, want none", n)
	}
	// Bad input is still reported as such.
	if r := b.do(t, "POST", "/v1/campaigns/"+id+"/launch", campaignWriter, map[string]any{}); r.status != 422 {
		t.Errorf("invalid launch without Mandrill: got %d, want 422", r.status)
	}
}
