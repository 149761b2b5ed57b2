package outbox

import (
	"context"
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
// the missing ones, with the original TaskID (the lead id; for a lead stored
// before migration 008, the id its outbox row had). A lead
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
	StalePendingDeliveries(ctx context.Context, createdBefore time.Time, after store.DeliveryCursor, limit int) ([]store.StaleDelivery, error)
}

// SweepMetrics counts what the sweep did. Register it once per process.
type SweepMetrics struct {
	checked    *prometheus.CounterVec
	reenqueued *prometheus.CounterVec
	errors     prometheus.Counter
}

// NewSweepMetrics registers the sweep metrics on reg.
func NewSweepMetrics(reg prometheus.Registerer) *SweepMetrics {
	m := &SweepMetrics{
		checked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cepjobs_sweep_checked_total",
			Help: "Tasks of queued leads and pending deliveries past the sweep bound looked up in Redis, by task type.",
		}, []string{"task_type"}),
		reenqueued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cepjobs_sweep_reenqueued_total",
			Help: "Tasks the sweep found missing from Redis and enqueued again, by task type.",
		}, []string{"task_type"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cepjobs_sweep_errors_total",
			Help: "Sweep passes cut short by a Postgres or Redis error.",
		}),
	}
	for _, typ := range []string{tasks.TypeLeadProcess, tasks.TypeLeadDeliver} {
		m.checked.WithLabelValues(typ)
		m.reenqueued.WithLabelValues(typ)
	}
	reg.MustRegister(m.checked, m.reenqueued, m.errors)
	return m
}

// Sweeper re-enqueues lead:process and lead:deliver tasks that Redis lost.
type Sweeper struct {
	cfg     SweepConfig
	store   sweepStore
	redis   redis.UniversalClient
	client  enqueuer
	log     *slog.Logger
	metrics *SweepMetrics
	now     func() time.Time

	leadCursor     store.SweepCursor
	deliveryCursor store.DeliveryCursor
}

// NewSweeper returns a sweeper. now may be nil (time.Now).
func NewSweeper(cfg SweepConfig, s sweepStore, rc redis.UniversalClient, client enqueuer, log *slog.Logger, m *SweepMetrics, now func() time.Time) *Sweeper {
	if now == nil {
		now = time.Now
	}
	return &Sweeper{cfg: cfg, store: s, redis: rc, client: client, log: log, metrics: m, now: now}
}

// SweepCounts is what one pass did for one kind of task.
type SweepCounts struct {
	// Read is how many stale rows the pass read from Postgres.
	Read int
	// Checked is how many of their tasks it looked up in Redis (leads whose
	// outbox row was never dispatched are the relay's).
	Checked int
	// Missing is how many were not in Redis; Reenqueued how many of those
	// it enqueued (the others turned up meanwhile: a TaskID conflict).
	Missing, Reenqueued int
	// Wrapped says the pass reached the end: the next one starts again from
	// the oldest row.
	Wrapped bool
}

// SweepResult is what one pass did: lead:process tasks of queued leads,
// lead:deliver tasks of pending deliveries.
type SweepResult struct {
	Leads, Deliveries SweepCounts
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
		if n := res.Leads.Reenqueued + res.Deliveries.Reenqueued; n > 0 {
			s.log.Warn("lead sweep re-enqueued tasks missing from redis",
				"lead_process", res.Leads.Reenqueued, "lead_deliver", res.Deliveries.Reenqueued,
				"checked", res.Leads.Checked+res.Deliveries.Checked)
		}
	}
}

// Once runs one pass: at most Batch queued leads and Batch pending
// deliveries.
func (s *Sweeper) Once(ctx context.Context) (SweepResult, error) {
	var res SweepResult
	var err error
	res.Leads, err = s.sweepLeads(ctx)
	if err != nil {
		s.metrics.errors.Inc()
		return res, err
	}
	res.Deliveries, err = s.sweepDeliveries(ctx)
	if err != nil {
		s.metrics.errors.Inc()
		return res, err
	}
	return res, nil
}

// candidate is a task that should be in Redis.
type candidate struct {
	taskID string
	what   string // for the log
	since  time.Time
	build  func() (*asynq.Task, error)
	exists *redis.IntCmd
}

func (s *Sweeper) sweepLeads(ctx context.Context) (SweepCounts, error) {
	var c SweepCounts
	leads, err := s.store.StaleQueuedLeads(ctx, s.now().Add(-s.cfg.After), s.leadCursor, s.cfg.Batch)
	if err != nil {
		return c, err
	}
	c.Read = len(leads)
	if len(leads) < s.cfg.Batch {
		s.leadCursor, c.Wrapped = store.SweepCursor{}, true
	} else {
		last := leads[len(leads)-1]
		s.leadCursor = store.SweepCursor{ReceivedAt: last.ReceivedAt, LeadID: last.LeadID}
	}
	var cands []candidate
	for _, l := range leads {
		if l.Pending {
			continue // the relay sends it
		}
		// The original TaskID: asynq refuses the copy while the task (or its
		// retention) is still in Redis.
		id := l.TaskID
		cands = append(cands, candidate{taskID: id, what: "lead " + l.LeadID, since: l.ReceivedAt, build: func() (*asynq.Task, error) {
			payload, err := leadProcessPayload(l.LeadID)
			if err != nil {
				return nil, err
			}
			return tasks.Build(tasks.TypeLeadProcess, payload, id)
		}})
	}
	return c, s.restore(ctx, tasks.TypeLeadProcess, cands, &c)
}

// sweepDeliveries covers what the lead sweep cannot: a lead fanned out in
// the last second before Redis died and lost that second is "processing"
// (its deliveries pending) with neither its lead:process task nor its
// lead:deliver tasks left in Redis. A pending delivery otherwise always has
// its task in Redis (pending, active, retrying or archived), so a missing
// one was lost; its TaskID is derived from lead and channel, and the
// delivery handler never calls a vendor for a delivery that is no longer
// pending.
func (s *Sweeper) sweepDeliveries(ctx context.Context) (SweepCounts, error) {
	var c SweepCounts
	ds, err := s.store.StalePendingDeliveries(ctx, s.now().Add(-s.cfg.After), s.deliveryCursor, s.cfg.Batch)
	if err != nil {
		return c, err
	}
	c.Read = len(ds)
	if len(ds) < s.cfg.Batch {
		s.deliveryCursor, c.Wrapped = store.DeliveryCursor{}, true
	} else {
		last := ds[len(ds)-1]
		s.deliveryCursor = store.DeliveryCursor{CreatedAt: last.CreatedAt, LeadID: last.LeadID, Channel: last.Channel}
	}
	var cands []candidate
	for _, d := range ds {
		p := tasks.LeadDeliver{LeadID: d.LeadID, Channel: tasks.Channel(d.Channel)}
		t, err := tasks.NewLeadDeliver(p)
		if err != nil {
			s.log.Warn("lead sweep: skip a delivery it cannot rebuild", "lead_id", d.LeadID, "channel", d.Channel, "err", err)
			continue
		}
		cands = append(cands, candidate{taskID: p.TaskID(), what: "delivery " + d.LeadID + " " + d.Channel, since: d.CreatedAt,
			build: func() (*asynq.Task, error) { return t, nil }})
	}
	return c, s.restore(ctx, tasks.TypeLeadDeliver, cands, &c)
}

// restore looks the candidates up in Redis in one pipelined round trip and
// enqueues the missing ones.
func (s *Sweeper) restore(ctx context.Context, typ string, cands []candidate, c *SweepCounts) error {
	if len(cands) == 0 {
		return nil
	}
	spec, _ := tasks.SpecOf(typ)
	// The key is asynq's task hash (base.TaskKey, v0.26), the very key its
	// enqueue checks for a TaskID conflict; should a later asynq lay keys
	// out differently, every task looks missing and each enqueue below
	// answers ErrTaskIDConflict: correct, only dearer
	// (TestSweepReenqueuesOnlyLostTasks guards against that).
	_, err := s.redis.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range cands {
			cands[i].exists = p.Exists(ctx, taskKey(spec.Queue, cands[i].taskID))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sweep: look up %s tasks in redis: %w", typ, err)
	}
	c.Checked = len(cands)
	s.metrics.checked.WithLabelValues(typ).Add(float64(len(cands)))
	for _, cd := range cands {
		if cd.exists.Val() > 0 {
			continue
		}
		c.Missing++
		t, err := cd.build()
		if err != nil {
			return err
		}
		_, err = s.client.EnqueueContext(ctx, t)
		if errors.Is(err, asynq.ErrTaskIDConflict) {
			continue // enqueued meanwhile (relay, fan-out, another replica)
		}
		if err != nil {
			return fmt.Errorf("sweep: enqueue %s %s: %w", typ, cd.taskID, err)
		}
		c.Reenqueued++
		s.metrics.reenqueued.WithLabelValues(typ).Inc()
		s.log.Info("lead sweep re-enqueued a lost task", "task_type", typ, "task_id", cd.taskID, "what", cd.what,
			"age", s.now().Sub(cd.since).Round(time.Second).String())
	}
	return nil
}

// taskKey is asynq's key of a task's hash (base.TaskKey in asynq v0.26).
func taskKey(queue, id string) string { return "asynq:{" + queue + "}:t:" + id }
