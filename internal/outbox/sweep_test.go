package outbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/cepcomunicacion/cepjobs/internal/outbox"
	"github.com/cepcomunicacion/cepjobs/internal/redisconn"
	"github.com/cepcomunicacion/cepjobs/internal/testenv"
	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// sweepEnv is a database of its own (the sweep reads every queued lead, so
// other tests' leads must not be there) and a private redis-server.
type sweepEnv struct {
	url    string
	st     *store.Store
	rc     redis.UniversalClient
	client *asynq.Client
	insp   *asynq.Inspector
	reg    *prometheus.Registry
	now    time.Time
	n      int
}

func newSweepEnv(t *testing.T) *sweepEnv {
	t.Helper()
	ctx := context.Background()
	url, drop, err := testenv.CreateDatabase(ctx, "sweep")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop)
	st, err := store.Open(ctx, store.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	rs := testenv.StartRedisServer(t, false)
	opt, _ := redisconn.Parse(rs.URL())
	rc := redisconn.Client(opt)
	t.Cleanup(func() { rc.Close() })
	return &sweepEnv{url: url, st: st, rc: rc, client: asynq.NewClientFromRedisClient(rc), insp: asynq.NewInspectorFromRedisClient(rc),
		reg: prometheus.NewRegistry(), now: time.Now().Truncate(time.Second)}
}

func (e *sweepEnv) sweeper(cfg outbox.SweepConfig) (*outbox.Sweeper, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	m := outbox.NewSweepMetrics(reg)
	return outbox.NewSweeper(cfg, e.st, e.rc, e.client, slog.New(slog.NewTextHandler(io.Discard, nil)), m, func() time.Time { return e.now }), reg
}

// metric reads a counter's value from reg; taskType picks the series of a
// labelled counter.
func metric(t *testing.T, reg *prometheus.Registry, name, taskType string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := taskType == ""
			for _, l := range m.GetLabel() {
				match = match || (l.GetName() == "task_type" && l.GetValue() == taskType)
			}
			if match {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s{task_type=%q}", name, taskType)
	return 0
}

type sweptLead struct{ id, outboxID string }

// rowState is what a lead's outbox has for it.
type rowState int

const (
	noRow   rowState = iota // sent at once: a new lead's task has no row
	leftRow                 // Redis refused it: a row the relay has yet to send
	relayed                 // Redis refused it and the relay sent it since
)

// lead stores a lead received age ago with the outbox row state given and,
// when enqueue is set, puts its task in Redis as the intake or the relay
// would.
func (e *sweepEnv) lead(t *testing.T, age time.Duration, row rowState, enqueue bool) sweptLead {
	t.Helper()
	ctx := context.Background()
	e.n++
	at := e.now.Add(-age)
	res, err := e.st.SubmitLead(ctx, store.NewLead{FirstName: "A", Email: fmt.Sprintf("sweep.%d.%d@example.com", e.n, e.now.UnixNano()),
		Course: "c", Source: "s", ConsentPrivacy: true, ConsentTextVersion: "v", SubmittedBy: "t"}, at, nil)
	if err != nil {
		t.Fatal(err)
	}
	if enqueue {
		task, err := tasks.NewLeadProcess(tasks.LeadProcess{LeadID: res.LeadID}, res.LeadID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.client.Enqueue(task); err != nil {
			t.Fatal(err)
		}
	}
	if row != noRow {
		payload, _ := json.Marshal(tasks.LeadProcess{LeadID: res.LeadID})
		if err := e.st.LeaveToRelay(ctx, res.LeadID, tasks.TypeLeadProcess, payload, "redis down", at); err != nil {
			t.Fatal(err)
		}
	}
	if row == relayed {
		if err := e.st.MarkDispatched(ctx, res.LeadID, at); err != nil {
			t.Fatal(err)
		}
	}
	return sweptLead{id: res.LeadID, outboxID: res.LeadID}
}

func (e *sweepEnv) inRedis(id string) bool {
	_, err := e.insp.GetTaskInfo(tasks.QueueCritical, id)
	return err == nil
}

func TestSweepReenqueuesOnlyLostTasks(t *testing.T) {
	e := newSweepEnv(t)
	ctx := context.Background()
	const after = time.Minute

	present := e.lead(t, time.Hour, noRow, true)         // waiting in a long queue: its task is there
	lost := e.lead(t, time.Hour, noRow, false)           // Redis lost it (or the intake died before sending it)
	lostRelayed := e.lead(t, time.Hour, relayed, false)  // sent by the relay, then lost
	undispatched := e.lead(t, time.Hour, leftRow, false) // the relay's business
	fresh := e.lead(t, 10*time.Second, noRow, false)     // not past the bound yet
	// Processing: its task ran and fanned out an hour ago; its welcome
	// email's task is waiting in Redis, its WhatsApp task was lost.
	processing := e.lead(t, time.Hour, noRow, false)
	if _, _, err := e.st.PlanDeliveries(ctx, processing.id, []store.PlannedDelivery{
		{Channel: "welcome_email", Status: store.DeliveryPending}, {Channel: "whatsapp", Status: store.DeliveryPending},
		{Channel: "meta", Status: store.DeliverySkipped, Reason: "no consent"}}, e.now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	waiting := tasks.LeadDeliver{LeadID: processing.id, Channel: tasks.ChannelWelcomeEmail}
	lostDelivery := tasks.LeadDeliver{LeadID: processing.id, Channel: tasks.ChannelWhatsApp}
	if task, err := tasks.NewLeadDeliver(waiting); err != nil {
		t.Fatal(err)
	} else if _, err := e.client.Enqueue(task); err != nil {
		t.Fatal(err)
	}
	// Fanned out just now: its pending delivery is not past the bound.
	recent := e.lead(t, time.Hour, noRow, false)
	if _, _, err := e.st.PlanDeliveries(ctx, recent.id, []store.PlannedDelivery{{Channel: "meta", Status: store.DeliveryPending}}, e.now); err != nil {
		t.Fatal(err)
	}
	done := e.lead(t, time.Hour, noRow, false) // its task ran and was deleted from Redis since
	if _, _, err := e.st.PlanDeliveries(ctx, done.id, []store.PlannedDelivery{{Channel: "meta", Status: store.DeliverySkipped, Reason: "x"}}, e.now); err != nil {
		t.Fatal(err)
	}
	purged := e.lead(t, 8*24*time.Hour, relayed, false) // outbox row removed by the maintenance purge
	if _, err := e.rcPurge(purged.outboxID); err != nil {
		t.Fatal(err)
	}

	// Stored before migration 008, when the outbox row had an id of its
	// own: its task carries that id, which the migration kept.
	legacy := e.lead(t, time.Hour, relayed, false)
	legacy.outboxID = "0190aaaa-0000-7000-8000-000000000001"
	if err := e.sql(`update cepjobs.outbox set id = $2 where id = $1`, legacy.id, legacy.outboxID); err != nil {
		t.Fatal(err)
	}
	if err := e.sql(`insert into cepjobs.outbox_lead_legacy (lead_id, outbox_id) values ($1, $2)`, legacy.id, legacy.outboxID); err != nil {
		t.Fatal(err)
	}

	sw, m := e.sweeper(outbox.SweepConfig{After: after, Interval: time.Second, Batch: 100})
	res, err := sw.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Leads read: present, lost, lostRelayed, undispatched, purged, legacy.
	// Checked: all but undispatched. Missing and re-enqueued: lost,
	// lostRelayed, purged, legacy. Deliveries:
	// the processing lead's two pending ones, one lost. If asynq's key
	// layout ever changed, present and waiting would count as missing here.
	want := outbox.SweepResult{
		Leads:      outbox.SweepCounts{Read: 6, Checked: 5, Missing: 4, Reenqueued: 4, Wrapped: true},
		Deliveries: outbox.SweepCounts{Read: 2, Checked: 2, Missing: 1, Reenqueued: 1, Wrapped: true},
	}
	if res != want {
		t.Errorf("first pass: got %+v, want %+v", res, want)
	}
	if got := metric(t, m, "cepjobs_sweep_reenqueued_total", tasks.TypeLeadProcess); got != 4 {
		t.Errorf("cepjobs_sweep_reenqueued_total{lead:process}: got %v, want 4", got)
	}
	if got := metric(t, m, "cepjobs_sweep_reenqueued_total", tasks.TypeLeadDeliver); got != 1 {
		t.Errorf("cepjobs_sweep_reenqueued_total{lead:deliver}: got %v, want 1", got)
	}
	for _, c := range []struct {
		name string
		id   string
		want bool
	}{
		{"lost lead's task, same TaskID", lost.outboxID, true},
		{"lost relayed lead's task, same TaskID", lostRelayed.outboxID, true},
		{"present lead's task", present.outboxID, true},
		{"purged lead's task, same TaskID (the lead id)", purged.id, true},
		{"legacy lead's task, its old TaskID", legacy.outboxID, true},
		{"legacy lead's task under the lead id", legacy.id, false},
		{"undispatched lead's task", undispatched.outboxID, false},
		{"fresh lead's task", fresh.outboxID, false},
		{"processing lead's task", processing.outboxID, false},
		{"completed lead's task", done.outboxID, false},
		{"recent lead's task", recent.outboxID, false},
		{"processing lead's waiting delivery", waiting.TaskID(), true},
		{"processing lead's lost delivery, same TaskID", lostDelivery.TaskID(), true},
		{"recent lead's delivery", tasks.LeadDeliver{LeadID: recent.id, Channel: tasks.ChannelMeta}.TaskID(), false},
	} {
		if got := e.inRedis(c.id); got != c.want {
			t.Errorf("%s in redis: got %v, want %v", c.name, got, c.want)
		}
	}
	if q, err := e.insp.GetQueueInfo(tasks.QueueCritical); err != nil || q.Pending != 7 {
		t.Errorf("pending tasks: got %+v %v, want 7 (lead:process of present, lost, lostRelayed, purged, legacy; two lead:deliver)", q, err)
	}

	// A second pass finds every task in Redis: nothing more.
	res, err = sw.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Leads.Missing+res.Deliveries.Missing != 0 || res.Leads.Reenqueued+res.Deliveries.Reenqueued != 0 {
		t.Errorf("second pass: got %+v, want nothing missing", res)
	}
}

// sql runs a statement on the test database.
func (e *sweepEnv) sql(q string, args ...any) error {
	c, err := pgx.Connect(context.Background(), e.url)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	_, err = c.Exec(context.Background(), q, args...)
	return err
}

// rcPurge deletes an outbox row as the maintenance purge does.
func (e *sweepEnv) rcPurge(id string) (int64, error) {
	// The store has no per-row delete; the purge removes by age, which
	// would take other rows with it. Plain SQL on the test database.
	c, err := pgx.Connect(context.Background(), e.url)
	if err != nil {
		return 0, err
	}
	defer c.Close(context.Background())
	tag, err := c.Exec(context.Background(), `delete from cepjobs.outbox where id = $1`, id)
	return tag.RowsAffected(), err
}

// TestSweepBoundedOnLargeBacklog: 3,000 leads legitimately waiting in the
// queue (their tasks are in Redis) and a few lost among them. Each pass
// reads one batch and costs one pipelined round of EXISTS, never an enqueue
// per waiting lead; the passes walk the backlog and find every lost task.
func TestSweepBoundedOnLargeBacklog(t *testing.T) {
	e := newSweepEnv(t)
	ctx := context.Background()
	var lost []sweptLead
	for i := range 3000 {
		l := e.lead(t, time.Hour-time.Duration(i)*time.Millisecond, noRow, i%700 != 699)
		if i%700 == 699 {
			lost = append(lost, l)
		}
	}
	const batch = 500
	sw, _ := e.sweeper(outbox.SweepConfig{After: time.Minute, Interval: time.Second, Batch: batch})
	before := commandStats(t, e.rc)
	var total outbox.SweepCounts
	passes := 0
	for {
		r, err := sw.Once(ctx)
		if err != nil {
			t.Fatal(err)
		}
		res := r.Leads
		passes++
		if res.Read > batch || res.Checked > batch {
			t.Fatalf("pass %d: read %d, checked %d: more than the batch of %d", passes, res.Read, res.Checked, batch)
		}
		total.Read += res.Read
		total.Checked += res.Checked
		total.Reenqueued += res.Reenqueued
		if res.Wrapped {
			break
		}
		if passes > 10 {
			t.Fatal("the sweep never reached the end of the backlog")
		}
	}
	after := commandStats(t, e.rc)
	t.Logf("%d passes over 3,000 queued leads: read %d, checked %d, re-enqueued %d; redis: %d EXISTS, %d EVALSHA/EVAL",
		passes, total.Read, total.Checked, total.Reenqueued, after["exists"]-before["exists"], after["evalsha"]+after["eval"]-before["evalsha"]-before["eval"])
	if passes != 7 || total.Read != 3000 || total.Reenqueued != len(lost) {
		t.Errorf("got %d passes, %d read, %d re-enqueued; want 7, 3000, %d", passes, total.Read, total.Reenqueued, len(lost))
	}
	// asynq's enqueue is a Lua script: one per lost task, none for the
	// 2,996 that were only waiting.
	if n := after["evalsha"] + after["eval"] - before["evalsha"] - before["eval"]; n > int64(2*len(lost)) {
		t.Errorf("%d scripts run for %d lost tasks: the sweep enqueued tasks that were in Redis", n, len(lost))
	}
	// One EXISTS per queued lead (pipelined per batch), plus the one inside
	// each enqueue script.
	if n := after["exists"] - before["exists"]; n != int64(3000+len(lost)) {
		t.Errorf("EXISTS calls: got %d, want %d", n, 3000+len(lost))
	}
	for _, l := range lost {
		if !e.inRedis(l.outboxID) {
			t.Errorf("lost lead %s not re-enqueued", l.id)
		}
	}
}

// commandStats reads INFO commandstats as calls per command.
func commandStats(t *testing.T, rc redis.UniversalClient) map[string]int64 {
	t.Helper()
	info, err := rc.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		// cmdstat_exists:calls=3000,usec=…
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
		n, _ := strconv.ParseInt(calls, 10, 64)
		out[strings.TrimPrefix(name, "cmdstat_")] = n
	}
	return out
}

// TestSweepRedisDown: a pass with Redis unreachable fails, counts an error
// and loses nothing; the next pass with Redis back re-enqueues.
func TestSweepRedisDown(t *testing.T) {
	e := newSweepEnv(t)
	ctx := context.Background()
	lost := e.lead(t, time.Hour, noRow, false)
	dead := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), MaxRetries: -1})
	defer dead.Close()
	reg := prometheus.NewRegistry()
	m := outbox.NewSweepMetrics(reg)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := outbox.SweepConfig{After: time.Minute, Interval: time.Second, Batch: 10}
	down := outbox.NewSweeper(cfg, e.st, dead, asynq.NewClientFromRedisClient(dead), log, m, func() time.Time { return e.now })
	if _, err := down.Once(ctx); err == nil {
		t.Error("pass with redis down: got no error")
	}
	if got := metric(t, reg, "cepjobs_sweep_errors_total", ""); got != 1 {
		t.Errorf("cepjobs_sweep_errors_total: got %v, want 1", got)
	}
	sw, _ := e.sweeper(cfg)
	if res, err := sw.Once(ctx); err != nil || res.Leads.Reenqueued != 1 {
		t.Errorf("pass with redis back: got %+v %v, want 1 re-enqueued", res, err)
	}
	if !e.inRedis(lost.outboxID) {
		t.Error("lost task not in redis")
	}
}
