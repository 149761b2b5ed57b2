// Package outbox moves tasks from the Postgres outbox into Redis. A request
// that wrote an outbox row dispatches it at once (Dispatcher.Now); the Relay
// re-sends whatever did not get through, for as long as it takes Redis to
// come back. Every send uses the row id as asynq TaskID, so a row sent twice
// (request and relay racing, a crash between enqueue and the dispatched
// mark) is one task.
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// outboxStore is what the dispatcher needs of the database.
type outboxStore interface {
	MarkDispatched(ctx context.Context, id string, now time.Time) error
	MarkDispatchedBatch(ctx context.Context, ids []string, now time.Time) error
	DeferDispatch(ctx context.Context, id, reason string, retryAt time.Time) error
	LeaveToRelay(ctx context.Context, id, taskType string, payload []byte, reason string, now time.Time) error
	RelayOutbox(ctx context.Context, now time.Time, limit int, dispatch func(context.Context, store.OutboxRow) store.DispatchResult) (int, int, error)
	OutboxBacklog(ctx context.Context, now time.Time) (int, time.Duration, error)
}

// enqueuer is the part of *asynq.Client used here.
type enqueuer interface {
	EnqueueContext(ctx context.Context, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// Metrics counts dispatches. Register it once per process.
type Metrics struct {
	dispatched *prometheus.CounterVec
	errors     *prometheus.CounterVec
}

// NewMetrics registers the outbox metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		dispatched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cepjobs_outbox_dispatched_total",
			Help: "Outbox rows enqueued into Redis, by path (inline right after the request, or relay).",
		}, []string{"path"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cepjobs_enqueue_errors_total",
			Help: "Failed attempts to enqueue an outbox row into Redis, by task type.",
		}, []string{"task_type"}),
	}
	reg.MustRegister(m.dispatched, m.errors)
	return m
}

// Dispatcher enqueues outbox rows.
type Dispatcher struct {
	store   outboxStore
	client  enqueuer
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time

	// downUntil is set after a failed inline enqueue: until then requests
	// leave their rows to the relay instead of each waiting on a dead Redis.
	downUntil atomic.Int64
	// outage is set by any failed enqueue and cleared, calling onRecovery,
	// by the first success after it.
	outage     atomic.Bool
	onRecovery func(context.Context)

	// marks carries rows enqueued inline to the goroutine that records them
	// dispatched, many per UPDATE.
	marks       chan string
	markMu      sync.Mutex // guards markStarted and closed
	markStarted bool
	closed      bool
	markStop    chan struct{}
	markDone    chan struct{}
}

// OnRecovery sets a function called once each time Redis takes tasks again
// after failing; the intake re-announces its queues there.
func (d *Dispatcher) OnRecovery(f func(context.Context)) { d.onRecovery = f }

func (d *Dispatcher) failed() { d.outage.Store(true) }

func (d *Dispatcher) succeeded(ctx context.Context) {
	if d.outage.CompareAndSwap(true, false) && d.onRecovery != nil {
		d.onRecovery(ctx)
	}
}

// NewDispatcher returns a Dispatcher. now may be nil (time.Now).
func NewDispatcher(s outboxStore, client enqueuer, log *slog.Logger, m *Metrics, now func() time.Time) *Dispatcher {
	if now == nil {
		now = time.Now
	}
	return &Dispatcher{store: s, client: client, log: log, metrics: m, now: now,
		marks: make(chan string, markQueue), markStop: make(chan struct{}), markDone: make(chan struct{})}
}

const (
	// markQueue bounds the marks waiting for the recorder; past it a
	// request records its own.
	markQueue = 4096
	// markBatch bounds the rows one UPDATE marks.
	markBatch = 512
)

// inlineTimeout bounds the enqueue a request waits for: Redis answers in
// well under a millisecond when healthy; anything slower goes to the relay.
const inlineTimeout = 500 * time.Millisecond

// Now enqueues a freshly written row right away. It never fails the
// request: on any error the row is left for the relay, due immediately.
func (d *Dispatcher) Now(ctx context.Context, id, taskType string, payload []byte) {
	now, reason, ok := d.inline(ctx, id, taskType, payload)
	if !ok {
		d.deferRow(ctx, id, reason, now)
		return
	}
	d.mark(ctx, id)
}

// SendLead enqueues the lead:process task of a lead just stored, with the
// lead's id as TaskID. The lead, queued in Postgres, is the task's durable
// record: nothing is written when Redis takes it. When Redis does not,
// SendLead writes an outbox row, due at once, so the relay sends the task as
// soon as Redis is back; should that write fail too, or the process die
// before the enqueue, the sweep sends the task of a lead still queued past
// CEPJOBS_SWEEP_AFTER. It never fails the request.
func (d *Dispatcher) SendLead(ctx context.Context, leadID string) {
	payload, err := leadProcessPayload(leadID)
	if err != nil { // a uuid string: cannot happen; the sweep would send it
		d.log.Error("lead:process payload", "lead_id", leadID, "err", err)
		return
	}
	if now, reason, ok := d.inline(ctx, leadID, tasks.TypeLeadProcess, payload); !ok {
		d.leaveToRelay(ctx, leadID, tasks.TypeLeadProcess, payload, reason, now)
	}
}

// leadProcessPayload is a lead:process task's payload: the lead id only.
func leadProcessPayload(leadID string) ([]byte, error) {
	return json.Marshal(tasks.LeadProcess{LeadID: leadID})
}

// inline is the enqueue of Now and SendLead: it reports whether Redis took the
// task, and if not, why, and the time to record. After a failure, requests
// skip Redis for a second.
func (d *Dispatcher) inline(ctx context.Context, id, taskType string, payload []byte) (now time.Time, reason string, ok bool) {
	now = d.now()
	if now.UnixNano() < d.downUntil.Load() {
		return now, "redis unavailable: left to the relay", false
	}
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), inlineTimeout)
	err := d.enqueue(ectx, id, taskType, payload)
	cancel()
	if err != nil {
		d.failed()
		d.downUntil.Store(now.Add(time.Second).UnixNano())
		d.metrics.errors.WithLabelValues(taskType).Inc()
		d.log.Warn("enqueue failed, left to the outbox relay", "outbox_id", id, "task_type", taskType, "err", err)
		return now, err.Error(), false
	}
	d.succeeded(ctx)
	d.metrics.dispatched.WithLabelValues("inline").Inc()
	return now, "", true
}

func (d *Dispatcher) leaveToRelay(ctx context.Context, id, taskType string, payload []byte, reason string, now time.Time) {
	if err := d.store.LeaveToRelay(context.WithoutCancel(ctx), id, taskType, payload, reason, now); err != nil {
		// Still safe: the sweep re-sends the task once it is overdue.
		d.log.Warn("leave task to the outbox relay", "outbox_id", id, "task_type", taskType, "err", err)
	}
}

// mark records a row as dispatched. The recorder goroutine marks every row
// waiting at once in one UPDATE, so a busy intake spends one statement on
// many requests. A mark lost to a crash only makes the relay send the row
// again after InlineGrace, which asynq refuses as a duplicate TaskID while
// the task is in Redis, and the task handlers are idempotent after that.
func (d *Dispatcher) mark(ctx context.Context, id string) {
	d.markMu.Lock()
	if !d.closed {
		if !d.markStarted {
			d.markStarted = true
			go d.recordMarks()
		}
		select {
		case d.marks <- id:
			d.markMu.Unlock()
			return
		default: // the recorder is behind: record this one here
		}
	}
	d.markMu.Unlock()
	// The request must not lose its row to a cancelled context now: the
	// task is in Redis and only the mark is missing.
	if err := d.store.MarkDispatched(context.WithoutCancel(ctx), id, d.now()); err != nil {
		// The relay will send it again; asynq will refuse the duplicate TaskID.
		d.log.Warn("mark outbox row dispatched", "outbox_id", id, "err", err)
	}
}

func (d *Dispatcher) recordMarks() {
	defer close(d.markDone)
	ids := make([]string, 0, markBatch)
	for {
		var stopping bool
		select {
		case id := <-d.marks:
			ids = append(ids[:0], id)
		case <-d.markStop:
			stopping = true
			ids = ids[:0]
		}
	drain:
		for len(ids) < markBatch {
			select {
			case id := <-d.marks:
				ids = append(ids, id)
			default:
				break drain
			}
		}
		if len(ids) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := d.store.MarkDispatchedBatch(ctx, ids, d.now()); err != nil {
				// The relay sends them again; asynq refuses the duplicate TaskIDs.
				d.log.Warn("mark outbox rows dispatched", "rows", len(ids), "err", err)
			}
			cancel()
		}
		if stopping && len(ids) < markBatch {
			return
		}
	}
}

// Close records the marks still waiting. Call it before closing the store;
// a dispatch after Close records its own mark.
func (d *Dispatcher) Close() {
	d.markMu.Lock()
	started := d.markStarted
	if !d.closed {
		d.closed = true
		close(d.markStop)
	}
	d.markMu.Unlock()
	if started {
		<-d.markDone
	}
}

func (d *Dispatcher) deferRow(ctx context.Context, id, reason string, now time.Time) {
	if err := d.store.DeferDispatch(context.WithoutCancel(ctx), id, reason, now); err != nil {
		// Still safe: the row keeps its original available_at and the relay
		// takes it after the inline grace.
		d.log.Warn("defer outbox row", "outbox_id", id, "err", err)
	}
}

func (d *Dispatcher) enqueue(ctx context.Context, id, taskType string, payload []byte) error {
	t, err := tasks.Build(taskType, payload, id)
	if err != nil {
		return err
	}
	_, err = d.client.EnqueueContext(ctx, t)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		// Sent before: by the other path, or before a crash.
		return nil
	}
	if err != nil {
		return fmt.Errorf("enqueue %s: %w", taskType, err)
	}
	return nil
}

// Relay re-sends undispatched rows until its context ends.
type Relay struct {
	d        *Dispatcher
	interval time.Duration
	batch    int
}

// NewRelay returns a relay polling every interval, batch rows at a time.
func NewRelay(d *Dispatcher, interval time.Duration, batch int) *Relay {
	return &Relay{d: d, interval: interval, batch: batch}
}

// Run relays until ctx is done. Several relays (one per intake replica) may
// run at once: each claims rows with SKIP LOCKED.
func (r *Relay) Run(ctx context.Context) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		for {
			sent, err := r.Once(ctx)
			if err != nil || sent < r.batch {
				break // a full batch means more may be due: go again at once
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Once relays one batch and returns how many rows reached Redis.
func (r *Relay) Once(ctx context.Context) (int, error) {
	d := r.d
	now := d.now()
	redisDown := false
	sent, failed, err := d.store.RelayOutbox(ctx, now, r.batch, func(ctx context.Context, row store.OutboxRow) store.DispatchResult {
		if redisDown {
			// One failure per batch is enough to know; don't wait out a
			// timeout for every row.
			return store.DispatchResult{Err: errors.New("redis unavailable"), RetryAt: retryAt(now, row.Attempts)}
		}
		ectx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := d.enqueue(ectx, row.ID, row.TaskType, row.Payload); err != nil {
			d.failed()
			redisDown = true
			d.metrics.errors.WithLabelValues(row.TaskType).Inc()
			return store.DispatchResult{Err: err, RetryAt: retryAt(now, row.Attempts)}
		}
		d.succeeded(ctx)
		return store.DispatchResult{}
	})
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("outbox relay", "err", err)
		}
		return 0, err
	}
	if sent > 0 {
		d.metrics.dispatched.WithLabelValues("relay").Add(float64(sent))
		d.downUntil.Store(0) // Redis answers again
		d.log.Info("outbox relay sent tasks", "sent", sent, "failed", failed)
	}
	if failed > 0 {
		d.log.Warn("outbox relay could not reach redis", "failed", failed)
	}
	return sent, nil
}

// retryAt backs off a row that keeps failing, up to 30 s, with jitter so
// replicas don't hammer a recovering Redis in step.
func retryAt(now time.Time, attempts int) time.Time {
	d := 250 * time.Millisecond << min(attempts, 7)
	d = min(d, 30*time.Second)
	return now.Add(d/2 + rand.N(d/2+1))
}

// BacklogCollector exports the outbox backlog, read from the database at
// scrape time.
type BacklogCollector struct {
	store   outboxStore
	now     func() time.Time
	size    *prometheus.Desc
	age     *prometheus.Desc
	scrapeE *prometheus.Desc
}

// NewBacklogCollector returns a collector; register it with the metrics
// registry.
func NewBacklogCollector(s outboxStore) *BacklogCollector {
	return &BacklogCollector{
		store:   s,
		now:     time.Now,
		size:    prometheus.NewDesc("cepjobs_outbox_backlog", "Outbox rows not yet enqueued into Redis.", nil, nil),
		age:     prometheus.NewDesc("cepjobs_outbox_oldest_seconds", "Age of the oldest outbox row not yet enqueued.", nil, nil),
		scrapeE: prometheus.NewDesc("cepjobs_outbox_backlog_up", "1 when the backlog could be read from Postgres.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *BacklogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.size
	ch <- c.age
	ch <- c.scrapeE
}

// Collect implements prometheus.Collector.
func (c *BacklogCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n, oldest, err := c.store.OutboxBacklog(ctx, c.now())
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.scrapeE, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.scrapeE, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, oldest.Seconds())
}
