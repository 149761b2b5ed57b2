package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cepcomunicacion/cepjobs/store"
)

var campaignSeq atomic.Int64

// campaignFixture is a course of its own, so tests sharing the database
// see only their own leads.
type campaignFixture struct {
	s      *store.Store
	conn   *pgx.Conn
	course string
	id     string
}

func campaignSetup(t *testing.T) *campaignFixture {
	t.Helper()
	s := setup(t)
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	n := campaignSeq.Add(1)
	return &campaignFixture{s: s, conn: conn,
		course: fmt.Sprintf("curso-c%d-%d", n, time.Now().UnixNano()%1e9),
		id:     fmt.Sprintf("camp-%d-%d", n, time.Now().UnixNano()%1e9)}
}

// leads inserts n leads of the fixture's course received at `at`, and
// returns their ids in id order.
func (f *campaignFixture) leads(t *testing.T, n int, marketing, erased bool, at time.Time) []string {
	t.Helper()
	rows, err := f.conn.Query(context.Background(), `
		insert into cepjobs.leads (id, first_name, email, email_normalized, course, source, consent_privacy,
			consent_marketing, consent_text_version, received_at, submitted_by, status, status_changed_at, erased_at)
		select gen_random_uuid(), 'Ana', 'c' || i || '.' || $1::text || '@example.com', 'c' || i || '.' || $1::text || '@example.com',
			$1::text, 'web-form', true, $2::bool, 'v1', $3::timestamptz, 'test', 'completed', $3::timestamptz,
			case when $4::bool then $3::timestamptz end
		from generate_series(1, $5::int) i
		returning id::text`, f.course, marketing, at, erased, n)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	return ids
}

func (f *campaignFixture) def() store.CampaignDefinition {
	return store.CampaignDefinition{ID: f.id, Name: "Otoño", Template: "otono", Audience: store.Audience{Course: f.course}, LaunchedBy: "cms"}
}

func launchPayload(id, run string) ([]byte, error) {
	return json.Marshal(map[string]string{"campaign_id": id, "run": run})
}

type sendRow struct {
	lead  string
	batch int
}

func (f *campaignFixture) sends(t *testing.T) []sendRow {
	t.Helper()
	rows, err := f.conn.Query(context.Background(), `select lead_id::text, batch from cepjobs.campaign_sends where campaign_id = $1 order by lead_id`, f.id)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (sendRow, error) {
		var s sendRow
		return s, r.Scan(&s.lead, &s.batch)
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// scan runs the launch's pages to the end and returns them.
func (f *campaignFixture) scan(t *testing.T, pageSize, batchSize int, now time.Time) []store.CampaignPage {
	t.Helper()
	var pages []store.CampaignPage
	for range 100 {
		p, err := f.s.LaunchCampaignPage(context.Background(), f.id, pageSize, batchSize, now)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, p)
		if p.Done || p.Status != store.CampaignLaunching {
			return pages
		}
	}
	t.Fatal("scan did not end in 100 pages")
	return nil
}

func TestCampaignScanPagesByKeysetAndCutsBatches(t *testing.T) {
	t.Parallel()
	f := campaignSetup(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	want := f.leads(t, 25, true, false, now.Add(-time.Hour))
	f.leads(t, 4, false, false, now.Add(-time.Hour))      // no marketing consent
	f.leads(t, 3, true, true, now.Add(-time.Hour))        // erased
	f.leads(t, 2, true, false, now.Add(time.Hour))        // received after the launch
	f.leads(t, 5, true, false, now.Add(-90*24*time.Hour)) // outside the window below

	d := f.def()
	d.Audience.From = "2026-11-01"
	d.Audience.To = "2026-11-28T09:00:00Z"
	res, err := f.s.LaunchCampaign(ctx, d, now, "campaign:launch", launchPayload)
	if err != nil {
		t.Fatal(err)
	}
	if res.OutboxID == "" || res.Campaign.Status != store.CampaignLaunching {
		t.Fatalf("launch: got outbox %q status %q, want a queued task and launching", res.OutboxID, res.Campaign.Status)
	}
	var payload map[string]string
	if err := json.Unmarshal(res.Payload, &payload); err != nil || payload["campaign_id"] != f.id || payload["run"] == "" {
		t.Errorf("payload: got %s, want the campaign id and a run", res.Payload)
	}

	pages := f.scan(t, 7, 3, now.Add(time.Minute))
	var added []int
	var batches []int
	for _, p := range pages {
		added = append(added, p.Added)
		batches = append(batches, p.Batches...)
	}
	if got, wantAdded := added, []int{7, 7, 7, 4}; !slices.Equal(got, wantAdded) {
		t.Errorf("recipients per page: got %v, want %v", got, wantAdded)
	}
	if !pages[len(pages)-1].Done {
		t.Error("last page: got not done, want done")
	}
	// 7 rows make batches of 3, 3, 1; the last page's 4 make 3 and 1.
	if want := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}; !slices.Equal(batches, want) {
		t.Errorf("batches: got %v, want %v", batches, want)
	}
	rows := f.sends(t)
	var got []string
	size := map[int]int{}
	for _, r := range rows {
		got = append(got, r.lead)
		size[r.batch]++
	}
	if !slices.Equal(got, want) {
		t.Errorf("recipients: got %d, want the %d consenting, not erased leads in the window", len(got), len(want))
	}
	for b, n := range size {
		if n > 3 {
			t.Errorf("batch %d: got %d recipients, want at most 3", b, n)
		}
	}
	// Keyset order: batch numbers grow with lead ids.
	for i := 1; i < len(rows); i++ {
		if rows[i].batch < rows[i-1].batch {
			t.Fatalf("batch of %s is %d, after %d for a smaller id", rows[i].lead, rows[i].batch, rows[i-1].batch)
		}
	}

	// Another page after the end does nothing.
	if p, err := f.s.LaunchCampaignPage(ctx, f.id, 7, 3, now); err != nil || !p.Done || p.Added != 0 {
		t.Errorf("page after the end: got %+v, %v; want done, nothing added", p, err)
	}
	status, err := f.s.FinishCampaignLaunch(ctx, f.id, now)
	if err != nil || status != store.CampaignSending {
		t.Errorf("finish launch: got %q, %v; want sending", status, err)
	}
	c, err := f.s.Campaign(ctx, f.id)
	if err != nil {
		t.Fatal(err)
	}
	if c.AudienceSize != 25 || c.Batches != 11 || c.Sends != (store.CampaignCounts{Pending: 25}) {
		t.Errorf("campaign: got audience %d batches %d sends %+v, want 25, 11, 25 pending", c.AudienceSize, c.Batches, c.Sends)
	}
}

func TestCampaignPageIsCrashSafe(t *testing.T) {
	t.Parallel()
	f := campaignSetup(t)
	ctx := context.Background()
	now := time.Now()
	f.leads(t, 10, true, false, now.Add(-time.Hour))
	if _, err := f.s.LaunchCampaign(ctx, f.def(), now, "campaign:launch", launchPayload); err != nil {
		t.Fatal(err)
	}
	// Two launch tasks of one campaign at once (a re-run while the first
	// still goes): pages serialise on the campaign row, and every lead is
	// recorded once.
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				p, err := f.s.LaunchCampaignPage(ctx, f.id, 3, 2, now)
				if err != nil {
					t.Error(err)
					return
				}
				if p.Done {
					return
				}
			}
		})
	}
	wg.Wait()
	rows := f.sends(t)
	batches := map[int]int{}
	for _, r := range rows {
		batches[r.batch]++
	}
	if len(rows) != 10 {
		t.Errorf("recipients: got %d, want 10", len(rows))
	}
	for b, n := range batches {
		if n > 2 {
			t.Errorf("batch %d: got %d recipients, want at most 2", b, n)
		}
	}
}

func TestCampaignRelaunchNeverRecordsARecipientTwice(t *testing.T) {
	t.Parallel()
	f := campaignSetup(t)
	ctx := context.Background()
	now := time.Now().Add(-time.Minute)
	first := f.leads(t, 6, true, false, now.Add(-time.Hour))
	if _, err := f.s.LaunchCampaign(ctx, f.def(), now, "campaign:launch", launchPayload); err != nil {
		t.Fatal(err)
	}
	f.scan(t, 100, 4, now)

	// The CMS posts the same launch again while it runs: nothing changes,
	// nothing is queued.
	again, err := f.s.LaunchCampaign(ctx, f.def(), now.Add(time.Second), "campaign:launch", launchPayload)
	if err != nil || again.OutboxID != "" || again.Campaign.Status != store.CampaignLaunching {
		t.Fatalf("same launch while launching: got outbox %q status %q err %v; want nothing queued", again.OutboxID, again.Campaign.Status, err)
	}
	// Another definition while it runs is refused.
	other := f.def()
	other.Template = "otra"
	if _, err := f.s.LaunchCampaign(ctx, other, now, "campaign:launch", launchPayload); !errors.Is(err, store.ErrCampaignState) {
		t.Fatalf("other definition while launching: got %v, want ErrCampaignState", err)
	}

	// Half are sent, the launch ends, the campaign is paused.
	for _, id := range first[:3] {
		r, err := f.s.BeginCampaignSend(ctx, f.id, id, now, now.Add(-time.Minute))
		if err != nil || !r.Claimed {
			t.Fatalf("claim %s: got %+v, %v", id, r, err)
		}
		if err := f.s.RecordCampaignSend(ctx, f.id, id, store.CampaignSendOutcome{Status: store.CampaignSendSent, VendorRef: "m1"}, now); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.s.FinishCampaignLaunch(ctx, f.id, now); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.PauseCampaign(ctx, f.id, now); err != nil {
		t.Fatal(err)
	}

	// New leads arrive; the campaign is relaunched with another template.
	newer := f.leads(t, 5, true, false, now.Add(30*time.Second))
	res, err := f.s.LaunchCampaign(ctx, other, now.Add(time.Minute), "campaign:launch", launchPayload)
	if err != nil {
		t.Fatal(err)
	}
	if res.OutboxID == "" || res.Campaign.Status != store.CampaignLaunching || res.Campaign.Template != "otra" || res.Campaign.PausedAt != nil {
		t.Fatalf("relaunch: got %+v, want launching with the new template and a queued task", res)
	}
	pages := f.scan(t, 100, 4, now.Add(time.Minute))
	added := 0
	var batches []int
	for _, p := range pages {
		added += p.Added
		batches = append(batches, p.Batches...)
	}
	if added != len(newer) {
		t.Errorf("relaunch added %d recipients, want only the %d new leads", added, len(newer))
	}
	// The first launch cut 6 into batches 0 and 1; the new ones continue.
	if want := []int{2, 3}; !slices.Equal(batches, want) {
		t.Errorf("relaunch batches: got %v, want %v", batches, want)
	}
	c, err := f.s.Campaign(ctx, f.id)
	if err != nil {
		t.Fatal(err)
	}
	if c.Sends != (store.CampaignCounts{Sent: 3, Pending: 8}) || c.AudienceSize != 11 {
		t.Errorf("after relaunch: got %+v audience %d, want 3 sent (kept), 8 pending, audience 11", c.Sends, c.AudienceSize)
	}
	// The unique key holds whatever the SQL path.
	if _, err := f.conn.Exec(ctx, `insert into cepjobs.campaign_sends (campaign_id, lead_id, batch, created_at) values ($1, $2, 9, now())`, f.id, first[0]); err == nil {
		t.Error("second row for one recipient: got no error, want a unique violation")
	}
}

func TestBeginCampaignSendClaimsOnce(t *testing.T) {
	t.Parallel()
	f := campaignSetup(t)
	ctx := context.Background()
	now := time.Now()
	ids := f.leads(t, 3, true, false, now.Add(-time.Hour))
	if _, err := f.s.LaunchCampaign(ctx, f.def(), now, "campaign:launch", launchPayload); err != nil {
		t.Fatal(err)
	}
	f.scan(t, 10, 10, now)

	// Ten tasks race for one recipient: one wins.
	var claimed atomic.Int32
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			r, err := f.s.BeginCampaignSend(ctx, f.id, ids[0], now, now.Add(-time.Minute))
			if err != nil {
				t.Error(err)
				return
			}
			if r.Claimed {
				claimed.Add(1)
			} else if !r.InFlight {
				t.Errorf("loser: got %+v, want in flight", r)
			}
		})
	}
	wg.Wait()
	if n := claimed.Load(); n != 1 {
		t.Fatalf("claims: got %d, want 1", n)
	}
	// The worker that claimed it died: once its lease is over, it is
	// claimed again, and the attempt counted.
	later := now.Add(2 * time.Minute)
	r, err := f.s.BeginCampaignSend(ctx, f.id, ids[0], later, later.Add(-time.Minute))
	if err != nil || !r.Claimed || r.Attempts != 2 {
		t.Fatalf("after the lease: got %+v, %v; want claimed with 2 attempts", r, err)
	}
	if r.Email == "" || r.Template != "otono" || r.LeadCourse != f.course {
		t.Errorf("recipient: got %+v, want email, template and course", r)
	}
	// A transient outcome closes the attempt: the retry claims at once.
	if err := f.s.RecordCampaignSend(ctx, f.id, ids[0], store.CampaignSendOutcome{Error: "mandrill send template: HTTP 503"}, later); err != nil {
		t.Fatal(err)
	}
	if r, err := f.s.BeginCampaignSend(ctx, f.id, ids[0], later, later.Add(-time.Minute)); err != nil || !r.Claimed {
		t.Fatalf("after a transient error: got %+v, %v; want claimed", r, err)
	}
	if err := f.s.RecordCampaignSend(ctx, f.id, ids[0], store.CampaignSendOutcome{Status: store.CampaignSendSent}, later); err != nil {
		t.Fatal(err)
	}
	// Sent is final.
	if r, err := f.s.BeginCampaignSend(ctx, f.id, ids[0], later.Add(time.Hour), later.Add(time.Hour)); err != nil || r.Claimed || r.Status != store.CampaignSendSent {
		t.Errorf("sent recipient: got %+v, %v; want not claimed, sent", r, err)
	}

	// Erased since the launch: not claimed, said why.
	if _, err := f.conn.Exec(ctx, `update cepjobs.leads set erased_at = now() where id = $1`, ids[1]); err != nil {
		t.Fatal(err)
	}
	if r, err := f.s.BeginCampaignSend(ctx, f.id, ids[1], later, later); err != nil || r.Claimed || r.Ineligible != "erased" {
		t.Errorf("erased lead: got %+v, %v; want not claimed, ineligible: erased", r, err)
	}
	// Paused: nobody is claimed.
	if _, err := f.s.PauseCampaign(ctx, f.id, later); err != nil {
		t.Fatal(err)
	}
	if r, err := f.s.BeginCampaignSend(ctx, f.id, ids[2], later, later); err != nil || r.Claimed || r.CampaignStatus != store.CampaignPaused {
		t.Errorf("paused campaign: got %+v, %v; want not claimed", r, err)
	}
	// The bulk skip leaves in-flight rows alone and skips the erased one.
	n, err := f.s.SkipIneligibleCampaignSends(ctx, f.id, 0, later)
	if err != nil || n != 1 {
		t.Errorf("skip ineligible: got %d, %v; want 1", n, err)
	}
}

func TestCampaignStatusTransitions(t *testing.T) {
	t.Parallel()
	f := campaignSetup(t)
	ctx := context.Background()
	now := time.Now()

	if _, err := f.s.Campaign(ctx, f.id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown campaign: got %v, want ErrNotFound", err)
	}
	if _, err := f.s.PauseCampaign(ctx, f.id, now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("pause unknown: got %v, want ErrNotFound", err)
	}
	// An empty audience: the launch completes at once.
	if _, err := f.s.LaunchCampaign(ctx, f.def(), now, "campaign:launch", launchPayload); err != nil {
		t.Fatal(err)
	}
	// Resume while launching: nothing to do.
	if res, err := f.s.ResumeCampaign(ctx, f.id, now, "campaign:launch", launchPayload); err != nil || res.OutboxID != "" {
		t.Errorf("resume while launching: got %+v, %v; want nothing queued", res, err)
	}
	p, err := f.s.LaunchCampaignPage(ctx, f.id, 10, 5, now)
	if err != nil || !p.Done || p.Added != 0 {
		t.Fatalf("empty scan: got %+v, %v", p, err)
	}
	if status, err := f.s.FinishCampaignLaunch(ctx, f.id, now); err != nil || status != store.CampaignCompleted {
		t.Fatalf("finish empty launch: got %q, %v; want completed", status, err)
	}
	var se *store.CampaignStateError
	if _, err := f.s.PauseCampaign(ctx, f.id, now); !errors.As(err, &se) || se.Status != store.CampaignCompleted {
		t.Errorf("pause completed: got %v, want a state error naming completed", err)
	}
	if _, err := f.s.ResumeCampaign(ctx, f.id, now, "campaign:launch", launchPayload); !errors.Is(err, store.ErrCampaignState) {
		t.Errorf("resume completed: got %v, want ErrCampaignState", err)
	}
	c, err := f.s.Campaign(ctx, f.id)
	if err != nil || c.CompletedAt == nil {
		t.Errorf("completed campaign: got %+v, %v; want completed_at set", c, err)
	}

	// Relaunch of a completed campaign; then failed and resumed.
	if res, err := f.s.LaunchCampaign(ctx, f.def(), now, "campaign:launch", launchPayload); err != nil || res.OutboxID == "" || res.Campaign.CompletedAt != nil {
		t.Fatalf("relaunch completed: got %+v, %v; want launching, queued", res, err)
	}
	if status, err := f.s.FailCampaign(ctx, f.id, now); err != nil || status != store.CampaignFailed {
		t.Fatalf("fail: got %q, %v", status, err)
	}
	res, err := f.s.ResumeCampaign(ctx, f.id, now, "campaign:launch", launchPayload)
	if err != nil || res.OutboxID == "" || res.Campaign.Status != store.CampaignLaunching {
		t.Errorf("resume failed: got %+v, %v; want launching, queued", res, err)
	}
	if _, err := f.s.FailCampaign(ctx, "no-such-campaign", now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("fail unknown: got %v, want ErrNotFound", err)
	}
}

func TestAudienceWindow(t *testing.T) {
	t.Parallel()
	day := func(s string) *time.Time {
		tm, _ := time.Parse(time.RFC3339Nano, s)
		return &tm
	}
	for _, c := range []struct {
		a            store.Audience
		from, before *time.Time
		bad          bool
	}{
		{a: store.Audience{}},
		{a: store.Audience{From: "2026-11-01", To: "2026-11-30"}, from: day("2026-11-01T00:00:00Z"), before: day("2026-12-01T00:00:00Z")},
		{a: store.Audience{From: "2026-11-01T10:00:00+01:00", To: "2026-11-02T10:00:00Z"}, from: day("2026-11-01T09:00:00Z"), before: day("2026-11-02T10:00:00.000001Z")},
		{a: store.Audience{From: "2026-11-02", To: "2026-11-01"}, bad: true},
		{a: store.Audience{From: "yesterday"}, bad: true},
	} {
		from, before, err := c.a.Window()
		if c.bad {
			if err == nil {
				t.Errorf("%+v: got no error, want one", c.a)
			}
			continue
		}
		eq := func(a, b *time.Time) bool { return (a == nil) == (b == nil) && (a == nil || a.Equal(*b)) }
		if err != nil || !eq(from, c.from) || !eq(before, c.before) {
			t.Errorf("%+v: got [%v, %v) %v, want [%v, %v)", c.a, from, before, err, c.from, c.before)
		}
	}
}
