package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// The relay covers rows that never reached Redis. The sweep covers tasks
// that reached Redis and were lost there afterwards: Redis restarted from an
// AOF missing its last second of writes, a failover promoted a replica that
// lagged, someone deleted a task in the dashboard. Such a lead stays
// "queued" in Postgres with its outbox row marked dispatched, and nothing
// would ever process it.
//
// Each pass reads up to Batch leads still queued longer than After (oldest
// first, resuming where the last pass stopped, so a large legitimate
// backlog is walked a batch per pass instead of re-read whole), asks Redis
// in one pipelined round trip which of their tasks exist, and enqueues only
// the missing ones, with the original TaskID (the outbox row id). A lead
// merely waiting in a long queue has its task in Redis and costs one EXISTS;
// a lead whose task already ran is no longer queued and is never read; a
// lead being processed (status processing) is not queued either. If two
// intake replicas sweep at once, asynq refuses the second enqueue of a
// TaskID.

// SweepConfig tunes the sweep.
type SweepConfig struct {
	// After is how long a lead may stay queued before its task is checked.
	After time.Duration
	// Interval is the time between passes.
	Interval time.Duration
	// Batch bounds the leads one pass reads and checks.
	Batch int
}

// sweepStore is what the sweep needs of the database.
type sweepStore interface {
	StaleQueuedLeads(ctx context.Context, receivedBefore time.Time, after store.SweepCursor, limit int) ([]store.StaleLead, error)
}

// SweepMetrics counts what the sweep did. Register it once per process.
type SweepMetrics struct {
	checked    prometheus.Counter
	reenqueued prometheus.Counter
	errors     prometheus.Counter
}

// NewSweepMetrics registers the sweep metrics on reg.
func NewSweepMetrics(reg prometheus.Registerer) *SweepMetrics {
	m := &SweepMetrics{
		checked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cepjobs_sweep_checked_total",
			Help: "Queued leads past the sweep bound whose lead:process task was looked up in Redis.",
		}),
		reenqueued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cepjobs_sweep_reenqueued_total",
			Help: "lead:process tasks the sweep found missing from Redis and enqueued again.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cepjobs_sweep_errors_total",
			Help: "Sweep passes cut short by a Postgres or Redis error.",
		}),
	}
	reg.MustRegister(m.checked, m.reenqueued, m.errors)
	return m
}

// Sweeper re-enqueues lead:process tasks that Redis lost.
type Sweeper struct {
	cfg     SweepConfig
	store   sweepStore
	redis   redis.UniversalClient
	client  enqueuer
	log     *slog.Logger
	metrics *SweepMetrics
	now     func() time.Time
	queue   string

	cursor store.SweepCursor
}

// NewSweeper returns a sweeper. now may be nil (time.Now).
func NewSweeper(cfg SweepConfig, s sweepStore, rc redis.UniversalClient, client enqueuer, log *slog.Logger, m *SweepMetrics, now func() time.Time) *Sweeper {
	if now == nil {
		now = time.Now
	}
	spec, _ := tasks.SpecOf(tasks.TypeLeadProcess)
	return &Sweeper{cfg: cfg, store: s, redis: rc, client: client, log: log, metrics: m, now: now, queue: spec.Queue}
}

// SweepResult is what one pass did.
type SweepResult struct {
	// Read is how many stale queued leads the pass read from Postgres.
	Read int
	// Checked is how many of their tasks it looked up in Redis (leads whose
	// row was never dispatched are the relay's).
	Checked int
	// Missing is how many were not in Redis; Reenqueued how many of those
	// it enqueued (the others turned up meanwhile: a TaskID conflict).
	Missing, Reenqueued int
	// Wrapped says the pass reached the end of the backlog: the next one
	// starts again from the oldest lead.
	Wrapped bool
}

// Run sweeps every Interval until ctx is done.
func (s *Sweeper) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		res, err := s.Once(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("lead sweep", "err", err)
			}
			continue
		}
		if res.Reenqueued > 0 {
			s.log.Warn("lead sweep re-enqueued lead:process tasks missing from redis", "reenqueued", res.Reenqueued, "checked", res.Checked)
		}
	}
}

// Once runs one pass.
func (s *Sweeper) Once(ctx context.Context) (SweepResult, error) {
	var res SweepResult
	leads, err := s.store.StaleQueuedLeads(ctx, s.now().Add(-s.cfg.After), s.cursor, s.cfg.Batch)
	if err != nil {
		s.metrics.errors.Inc()
		return res, err
	}
	res.Read = len(leads)
	if len(leads) < s.cfg.Batch {
		s.cursor, res.Wrapped = store.SweepCursor{}, true
	} else {
		last := leads[len(leads)-1]
		s.cursor = store.SweepCursor{ReceivedAt: last.ReceivedAt, LeadID: last.LeadID}
	}

	type candidate struct {
		lead   store.StaleLead
		taskID string
		exists *redis.IntCmd
	}
	var cands []candidate
	for _, l := range leads {
		if l.OutboxID != "" && !l.Dispatched {
			continue // the relay sends it
		}
		id := l.OutboxID
		if id == "" {
			// The row was purged (dispatched over 7 days ago): no original
			// TaskID to reuse. A fixed one keeps sweeps from piling up
			// copies; a second lead:process run would be harmless anyway
			// (the fan-out is idempotent).
			id = tasks.TypeLeadProcess + ":sweep:" + l.LeadID
		}
		cands = append(cands, candidate{lead: l, taskID: id})
	}
	if len(cands) == 0 {
		return res, nil
	}
	// One round trip for the whole batch. The key is asynq's task hash
	// (base.TaskKey, v0.26), the very key its enqueue checks for a TaskID
	// conflict; should a later asynq lay keys out differently, every task
	// looks missing and each enqueue below answers ErrTaskIDConflict:
	// correct, only dearer (TestSweepKeyLayout guards against that).
	_, err = s.redis.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range cands {
			cands[i].exists = p.Exists(ctx, taskKey(s.queue, cands[i].taskID))
		}
		return nil
	})
	if err != nil {
		s.metrics.errors.Inc()
		return res, fmt.Errorf("sweep: look up tasks in redis: %w", err)
	}
	res.Checked = len(cands)
	s.metrics.checked.Add(float64(len(cands)))
	for _, c := range cands {
		if c.exists.Val() > 0 {
			continue
		}
		res.Missing++
		payload, err := json.Marshal(tasks.LeadProcess{LeadID: c.lead.LeadID})
		if err != nil {
			return res, err
		}
		t, err := tasks.Build(tasks.TypeLeadProcess, payload, c.taskID)
		if err != nil {
			return res, err
		}
		_, err = s.client.EnqueueContext(ctx, t)
		if errors.Is(err, asynq.ErrTaskIDConflict) {
			continue // enqueued meanwhile (relay, another replica)
		}
		if err != nil {
			s.metrics.errors.Inc()
			return res, fmt.Errorf("sweep: enqueue lead %s: %w", c.lead.LeadID, err)
		}
		res.Reenqueued++
		s.metrics.reenqueued.Inc()
		s.log.Info("lead sweep re-enqueued a lost task", "lead_id", c.lead.LeadID, "task_id", c.taskID,
			"queued_for", s.now().Sub(c.lead.ReceivedAt).Round(time.Second).String())
	}
	return res, nil
}

// taskKey is asynq's key of a task's hash (base.TaskKey in asynq v0.26).
func taskKey(queue, id string) string { return "asynq:{" + queue + "}:t:" + id }
