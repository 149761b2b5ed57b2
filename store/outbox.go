package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// InlineGrace is how long the relay leaves a fresh outbox row alone: the
// request that wrote it enqueues it right after commit, and the relay only
// steps in when that did not happen.
const InlineGrace = 10 * time.Second

// OutboxRow is one task waiting to reach Redis.
type OutboxRow struct {
	ID        string
	TaskType  string
	Payload   []byte
	CreatedAt time.Time
	Attempts  int
}

func insertOutbox(ctx context.Context, tx pgx.Tx, taskType string, payload []byte, now time.Time) (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", err
	}
	_, err = tx.Exec(ctx, `
		insert into cepjobs.outbox (id, task_type, payload, created_at, available_at)
		values ($1, $2, $3, $4, $5)`, id, taskType, payload, now, now.Add(InlineGrace))
	if err != nil {
		return "", err
	}
	return id.String(), nil
}

// markDispatchedSQL marks rows by primary key. It does not say "and
// dispatched_at is null": the planner would then AND in a bitmap scan of the
// whole pending index, dead entries included; a row marked twice (relay and
// request racing) keeps its first time and count.
const markDispatchedSQL = `
		update cepjobs.outbox set
			attempts = attempts + (dispatched_at is null)::int,
			dispatched_at = coalesce(dispatched_at, $2),
			last_error = null
		where id = any($1::uuid[])`

// MarkDispatched records that the row's task reached Redis.
func (s *Store) MarkDispatched(ctx context.Context, id string, now time.Time) error {
	_, err := s.pool.Exec(ctx, markDispatchedSQL, []string{id}, now)
	if err != nil {
		return fmt.Errorf("mark outbox row dispatched: %w", err)
	}
	return nil
}

// MarkDispatchedBatch records that the rows' tasks reached Redis, in one
// statement and one round trip. The update looks rows up by primary key:
// sequential scans are off for it, because the plan pgx's statement cache
// keeps is made while the table is young (or its statistics stale), and a
// sequential scan of the outbox per batch is what that plan chose.
func (s *Store) MarkDispatchedBatch(ctx context.Context, ids []string, now time.Time) error {
	b := &pgx.Batch{}
	b.Queue("begin")
	b.Queue("set local enable_seqscan = off")
	b.Queue(markDispatchedSQL, ids, now)
	b.Queue("commit")
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("mark %d outbox rows dispatched: %w", len(ids), err)
	}
	return nil
}

// DeferDispatch records a failed dispatch and when to try again.
func (s *Store) DeferDispatch(ctx context.Context, id string, reason string, retryAt time.Time) error {
	_, err := s.pool.Exec(ctx, `
		update cepjobs.outbox set attempts = attempts + 1, last_error = $2, available_at = $3
		where id = $1 and dispatched_at is null`, id, truncate(reason, 500), retryAt)
	if err != nil {
		return fmt.Errorf("defer outbox row: %w", err)
	}
	return nil
}

// LeaveToRelay writes an outbox row, due at once, for a task that has no
// row of its own and that could not be enqueued (a queued lead whose
// lead:process task Redis refused): the relay sends it when Redis is back.
// A row already there under that id is left as it is.
func (s *Store) LeaveToRelay(ctx context.Context, id, taskType string, payload []byte, reason string, now time.Time) error {
	_, err := s.pool.Exec(ctx, `
		insert into cepjobs.outbox (id, task_type, payload, created_at, available_at, attempts, last_error)
		values ($1, $2, $3, $4, $4, 1, $5)
		on conflict (id) do nothing`, id, taskType, payload, now, truncate(reason, 500))
	if err != nil {
		return fmt.Errorf("leave task to the outbox relay: %w", err)
	}
	return nil
}

// DispatchResult is what the relay's callback says about one row.
type DispatchResult struct {
	Err error
	// RetryAt is when to try a failed row again.
	RetryAt time.Time
}

// RelayOutbox claims up to limit due rows that no other relay holds (FOR
// UPDATE SKIP LOCKED, so any number of intake replicas can relay at once),
// calls dispatch for each, and records the outcome in the same transaction.
// It returns how many rows were dispatched and how many failed.
func (s *Store) RelayOutbox(ctx context.Context, now time.Time, limit int, dispatch func(context.Context, OutboxRow) DispatchResult) (sent, failed int, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		sent, failed = 0, 0
		// A plain index scan of the pending index in available_at order
		// stops at limit and marks the dead entries it meets (rows
		// dispatched since the last vacuum) so later scans skip them. A
		// bitmap scan would read them all every time, and a sequential scan
		// (chosen while the planner has no statistics on available_at)
		// would read the whole table: every second, on every replica.
		if _, err := tx.Exec(ctx, "set local enable_bitmapscan = off; set local enable_seqscan = off"); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `
			select id::text, task_type, payload, created_at, attempts from cepjobs.outbox
			where dispatched_at is null and available_at <= $1
			order by available_at
			limit $2
			for update skip locked`, now, limit)
		if err != nil {
			return err
		}
		due, err := pgx.CollectRows(rows, pgx.RowToStructByPos[OutboxRow])
		if err != nil {
			return err
		}
		for _, r := range due {
			res := dispatch(ctx, r)
			if res.Err == nil {
				sent++
				_, err = tx.Exec(ctx, `update cepjobs.outbox set dispatched_at = $2, attempts = attempts + 1, last_error = null where id = $1`, r.ID, now)
			} else {
				failed++
				_, err = tx.Exec(ctx, `update cepjobs.outbox set attempts = attempts + 1, last_error = $2, available_at = $3 where id = $1`,
					r.ID, truncate(res.Err.Error(), 500), res.RetryAt)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("relay outbox: %w", err)
	}
	return sent, failed, nil
}

// OutboxBacklog counts the rows not yet dispatched and the age of the oldest.
func (s *Store) OutboxBacklog(ctx context.Context, now time.Time) (n int, oldest time.Duration, err error) {
	var first *time.Time
	err = s.pool.QueryRow(ctx, `select count(*), min(created_at) from cepjobs.outbox where dispatched_at is null`).Scan(&n, &first)
	if err != nil {
		return 0, 0, fmt.Errorf("outbox backlog: %w", err)
	}
	if first != nil {
		oldest = now.Sub(*first)
	}
	return n, oldest, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// QueueTask writes an outbox row on its own, for a task that goes with no
// other write (an on-demand backup): it returns the row id, which is also the
// TaskID, for the caller to dispatch at once.
func (s *Store) QueueTask(ctx context.Context, taskType string, payload []byte, now time.Time) (string, error) {
	var id string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		id, err = insertOutbox(ctx, tx, taskType, payload, now)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("queue task: %w", err)
	}
	return id, nil
}
