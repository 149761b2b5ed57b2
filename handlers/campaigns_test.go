package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"

	"github.com/cepcomunicacion/cepjobs/handlers"
	"github.com/cepcomunicacion/cepjobs/internal/mandrill"
	"github.com/cepcomunicacion/cepjobs/internal/ratelimit"
	"github.com/cepcomunicacion/cepjobs/internal/redisconn"
	"github.com/cepcomunicacion/cepjobs/internal/testenv"
	"github.com/cepcomunicacion/cepjobs/internal/vendortest"
	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// hookedSender wraps the real Mandrill client (talking to the vendortest
// stand-in) to act just before a given call: queue a vendor fault, pause
// the campaign.
type hookedSender struct {
	next  *mandrill.Client
	calls atomic.Int32
	mu    sync.Mutex
	hooks map[int]func()
}

func (h *hookedSender) at(n int, f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hooks[n] = f
}

func (h *hookedSender) SendTemplate(ctx context.Context, tm mandrill.TemplateMessage) (mandrill.SendResult, error) {
	n := int(h.calls.Add(1))
	h.mu.Lock()
	f := h.hooks[n]
	h.mu.Unlock()
	if f != nil {
		f()
	}
	return h.next.SendTemplate(ctx, tm)
}

type testClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

type campaignBundle struct {
	store     *store.Store
	conn      *pgx.Conn
	mux       *asynq.ServeMux
	inspector *asynq.Inspector
	mandrill  *vendortest.Server
	sender    *hookedSender
	clock     *testClock
	course    string
	id        string
	done      map[string]bool
}

var campaignSeq atomic.Int64

// campaignSetup wires the campaign handlers to the real store and Redis
// (its own DB index) and to the Mandrill stand-in; without mandrill, as a
// worker with no MANDRILL_API_KEY.
func campaignSetup(t *testing.T, withMandrill bool, pageSize, batchSize int) *campaignBundle {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	opt, _ := redisconn.Parse(testenv.RedisURL(t, testenv.RedisDBCampaigns))
	rc := redisconn.Client(opt)
	t.Cleanup(func() { rc.Close() })
	n := campaignSeq.Add(1)
	b := &campaignBundle{
		store: st, conn: conn, inspector: asynq.NewInspectorFromRedisClient(rc), clock: &testClock{},
		course: fmt.Sprintf("curso-h%d-%d", n, time.Now().UnixNano()%1e9),
		id:     fmt.Sprintf("hc%d-%d", n, time.Now().UnixNano()%1e9),
		done:   map[string]bool{},
	}
	d := handlers.CampaignDeps{
		Store: st, Queue: asynq.NewClientFromRedisClient(rc), Throttle: ratelimit.New(rc, map[string]float64{"mandrill": 1000}),
		Now: b.clock.Now, PageSize: pageSize, BatchSize: batchSize,
	}
	if withMandrill {
		b.mandrill = vendortest.Mandrill(t, "md-key")
		c, err := mandrill.New(mandrill.Config{APIKey: "md-key", From: "CEP Formación <no-reply@cepcomunicacion.com>",
			BaseURL: b.mandrill.URL, DefaultTemplate: "welcome"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		b.sender = &hookedSender{next: c, hooks: map[int]func(){}}
		d.Mandrill = b.sender
	}
	b.mux = asynq.NewServeMux()
	handlers.NewCampaigns(d).Register(b.mux)
	return b
}

type testLead struct {
	id, email string
}

// leads inserts n leads of the bundle's course, received an hour ago, and
// returns them in id order.
func (b *campaignBundle) leads(t *testing.T, n int, marketing, erased bool) []testLead {
	t.Helper()
	rows, err := b.conn.Query(context.Background(), `
		insert into cepjobs.leads (id, first_name, last_name, email, email_normalized, course, source, consent_privacy,
			consent_marketing, consent_text_version, received_at, submitted_by, status, status_changed_at, erased_at)
		select gen_random_uuid(), 'Ana', 'García', e, e, $1::text, 'web-form', true, $2::bool, 'v1', now() - interval '1 hour',
			'test', 'completed', now(), case when $3::bool then now() end
		from (select 'h' || i || '.' || md5(random()::text) || '@example.com' as e from generate_series(1, $4::int) i) x
		returning id::text, email`, b.course, marketing, erased, n)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (testLead, error) {
		var l testLead
		return l, r.Scan(&l.id, &l.email)
	})
	if err != nil {
		t.Fatal(err)
	}
	// Sends go in id order.
	slices.SortFunc(out, func(a, c testLead) int { return strings.Compare(a.id, c.id) })
	return out
}

func (b *campaignBundle) def() store.CampaignDefinition {
	return store.CampaignDefinition{ID: b.id, Name: "Otoño", Course: "tecnico-marketing-digital", Template: "otono-2026",
		Audience: store.Audience{Course: b.course}, LaunchedBy: "cms"}
}

func launchPayload(id, run string) ([]byte, error) {
	return json.Marshal(tasks.CampaignLaunch{CampaignID: id, Run: run})
}

// launch stores the campaign and returns its campaign:launch task, as the
// API would queue it.
func (b *campaignBundle) launch(t *testing.T) *asynq.Task {
	t.Helper()
	res, err := b.store.LaunchCampaign(context.Background(), b.def(), b.clock.Now(), tasks.TypeCampaignLaunch, launchPayload)
	if err != nil {
		t.Fatal(err)
	}
	return asynq.NewTask(tasks.TypeCampaignLaunch, res.Payload)
}

func (b *campaignBundle) resume(t *testing.T) *asynq.Task {
	t.Helper()
	res, err := b.store.ResumeCampaign(context.Background(), b.id, b.clock.Now(), tasks.TypeCampaignLaunch, launchPayload)
	if err != nil {
		t.Fatal(err)
	}
	if res.OutboxID == "" {
		t.Fatal("resume queued nothing")
	}
	return asynq.NewTask(tasks.TypeCampaignLaunch, res.Payload)
}

func (b *campaignBundle) queued(t *testing.T) []*asynq.TaskInfo {
	t.Helper()
	ts, err := b.inspector.ListPendingTasks(tasks.QueueDefault, asynq.PageSize(1000))
	if err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
		t.Fatal(err)
	}
	return ts
}

// runQueued processes, as a worker would, every queued task not processed
// yet, until none is left, and returns each one's error by TaskID. Tasks
// stay in Redis, so their TaskIDs keep refusing duplicates.
func (b *campaignBundle) runQueued(t *testing.T) map[string]error {
	t.Helper()
	errs := map[string]error{}
	for {
		var todo []*asynq.TaskInfo
		for _, ti := range b.queued(t) {
			if !b.done[ti.ID] {
				todo = append(todo, ti)
			}
		}
		if len(todo) == 0 {
			return errs
		}
		for _, ti := range todo {
			b.done[ti.ID] = true
			errs[ti.ID] = b.mux.ProcessTask(context.Background(), asynq.NewTask(ti.Type, ti.Payload))
		}
	}
}

func (b *campaignBundle) campaign(t *testing.T) store.Campaign {
	t.Helper()
	c, err := b.store.Campaign(context.Background(), b.id)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func batchTask(id string, batch int, run string) *asynq.Task {
	task, _ := tasks.NewCampaignSendBatch(tasks.CampaignSendBatch{CampaignID: id, Batch: batch, Run: run})
	return task
}

func runOf(t *testing.T, task *asynq.Task) string {
	t.Helper()
	p, err := tasks.Decode[tasks.CampaignLaunch](task)
	if err != nil {
		t.Fatal(err)
	}
	return p.Run
}

// sentOnce checks that every lead got exactly one email and nobody else
// any.
func sentOnce(t *testing.T, v *vendortest.Server, want []testLead, none ...[]testLead) {
	t.Helper()
	calls := v.Calls()
	for _, l := range want {
		if n := calls[l.email]; n != 1 {
			t.Errorf("lead %s: %d emails, want 1", l.id, n)
		}
	}
	for _, ls := range none {
		for _, l := range ls {
			if n := calls[l.email]; n != 0 {
				t.Errorf("excluded lead %s: %d emails, want none", l.id, n)
			}
		}
	}
}

func TestCampaignLaunchedTwiceSendsEachRecipientOnce(t *testing.T) {
	b := campaignSetup(t, true, 100, 30)
	ctx := context.Background()
	want := b.leads(t, 250, true, false)
	noConsent := b.leads(t, 5, false, false)
	erased := b.leads(t, 5, true, true)

	launch := b.launch(t)
	run := runOf(t, launch)
	// The launch runs twice (asynq retry after a crash): the second run
	// queues nothing new.
	for range 2 {
		if err := b.mux.ProcessTask(ctx, launch); err != nil {
			t.Fatal(err)
		}
	}
	queued := b.queued(t)
	var ids []string
	for _, ti := range queued {
		ids = append(ids, ti.ID)
	}
	slices.Sort(ids)
	// Pages of 100, 100, 50 cut in batches of 30: 4 + 4 + 2.
	if len(ids) != 10 {
		t.Fatalf("queued batches: got %d %v, want 10", len(ids), ids)
	}
	if want := "campaign:send-batch:" + b.id + ":0:" + run; !slices.Contains(ids, want) {
		t.Errorf("task ids %v lack %s", ids, want)
	}
	for _, ti := range queued {
		if strings.Contains(string(ti.Payload), "@") {
			t.Errorf("payload %s holds personal data", ti.Payload)
		}
	}
	if c := b.campaign(t); c.Status != store.CampaignSending || c.AudienceSize != 250 || c.Batches != 10 {
		t.Errorf("after launch: got status %s audience %d batches %d, want sending, 250, 10", c.Status, c.AudienceSize, c.Batches)
	}

	for id, err := range b.runQueued(t) {
		if err != nil {
			t.Errorf("task %s: %v", id, err)
		}
	}
	sentOnce(t, b.mandrill, want, noConsent, erased)
	c := b.campaign(t)
	if c.Status != store.CampaignCompleted || c.Sends != (store.CampaignCounts{Sent: 250}) || c.CompletedAt == nil {
		t.Errorf("after the batches: got %s %+v, want completed with 250 sent", c.Status, c.Sends)
	}

	// A batch delivered again, and a relaunch of the completed campaign:
	// nobody gets a second email.
	if err := b.mux.ProcessTask(ctx, batchTask(b.id, 3, run)); err != nil {
		t.Fatal(err)
	}
	relaunch := b.launch(t)
	if err := b.mux.ProcessTask(ctx, relaunch); err != nil {
		t.Fatal(err)
	}
	b.runQueued(t)
	if got := b.mandrill.Total(); got != 250 {
		t.Errorf("emails after a duplicate batch and a relaunch: got %d, want 250", got)
	}
	if c := b.campaign(t); c.Status != store.CampaignCompleted {
		t.Errorf("relaunched with nobody new: got %s, want completed", c.Status)
	}

	// What went to Mandrill: the template, merge vars, tag and ids.
	body := b.mandrill.Bodies()[0]
	msg := body["message"].(map[string]any)
	if body["template_name"] != "otono-2026" {
		t.Errorf("template: got %v", body["template_name"])
	}
	if tags := fmt.Sprint(msg["tags"]); tags != "[campaign:"+b.id+"]" {
		t.Errorf("tags: got %s", tags)
	}
	md := msg["metadata"].(map[string]any)
	if md["campaign_id"] != b.id || md["lead_id"] == "" {
		t.Errorf("metadata: got %v", md)
	}
	if vars := fmt.Sprint(msg["global_merge_vars"]); vars != "[map[content:tecnico-marketing-digital name:COURSE] map[content:Ana name:FNAME]]" {
		t.Errorf("merge vars: got %s", vars)
	}
}

func TestCampaignPauseAndResume(t *testing.T) {
	b := campaignSetup(t, true, 100, 10)
	ctx := context.Background()
	leads := b.leads(t, 60, true, false)
	// Paused by a person while the 15th email is on its way.
	b.sender.at(15, func() {
		if _, err := b.store.PauseCampaign(ctx, b.id, b.clock.Now()); err != nil {
			t.Error(err)
		}
	})
	if err := b.mux.ProcessTask(ctx, b.launch(t)); err != nil {
		t.Fatal(err)
	}
	for id, err := range b.runQueued(t) {
		if err != nil {
			t.Errorf("task %s: %v", id, err)
		}
	}
	c := b.campaign(t)
	if c.Status != store.CampaignPaused || c.Sends.Sent != 15 || c.Sends.Pending != 45 || c.PausedAt == nil {
		t.Fatalf("paused: got %s %+v, want paused with 15 sent (the one in flight included), 45 pending", c.Status, c.Sends)
	}
	// A batch that comes round while paused sends nothing.
	if err := b.mux.ProcessTask(ctx, batchTask(b.id, 5, "0195f3a2-0000-7000-8000-000000000000")); err != nil {
		t.Fatal(err)
	}
	if got := b.mandrill.Total(); got != 15 {
		t.Fatalf("emails while paused: got %d, want 15", got)
	}

	// Resume: the batches whose tasks ended while paused are queued again
	// under the new run, and finish.
	if err := b.mux.ProcessTask(ctx, b.resume(t)); err != nil {
		t.Fatal(err)
	}
	for id, err := range b.runQueued(t) {
		if err != nil {
			t.Errorf("task %s: %v", id, err)
		}
	}
	sentOnce(t, b.mandrill, leads)
	if c := b.campaign(t); c.Status != store.CampaignCompleted || c.Sends != (store.CampaignCounts{Sent: 60}) {
		t.Errorf("resumed: got %s %+v, want completed with 60 sent", c.Status, c.Sends)
	}
}

func TestCampaignRejectedRecipientAndTransientError(t *testing.T) {
	b := campaignSetup(t, true, 100, 100)
	ctx := context.Background()
	leads := b.leads(t, 20, true, false)
	b.sender.at(3, func() {
		b.mandrill.Fail(vendortest.Fault{Status: 200, Times: 1,
			Body: `[{"email":"x@example.com","status":"rejected","reject_reason":"hard-bounce","_id":"r1"}]`})
	})
	b.sender.at(7, func() {
		b.mandrill.Fail(vendortest.Fault{Status: 503, Times: 1, Header: http.Header{"Retry-After": {"1"}},
			Body: `{"status":"error","code":-1,"name":"ServiceUnavailable","message":"busy"}`})
	})
	launch := b.launch(t)
	if err := b.mux.ProcessTask(ctx, launch); err != nil {
		t.Fatal(err)
	}
	batch := batchTask(b.id, 0, runOf(t, launch))

	// The rejected recipient fails and the batch goes on; the 503 stops it
	// for asynq to retry, counted as a failure of the attempt.
	err := b.mux.ProcessTask(ctx, batch)
	if err == nil || errors.Is(err, asynq.SkipRetry) || !handlers.IsFailure(err) {
		t.Fatalf("batch with a 503: got %v, want a retryable failure", err)
	}
	if d := handlers.RetryDelay(1, err, batch); d < time.Second || d > 2*time.Second {
		t.Errorf("retry delay: got %s, want Mandrill's Retry-After (1 s) and a little jitter", d)
	}
	c := b.campaign(t)
	if c.Sends != (store.CampaignCounts{Sent: 5, Failed: 1, Pending: 14}) || c.Status != store.CampaignSending {
		t.Fatalf("after the 503: got %s %+v, want sending with 5 sent, 1 failed, 14 pending", c.Status, c.Sends)
	}

	// The retry sends the rest, the one that met the 503 included, and
	// nobody twice.
	if err := b.mux.ProcessTask(ctx, batch); err != nil {
		t.Fatal(err)
	}
	rejected := leads[2]
	var rest []testLead
	for _, l := range leads {
		if l != rejected {
			rest = append(rest, l)
		}
	}
	sentOnce(t, b.mandrill, rest, []testLead{rejected})
	var status, reason, lastErr string
	var attempts int
	if err := b.conn.QueryRow(ctx, `select status, reason, last_error, attempts from cepjobs.campaign_sends where campaign_id = $1 and lead_id = $2`,
		b.id, rejected.id).Scan(&status, &reason, &lastErr, &attempts); err != nil {
		t.Fatal(err)
	}
	if status != "failed" || attempts != 1 || !strings.Contains(lastErr, "rejected") || strings.Contains(lastErr, "@") {
		t.Errorf("rejected recipient: got %s (%s) %q after %d attempts, want failed, rejected, no address", status, reason, lastErr, attempts)
	}
	if c := b.campaign(t); c.Status != store.CampaignCompleted || c.Sends != (store.CampaignCounts{Sent: 19, Failed: 1}) {
		t.Errorf("done: got %s %+v, want completed with 19 sent and 1 failed", c.Status, c.Sends)
	}
}

func TestCampaignAttemptLeftInFlightIsRetriedAfterItsLease(t *testing.T) {
	b := campaignSetup(t, true, 100, 100)
	ctx := context.Background()
	leads := b.leads(t, 5, true, false)
	launch := b.launch(t)
	if err := b.mux.ProcessTask(ctx, launch); err != nil {
		t.Fatal(err)
	}
	// A worker recorded its intent for the first recipient and died.
	now := b.clock.Now()
	first := leads[0]
	if r, err := b.store.BeginCampaignSend(ctx, b.id, first.id, now, now.Add(-handlers.CampaignSendLease)); err != nil || !r.Claimed {
		t.Fatalf("claim: %+v, %v", r, err)
	}
	batch := batchTask(b.id, 0, runOf(t, launch))
	err := b.mux.ProcessTask(ctx, batch)
	if err == nil || handlers.IsFailure(err) {
		t.Fatalf("batch with a recipient in flight: got %v, want a throttled-style error", err)
	}
	if d := handlers.RetryDelay(0, err, batch); d < handlers.CampaignSendLease {
		t.Errorf("comes back in %s, want at least the lease", d)
	}
	if got := b.mandrill.Total(); got != 4 {
		t.Errorf("emails: got %d, want the 4 not in flight", got)
	}
	// Once the lease is over, the recipient left in flight is sent.
	b.clock.advance(handlers.CampaignSendLease + time.Second)
	if err := b.mux.ProcessTask(ctx, batch); err != nil {
		t.Fatal(err)
	}
	sentOnce(t, b.mandrill, leads)
	var attempts int
	_ = b.conn.QueryRow(ctx, `select attempts from cepjobs.campaign_sends where campaign_id = $1 and lead_id = $2`, b.id, first.id).Scan(&attempts)
	if attempts != 2 {
		t.Errorf("attempts of the recipient left in flight: got %d, want 2", attempts)
	}
	if c := b.campaign(t); c.Status != store.CampaignCompleted {
		t.Errorf("status: got %s, want completed", c.Status)
	}
}

func TestCampaignSkipsLeadsErasedOrWithdrawnSinceLaunch(t *testing.T) {
	b := campaignSetup(t, true, 100, 100)
	ctx := context.Background()
	leads := b.leads(t, 6, true, false)
	launch := b.launch(t)
	if err := b.mux.ProcessTask(ctx, launch); err != nil {
		t.Fatal(err)
	}
	if _, err := b.conn.Exec(ctx, `update cepjobs.leads set erased_at = now(), email = 'erased@invalid' where id = $1`, leads[0].id); err != nil {
		t.Fatal(err)
	}
	if _, err := b.conn.Exec(ctx, `update cepjobs.leads set consent_marketing = false where id = $1`, leads[1].id); err != nil {
		t.Fatal(err)
	}
	if err := b.mux.ProcessTask(ctx, batchTask(b.id, 0, runOf(t, launch))); err != nil {
		t.Fatal(err)
	}
	sentOnce(t, b.mandrill, leads[2:], leads[:2])
	rows, _ := b.conn.Query(ctx, `select reason from cepjobs.campaign_sends where campaign_id = $1 and status = 'skipped' order by reason`, b.id)
	reasons, _ := pgx.CollectRows(rows, pgx.RowTo[string])
	if want := []string{"erased", "no marketing consent"}; !slices.Equal(reasons, want) {
		t.Errorf("skipped: got %v, want %v", reasons, want)
	}
	if c := b.campaign(t); c.Status != store.CampaignCompleted || c.Sends != (store.CampaignCounts{Sent: 4, Skipped: 2}) {
		t.Errorf("done: got %s %+v, want completed with 4 sent, 2 skipped", c.Status, c.Sends)
	}
}

func TestCampaignStopsOnAnErrorThatWouldFailEveryone(t *testing.T) {
	b := campaignSetup(t, true, 100, 5)
	ctx := context.Background()
	leads := b.leads(t, 10, true, false)
	b.sender.at(2, func() {
		b.mandrill.Fail(vendortest.Fault{Status: 500, Times: 1,
			Body: `{"status":"error","code":5,"name":"Unknown_Template","message":"No such template \"otono-2026\""}`})
	})
	if err := b.mux.ProcessTask(ctx, b.launch(t)); err != nil {
		t.Fatal(err)
	}
	errs := b.runQueued(t)
	skipped := 0
	for _, err := range errs {
		if errors.Is(err, asynq.SkipRetry) {
			skipped++
			if !strings.Contains(err.Error(), "Unknown_Template") {
				t.Errorf("error: got %v, want the vendor's reason", err)
			}
		}
	}
	if skipped != 1 {
		t.Errorf("batches archived: got %d, want 1 (%v)", skipped, errs)
	}
	c := b.campaign(t)
	if c.Status != store.CampaignFailed || c.Sends.Failed != 0 || c.Sends.Sent != 1 {
		t.Fatalf("after Unknown_Template: got %s %+v, want failed with 1 sent and nobody marked failed", c.Status, c.Sends)
	}
	// Fixed in Mandrill; resume sends the rest.
	if err := b.mux.ProcessTask(ctx, b.resume(t)); err != nil {
		t.Fatal(err)
	}
	b.runQueued(t)
	sentOnce(t, b.mandrill, leads)
	if c := b.campaign(t); c.Status != store.CampaignCompleted {
		t.Errorf("resumed: got %s, want completed", c.Status)
	}
}

func TestCampaignWithoutMandrillFailsAndQueuesNothing(t *testing.T) {
	b := campaignSetup(t, false, 100, 10)
	ctx := context.Background()
	b.leads(t, 3, true, false)
	err := b.mux.ProcessTask(ctx, b.launch(t))
	if !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "MANDRILL_API_KEY") {
		t.Errorf("launch without Mandrill: got %v, want a non-retryable error naming MANDRILL_API_KEY", err)
	}
	if n := len(b.queued(t)); n != 0 {
		t.Errorf("queued: got %d tasks, want none", n)
	}
	if c := b.campaign(t); c.Status != store.CampaignFailed || c.AudienceSize != 0 {
		t.Errorf("campaign: got %s with %d recipients, want failed with none", c.Status, c.AudienceSize)
	}
}

func TestCampaignPayloads(t *testing.T) {
	const run = "0195f3a2-0000-7000-8000-000000000000"
	for name, payload := range map[string]string{
		"colon in id":   `{"campaign_id":"a:b","run":"` + run + `"}`,
		"no run":        `{"campaign_id":"otono"}`,
		"unknown field": `{"campaign_id":"otono","run":"` + run + `","email":"a@b.c"}`,
	} {
		if _, err := tasks.Decode[tasks.CampaignLaunch](asynq.NewTask(tasks.TypeCampaignLaunch, []byte(payload))); !errors.Is(err, asynq.SkipRetry) {
			t.Errorf("%s: got %v, want SkipRetry", name, err)
		}
	}
	task, err := tasks.NewCampaignSendBatch(tasks.CampaignSendBatch{CampaignID: "otono-2026", Batch: 7, Run: run})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(task.Payload()), `{"campaign_id":"otono-2026","batch":7,"run":"`+run+`"}`; got != want {
		t.Errorf("payload: got %s, want %s", got, want)
	}
	if _, err := tasks.NewCampaignSendBatch(tasks.CampaignSendBatch{CampaignID: strings.Repeat("a", 42), Run: run}); err == nil {
		t.Error("campaign id of 42 characters: got no error, want one (the Mandrill tag allows 41)")
	}
}
