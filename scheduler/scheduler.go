package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/robfig/cron/v3"

	"github.com/cepcomunicacion/cepjobs/tasks"
)

// Enqueuer is the part of *asynq.Client the scheduler uses.
type Enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// Entry is one row of the schedule table.
type Entry struct {
	// Name identifies the entry in logs and in `cepjobs schedule`.
	Name string
	// Spec is a 5-field cron spec ("0 3 * * *"), read in Params.Location
	// unless prefixed "CRON_TZ=Europe/Madrid ", or a descriptor (@daily,
	// @every 1h).
	Spec string
	// TaskType is a type known to package tasks. One entry per type: the
	// TaskID is <type>:<slot>, so two entries of one type would swallow each
	// other's slots.
	TaskType string
	// Payload encodes the task payload for a slot (UTC). It must depend only
	// on the slot, so every replica enqueues the same task.
	Payload func(slot time.Time) ([]byte, error)
	// Grace overrides Params.Grace for this entry when positive; negative
	// turns catch-up and retries off for it.
	Grace time.Duration
}

// Params configures a Scheduler. Zero values get defaults.
type Params struct {
	Entries []Entry
	// Enqueuer is usually an *asynq.Client. It may be nil for a Scheduler
	// that is only asked for Next.
	Enqueuer Enqueuer
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Now is the clock that names slots and decides catch-up; it defaults to
	// time.Now. robfig wakes on the real clock regardless, so in production
	// Now must follow it; tests inject a fixed one to exercise catch-up.
	Now func() time.Time
	// Location is where specs without CRON_TZ= are read; defaults to UTC.
	Location *time.Location
	// Grace is how late a slot may still be enqueued: on start, the latest
	// missed slot of each entry is fired if it is at most Grace old, and a
	// failed enqueue is retried until the slot is Grace old or the entry's
	// next slot comes, whichever is first. Zero turns both off.
	Grace time.Duration
}

// Scheduler turns the schedule table into asynq tasks. Each slot is enqueued
// with TaskID <type>:<slot>, so any number of replicas can run one: the
// first enqueue wins and the others get asynq.ErrTaskIDConflict, which is
// success.
type Scheduler struct {
	entries []entry
	enq     Enqueuer
	log     *slog.Logger
	now     func() time.Time

	// Retry pacing and the bound on one enqueue; fields so tests can shrink
	// them.
	retryMin, retryMax time.Duration
	enqueueTimeout     time.Duration
}

type entry struct {
	Entry
	sched     schedule
	grace     time.Duration // effective; 0 means no catch-up or retry
	retention time.Duration
}

// retentionMargin is added to the grace window when sizing Retention. A
// completed task must outlive every replica's chance to enqueue its slot
// again (the slot plus grace); the margin absorbs clock skew between
// replicas.
const retentionMargin = time.Hour

// New checks the table and builds a Scheduler. The error lists every bad
// entry.
func New(p Params) (*Scheduler, error) {
	s := &Scheduler{
		enq:            p.Enqueuer,
		log:            p.Logger,
		now:            p.Now,
		retryMin:       time.Second,
		retryMax:       time.Minute,
		enqueueTimeout: 10 * time.Second,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	loc := p.Location
	if loc == nil {
		loc = time.UTC
	}
	var errs []error
	names, types := map[string]bool{}, map[string]string{}
	for i, e := range p.Entries {
		where := fmt.Sprintf("entry %d (%s)", i+1, e.Name)
		if e.Name == "" {
			errs = append(errs, fmt.Errorf("%s: name required", where))
		} else if names[e.Name] {
			errs = append(errs, fmt.Errorf("%s: name used twice", where))
		}
		names[e.Name] = true
		spec, known := tasks.SpecOf(e.TaskType)
		if !known {
			errs = append(errs, fmt.Errorf("%s: unknown task type %q", where, e.TaskType))
		} else if other, dup := types[e.TaskType]; dup {
			errs = append(errs, fmt.Errorf("%s: task type %s already scheduled by %s (TaskIDs would collide)", where, e.TaskType, other))
		}
		types[e.TaskType] = e.Name
		if e.Payload == nil {
			errs = append(errs, fmt.Errorf("%s: payload function required", where))
		}
		sched, err := parseSpec(e.Spec, loc)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
		grace := p.Grace
		if e.Grace != 0 {
			grace = e.Grace
		}
		grace = max(grace, 0)
		s.entries = append(s.entries, entry{
			Entry:     e,
			sched:     sched,
			grace:     grace,
			retention: max(spec.Retention, grace+retentionMargin),
		})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("new scheduler: %w", err)
	}
	return s, nil
}

// Run fires the latest missed slot of each entry that is within its grace,
// then fires slots as they come until ctx is done. The catch-up pass is made
// even if ctx is already done. Run returns once every started enqueue has
// finished: an attempt in flight may complete (bounded by a timeout) so a
// shutdown at 03:00:00 does not lose the 03:00 slot, but no retry starts
// after ctx is done. The error is non-nil only for a Scheduler without an
// Enqueuer.
func (s *Scheduler) Run(ctx context.Context) error {
	if s.enq == nil {
		return errors.New("run scheduler: no enqueuer")
	}
	c := cron.New(
		cron.WithLocation(time.UTC),
		cron.WithParser(parser),
		cron.WithLogger(cronLogger{s.log}),
	)
	for i := range s.entries {
		e := &s.entries[i]
		// robfig tells a job nothing about which activation it is: derive
		// the slot from the clock, so a job that starts late still names
		// the slot it was woken for.
		c.Schedule(e.sched, cron.FuncJob(func() { s.fire(ctx, e, e.sched.Prev(s.now()), false) }))
	}
	// Start cron before computing catch-up: a slot falling between the two
	// is then fired by both (and deduplicated) instead of by neither.
	c.Start()
	s.log.Info("scheduler started", "entries", len(s.entries))

	var catchUp sync.WaitGroup
	now := s.now()
	for i := range s.entries {
		e := &s.entries[i]
		if slot, ok := e.missed(now); ok {
			catchUp.Go(func() { s.fire(ctx, e, slot, true) })
		}
	}

	<-ctx.Done()
	<-c.Stop().Done()
	catchUp.Wait()
	s.log.Info("scheduler stopped")
	return nil
}

// missed returns the latest slot at or before now if it is within grace.
// Whether it already ran is left to Redis: enqueueing a done slot is a
// harmless TaskID conflict, and no local record could see other replicas.
func (e *entry) missed(now time.Time) (time.Time, bool) {
	if e.grace <= 0 {
		return time.Time{}, false
	}
	slot := e.sched.Prev(now)
	if slot.IsZero() || now.Sub(slot) > e.grace {
		return time.Time{}, false
	}
	return slot, true
}

// SlotTaskID is the TaskID of a task type's slot: the type and the slot in
// RFC 3339 UTC, e.g. backup:database:2026-11-28T03:00:00Z. Deterministic so
// replicas collide on it; per slot so an archived run never blocks the next.
func SlotTaskID(taskType string, slot time.Time) string {
	return taskType + ":" + slot.UTC().Format(time.RFC3339)
}

// fire enqueues one slot, retrying failures while the slot is within grace
// and its successor has not come. It logs rather than returns: nobody waits
// on a cron job.
func (s *Scheduler) fire(ctx context.Context, e *entry, slot time.Time, catchUp bool) {
	slot = slot.UTC()
	id := SlotTaskID(e.TaskType, slot)
	log := s.log.With("entry", e.Name, "task_type", e.TaskType, "task_id", id, "catch_up", catchUp)
	defer func() {
		// robfig's default chain does not recover; a bad Payload function
		// must not take the process (and every other entry) down.
		if r := recover(); r != nil {
			log.Error("scheduled job panicked", "panic", fmt.Sprint(r))
		}
	}()
	if slot.IsZero() {
		log.Error("scheduled job found no slot")
		return
	}
	payload, err := e.Payload(slot)
	if err != nil {
		log.Error("encode scheduled payload", "err", err)
		return
	}
	task, err := tasks.Build(e.TaskType, payload, id)
	if err != nil {
		log.Error("build scheduled task", "err", err)
		return
	}
	deadline := slot.Add(e.grace)
	if next := e.sched.Next(slot); !next.IsZero() && next.Before(deadline) {
		// Past the next slot, that one is "the latest" and gets fired on
		// its own; retrying this one would break "only the latest".
		deadline = next
	}
	delay := s.retryMin
	for attempt := 1; ; attempt++ {
		err := s.enqueue(ctx, task, e.retention)
		switch {
		case err == nil:
			log.Info("slot enqueued")
			return
		case errors.Is(err, asynq.ErrTaskIDConflict):
			log.Debug("slot already enqueued")
			return
		}
		if ctx.Err() != nil || s.now().Add(delay).After(deadline) {
			log.Error("enqueue slot: giving up", "err", err, "attempts", attempt)
			return
		}
		log.Warn("enqueue slot failed, will retry", "err", err, "attempt", attempt, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			log.Error("enqueue slot: giving up at shutdown", "err", err, "attempts", attempt)
			return
		case <-t.C:
		}
		delay = min(2*delay, s.retryMax)
	}
}

// enqueue makes one attempt. It ignores ctx's cancellation (but not its
// values) so an attempt started before shutdown finishes; the timeout keeps
// a dead Redis from holding shutdown forever.
func (s *Scheduler) enqueue(ctx context.Context, task *asynq.Task, retention time.Duration) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.enqueueTimeout)
	defer cancel()
	_, err := s.enq.EnqueueContext(ctx, task, asynq.Retention(retention))
	return err
}

// cronLogger sends robfig's chatter (every wake-up) to debug and its errors
// to error, instead of its default of printing to stdout.
type cronLogger struct{ log *slog.Logger }

func (l cronLogger) Info(msg string, kv ...any) { l.log.Debug("cron: "+msg, kv...) }

func (l cronLogger) Error(err error, msg string, kv ...any) {
	l.log.Error("cron: "+msg, append(kv, "err", err)...)
}
