package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cepcomunicacion/cepjobs/handlers"
	"github.com/cepcomunicacion/cepjobs/internal/mailchimp"
	"github.com/cepcomunicacion/cepjobs/internal/ratelimit"
	"github.com/cepcomunicacion/cepjobs/internal/redisconn"
	"github.com/cepcomunicacion/cepjobs/internal/testenv"
	"github.com/cepcomunicacion/cepjobs/internal/vendor"
	"github.com/cepcomunicacion/cepjobs/internal/vendortest"
	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

var dbURL string

func TestMain(m *testing.M) {
	code := testenv.RunWithDatabase(m, "handlers", &dbURL, migrate)
	_ = testenv.FlushRedisDB(testenv.RedisDBHandlers) // what the parallel report tests left
	os.Exit(code)
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

// fakeChannel is a consumer-side stand-in for a vendor channel; the real
// clients are tested against vendor fakes in their own packages and in the
// end-to-end test.
type fakeChannel struct {
	name  tasks.Channel
	skip  func(store.LeadDetail) string
	mu    sync.Mutex
	calls int
	errs  []error // returned in order, then nil
}

func (f *fakeChannel) Name() tasks.Channel { return f.name }
func (f *fakeChannel) RateKey() string     { return string(f.name) }
func (f *fakeChannel) Skip(l store.LeadDetail) string {
	if f.skip != nil {
		return f.skip(l)
	}
	return ""
}
func (f *fakeChannel) Deliver(ctx context.Context, l store.LeadDetail, prev store.Delivery, progress func(json.RawMessage) error) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		return "", err
	}
	return fmt.Sprintf("%s-ref-%d", f.name, f.calls), nil
}

type bundle struct {
	store     *store.Store
	mux       *asynq.ServeMux
	inspector *asynq.Inspector
	channels  map[tasks.Channel]*fakeChannel
}

func setup(t *testing.T, channels ...*fakeChannel) *bundle {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	opt, _ := redisconn.Parse(testenv.RedisURL(t, testenv.RedisDBHandlers))
	rc := redisconn.Client(opt)
	t.Cleanup(func() { rc.Close() })
	b := &bundle{store: st, inspector: asynq.NewInspectorFromRedisClient(rc), channels: map[tasks.Channel]*fakeChannel{}}
	var chs []handlers.Channel
	for _, c := range channels {
		chs = append(chs, c)
		b.channels[c.name] = c
	}
	b.mux = handlers.NewAutomation(handlers.AutomationDeps{
		Store: st, Queue: asynq.NewClientFromRedisClient(rc), Throttle: ratelimit.New(rc, nil),
		Channels: chs, Off: map[tasks.Channel]string{tasks.ChannelMeta: "not configured: set META_PIXEL_ID and META_ACCESS_TOKEN"},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: handlers.NewMetrics(prometheus.NewRegistry()),
	})
	return b
}

func (b *bundle) newLead(t *testing.T, marketing bool) string {
	t.Helper()
	l := store.NewLead{FirstName: "Ana", Email: fmt.Sprintf("h.%d@example.com", time.Now().UnixNano()), Course: "curso", Source: "web-form",
		ConsentPrivacy: true, ConsentMarketing: marketing, ConsentTextVersion: "v1", ClientIP: netip.MustParseAddr("203.0.113.7"), SubmittedBy: "test"}
	res, err := b.store.SubmitLead(context.Background(), l, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return res.LeadID
}

func (b *bundle) process(t *testing.T, leadID string) error {
	task, _ := tasks.NewLeadProcess(tasks.LeadProcess{LeadID: leadID}, "x")
	return b.mux.ProcessTask(context.Background(), task)
}

func (b *bundle) deliver(t *testing.T, leadID string, ch tasks.Channel) error {
	task, _ := tasks.NewLeadDeliver(tasks.LeadDeliver{LeadID: leadID, Channel: ch})
	return b.mux.ProcessTask(context.Background(), task)
}

func (b *bundle) status(t *testing.T, leadID string) (string, map[string]store.Delivery) {
	t.Helper()
	ls, err := b.store.LeadStatus(context.Background(), leadID)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]store.Delivery{}
	for _, d := range ls.Deliveries {
		m[d.Channel] = d
	}
	return ls.Status, m
}

func marketingOnly(l store.LeadDetail) string {
	if !l.ConsentMarketing {
		return "no marketing consent"
	}
	return ""
}

func TestFanOutPlansEveryChannelOnce(t *testing.T) {
	b := setup(t,
		&fakeChannel{name: tasks.ChannelMailchimp, skip: marketingOnly},
		&fakeChannel{name: tasks.ChannelWelcomeEmail},
		&fakeChannel{name: tasks.ChannelWhatsApp})
	id := b.newLead(t, false)
	if err := b.process(t, id); err != nil {
		t.Fatal(err)
	}
	status, ds := b.status(t, id)
	if status != store.LeadProcessing {
		t.Errorf("lead status: got %s, want processing", status)
	}
	want := map[string]string{"mailchimp": "skipped", "meta": "skipped", "welcome_email": "pending", "whatsapp": "pending"}
	for ch, st := range want {
		if ds[ch].Status != st {
			t.Errorf("%s: got %s, want %s", ch, ds[ch].Status, st)
		}
	}
	if ds["mailchimp"].Reason != "no marketing consent" || ds["meta"].Reason == "" {
		t.Errorf("skip reasons: got %q and %q", ds["mailchimp"].Reason, ds["meta"].Reason)
	}
	pending, err := b.inspector.ListPendingTasks(tasks.QueueCritical)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, p := range pending {
		ids[p.ID] = true
	}
	for _, ch := range []string{"welcome_email", "whatsapp"} {
		if !ids["lead:deliver:"+id+":"+ch] {
			t.Errorf("no lead:deliver task for %s (have %v)", ch, ids)
		}
	}
	// A re-run (crash, duplicate task) fans out nothing twice.
	if err := b.process(t, id); err != nil {
		t.Fatal(err)
	}
	again, _ := b.inspector.ListPendingTasks(tasks.QueueCritical)
	if len(again) != len(pending) {
		t.Errorf("tasks after a re-run: got %d, want %d", len(again), len(pending))
	}
}

func TestDeliveriesSettleTheLead(t *testing.T) {
	transient := &vendor.Error{Vendor: "x", Op: "send", Status: 503}
	permanent := &vendor.Error{Vendor: "x", Op: "send", Status: 400, Permanent: true}
	email := &fakeChannel{name: tasks.ChannelWelcomeEmail, errs: []error{transient}}
	wa := &fakeChannel{name: tasks.ChannelWhatsApp, errs: []error{permanent}}
	b := setup(t, email, wa)
	id := b.newLead(t, true)
	if err := b.process(t, id); err != nil {
		t.Fatal(err)
	}

	// Transient: stays pending, error returned for asynq to retry.
	err := b.deliver(t, id, tasks.ChannelWelcomeEmail)
	if err == nil || errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("transient failure: got %v, want a retryable error", err)
	}
	_, ds := b.status(t, id)
	if d := ds["welcome_email"]; d.Status != "pending" || d.Attempts != 1 || d.LastError == "" {
		t.Errorf("after a transient failure: got %+v", d)
	}
	// Then success.
	if err := b.deliver(t, id, tasks.ChannelWelcomeEmail); err != nil {
		t.Fatal(err)
	}
	// Permanent: failed, SkipRetry.
	if err := b.deliver(t, id, tasks.ChannelWhatsApp); !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("permanent failure: got %v, want SkipRetry", err)
	}
	status, ds := b.status(t, id)
	if ds["welcome_email"].Status != "delivered" || ds["welcome_email"].VendorRef == "" || ds["whatsapp"].Status != "failed" {
		t.Errorf("deliveries: got %+v", ds)
	}
	if status != store.LeadPartial {
		t.Errorf("lead status: got %s, want partial (one delivered, one failed)", status)
	}
	// A duplicate task for a settled channel calls nobody.
	before := email.calls
	if err := b.deliver(t, id, tasks.ChannelWelcomeEmail); err != nil {
		t.Fatal(err)
	}
	if email.calls != before {
		t.Errorf("settled channel called again: %d calls, want %d", email.calls, before)
	}
}

func TestAllSkippedCompletes(t *testing.T) {
	b := setup(t) // no channel configured at all
	id := b.newLead(t, true)
	if err := b.process(t, id); err != nil {
		t.Fatal(err)
	}
	status, ds := b.status(t, id)
	if status != store.LeadCompleted || len(ds) != 4 {
		t.Errorf("got %s with %d deliveries, want completed with 4 skipped", status, len(ds))
	}
	for ch, d := range ds {
		if d.Status != "skipped" || d.Reason == "" {
			t.Errorf("%s: got %+v, want skipped with a reason", ch, d)
		}
	}
}

func TestMalformedAndMissing(t *testing.T) {
	b := setup(t)
	bad := asynq.NewTask(tasks.TypeLeadDeliver, []byte(`{"lead_id":"x","channel":"fax"}`))
	if err := b.mux.ProcessTask(context.Background(), bad); !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("malformed payload: got %v, want SkipRetry", err)
	}
	if err := b.process(t, "0b7f4a4e-8f0e-4c1b-9d7a-3c2f1e0d9b8a"); !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("unknown lead: got %v, want SkipRetry", err)
	}
}

func TestRetryPolicy(t *testing.T) {
	th := &ratelimit.Throttled{Key: "whatsapp", RetryAfter: 3 * time.Second}
	if handlers.IsFailure(th) || handlers.IsFailure(&vendor.Error{Throttled: true}) {
		t.Error("throttling counted as a failure")
	}
	if !handlers.IsFailure(errors.New("boom")) {
		t.Error("a plain error is not a failure")
	}
	if d := handlers.RetryDelay(0, th, nil); d < 3*time.Second || d > 4*time.Second {
		t.Errorf("delay after throttling: got %s, want about 3s", d)
	}
	if d := handlers.RetryDelay(0, &vendor.Error{RetryAfter: 10 * time.Second}, nil); d < 10*time.Second || d > 12*time.Second {
		t.Errorf("delay honouring Retry-After: got %s", d)
	}
	for n, max := range map[int]time.Duration{0: 2 * time.Second, 3: 16 * time.Second, 30: time.Hour} {
		if d := handlers.RetryDelay(n, errors.New("x"), nil); d < max/2 || d > max {
			t.Errorf("backoff after %d retries: got %s, want between %s and %s", n, d, max/2, max)
		}
	}
}

type fakeEmail struct {
	mu    sync.Mutex
	sent  []string
	errs  []error
	calls int
}

func (f *fakeEmail) RateKey() string { return "smtp" }
func (f *fakeEmail) SendEmail(_ context.Context, e store.Email) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		return "", err
	}
	f.sent = append(f.sent, e.ToEmail)
	return "msg-" + e.ID, nil
}

func TestEmailSendOnce(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	opt, _ := redisconn.Parse(testenv.RedisURL(t, testenv.RedisDBHandlers))
	rc := redisconn.Client(opt)
	defer rc.Close()
	sender := &fakeEmail{errs: []error{&vendor.Error{Vendor: "smtp", Op: "send", Code: "451"}}}
	mux := handlers.NewAutomation(handlers.AutomationDeps{
		Store: st, Queue: asynq.NewClientFromRedisClient(rc), Throttle: ratelimit.New(rc, nil), Email: sender,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: handlers.NewMetrics(prometheus.NewRegistry()),
	})
	queue := func(to string) string {
		id, _, err := st.QueueEmail(ctx, store.Email{ToEmail: to, Subject: "Hola", Text: "Texto"}, time.Now(), tasks.TypeEmailSend,
			func(id string) ([]byte, error) { return json.Marshal(tasks.EmailSend{EmailID: id}) })
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	send := func(id string) error {
		task, _ := tasks.NewEmailSend(tasks.EmailSend{EmailID: id}, "x")
		return mux.ProcessTask(ctx, task)
	}
	id := queue("ops@example.com")
	if err := send(id); err == nil || errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("transient failure: got %v, want a retryable error", err)
	}
	for range 2 { // the retry, then a duplicate task
		if err := send(id); err != nil {
			t.Fatal(err)
		}
	}
	if len(sender.sent) != 1 || sender.calls != 2 {
		t.Errorf("sent %v in %d calls, want one message in two calls (one transient failure)", sender.sent, sender.calls)
	}
	sender.errs = []error{&vendor.Error{Vendor: "smtp", Op: "send", Code: "550", Permanent: true}}
	if err := send(queue("nobody@example.com")); !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("permanent failure: got %v, want SkipRetry", err)
	}
}

func TestEraseLeadDeletesMailchimpMemberThenData(t *testing.T) {
	mc := vendortest.Mailchimp(t, "mc-key-us7", "list-1")
	client, err := mailchimp.New(mailchimp.Config{APIKey: "mc-key-us7", ListID: "list-1", BaseURL: mc.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	opt, _ := redisconn.Parse(testenv.RedisURL(t, testenv.RedisDBHandlers))
	rc := redisconn.Client(opt)
	defer rc.Close()
	mux := handlers.NewAutomation(handlers.AutomationDeps{
		Store: st, Queue: asynq.NewClientFromRedisClient(rc), Throttle: ratelimit.New(rc, nil), Eraser: client,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: handlers.NewMetrics(prometheus.NewRegistry()),
	})
	b := &bundle{store: st}
	id := b.newLead(t, true)
	l, _ := st.LeadDetail(ctx, id)
	if _, err := st.RequestErasure(ctx, id, "cms", time.Now(), tasks.TypeLeadErase, func(string) ([]byte, error) { return []byte("{}"), nil }); err != nil {
		t.Fatal(err)
	}
	task := asynq.NewTask(tasks.TypeLeadErase, []byte(`{"lead_id":"`+id+`"}`))
	for range 2 { // the second run (a duplicate task) does nothing more
		if err := mux.ProcessTask(ctx, task); err != nil {
			t.Fatal(err)
		}
	}
	if n := mc.Calls()["delete:"+mailchimp.SubscriberHash(l.Email)]; n != 1 {
		t.Errorf("mailchimp delete-permanent calls: got %d, want 1", n)
	}
	after, _ := st.LeadDetail(ctx, id)
	if after.Email != "" || after.FirstName != "" || after.ClientIP != nil {
		t.Errorf("lead after erasure: got %+v", after)
	}
	e, _ := st.ErasureOf(ctx, id)
	if e.Steps["mailchimp"] != "deleted" || e.CompletedAt == nil {
		t.Errorf("erasure record: %+v", e)
	}
}
