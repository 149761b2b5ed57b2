package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Content job statuses.
const (
	ContentQueued        = "queued"
	ContentRunning       = "running"
	ContentWaitingBudget = "waiting_budget"
	ContentCompleted     = "completed"
	ContentFailed        = "failed"
)

// Callback statuses.
const (
	CallbackPending   = "pending"
	CallbackDelivered = "delivered"
	CallbackFailed    = "failed"
)

// ContentJob is one AI content request and its outcome.
type ContentJob struct {
	ID               string
	Kind             string
	Language         string
	Input            json.RawMessage
	CallbackURL      string
	Status           string
	Output           json.RawMessage
	Model            string
	PromptVersion    string
	PromptTokens     int
	CompletionTokens int
	CostUSD          float64
	Attempts         int
	Error            string
	CallbackStatus   string
	CallbackAttempts int
	CallbackError    string
	SubmittedBy      string
	CreatedAt        time.Time
	StartedAt        *time.Time
	FinishedAt       *time.Time
	UpdatedAt        time.Time
}

// CreateContentJob stores a job and its content:generate outbox row in one
// transaction; payload builds the task payload from the job id.
func (s *Store) CreateContentJob(ctx context.Context, j ContentJob, now time.Time, taskType string, payload func(id string) ([]byte, error)) (id, outboxID string, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		u, err := uuid.NewV7()
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `
			insert into cepjobs.content_jobs (id, kind, language, input, callback_url, submitted_by, created_at, updated_at)
			values ($1, $2, $3, $4, nullif($5, ''), $6, $7, $7)`,
			u, j.Kind, j.Language, []byte(j.Input), j.CallbackURL, j.SubmittedBy, now)
		if err != nil {
			return err
		}
		p, err := payload(u.String())
		if err != nil {
			return err
		}
		id = u.String()
		outboxID, err = insertOutbox(ctx, tx, taskType, p, now)
		return err
	})
	if err != nil {
		return "", "", fmt.Errorf("create content job: %w", err)
	}
	return id, outboxID, nil
}

const contentColumns = `id::text, kind, language, input, coalesce(callback_url, ''), status, output,
	coalesce(model, ''), coalesce(prompt_version, ''), prompt_tokens, completion_tokens, cost_usd::float8,
	attempts, coalesce(error, ''), coalesce(callback_status, ''), callback_attempts, coalesce(callback_error, ''),
	submitted_by, created_at, started_at, finished_at, updated_at`

func scanContent(row pgx.Row) (ContentJob, error) {
	var j ContentJob
	var input, output []byte
	err := row.Scan(&j.ID, &j.Kind, &j.Language, &input, &j.CallbackURL, &j.Status, &output,
		&j.Model, &j.PromptVersion, &j.PromptTokens, &j.CompletionTokens, &j.CostUSD,
		&j.Attempts, &j.Error, &j.CallbackStatus, &j.CallbackAttempts, &j.CallbackError,
		&j.SubmittedBy, &j.CreatedAt, &j.StartedAt, &j.FinishedAt, &j.UpdatedAt)
	j.Input, j.Output = input, output
	return j, err
}

// ContentJob loads a job, or ErrNotFound.
func (s *Store) ContentJob(ctx context.Context, id string) (ContentJob, error) {
	if _, err := uuid.Parse(id); err != nil {
		return ContentJob{}, ErrNotFound
	}
	j, err := scanContent(s.pool.QueryRow(ctx, `select `+contentColumns+` from cepjobs.content_jobs where id = $1`, id))
	if err != nil {
		return ContentJob{}, fmt.Errorf("load content job: %w", mapErr(err))
	}
	return j, nil
}

// StartContentJob marks an unfinished job running and counts the attempt;
// it returns the job as it was, so a finished job is not run again.
func (s *Store) StartContentJob(ctx context.Context, id string, now time.Time) (ContentJob, error) {
	var j ContentJob
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		j, err = scanContent(tx.QueryRow(ctx, `select `+contentColumns+` from cepjobs.content_jobs where id = $1 for update`, id))
		if err != nil {
			return mapErr(err)
		}
		if j.Status == ContentCompleted || j.Status == ContentFailed {
			return nil
		}
		_, err = tx.Exec(ctx, `
			update cepjobs.content_jobs set status = 'running', attempts = attempts + 1,
				started_at = coalesce(started_at, $2), updated_at = $2, error = null
			where id = $1`, id, now)
		return err
	})
	if err != nil {
		return ContentJob{}, fmt.Errorf("start content job: %w", err)
	}
	return j, nil
}

// WaitContentJob records why a job is not running (the daily budget is
// spent, the endpoint throttles) until it is retried.
func (s *Store) WaitContentJob(ctx context.Context, id, status, reason string, now time.Time) error {
	_, err := s.pool.Exec(ctx, `
		update cepjobs.content_jobs set status = $2, error = $3, updated_at = $4
		where id = $1 and status not in ('completed', 'failed')`, id, status, truncate(reason, 1000), now)
	if err != nil {
		return fmt.Errorf("record content job wait: %w", err)
	}
	return nil
}

// LLMUsage is the cost of one generation run (one or several calls).
type LLMUsage struct {
	Model            string
	PromptTokens     int
	CompletionTokens int
	CostUSD          float64
}

// RecordLLMUsage adds spending to the day's total, whatever became of the
// job.
func (s *Store) RecordLLMUsage(ctx context.Context, jobID string, u LLMUsage, now time.Time) error {
	_, err := s.pool.Exec(ctx, `
		insert into cepjobs.llm_usage (job_id, day, model, prompt_tokens, completion_tokens, cost_usd, created_at)
		values ($1, $2, $3, $4, $5, $6, $7)`,
		jobID, now.UTC().Format(time.DateOnly), u.Model, u.PromptTokens, u.CompletionTokens, u.CostUSD, now)
	if err != nil {
		return fmt.Errorf("record llm usage: %w", err)
	}
	return nil
}

// SpentOn returns the day's LLM spending in USD (day in UTC).
func (s *Store) SpentOn(ctx context.Context, day time.Time) (float64, error) {
	var v float64
	err := s.pool.QueryRow(ctx, `select coalesce(sum(cost_usd), 0)::float8 from cepjobs.llm_usage where day = $1`,
		day.UTC().Format(time.DateOnly)).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("llm spending: %w", err)
	}
	return v, nil
}

// ContentOutcome is how a job ended.
type ContentOutcome struct {
	Status           string // ContentCompleted or ContentFailed
	Output           json.RawMessage
	Model            string
	PromptVersion    string
	PromptTokens     int
	CompletionTokens int
	CostUSD          float64
	Error            string
}

// FinishContentJob records the outcome and, when the job has a callback URL,
// writes its content:callback outbox row in the same transaction. It returns
// that row's id ("" without a callback).
func (s *Store) FinishContentJob(ctx context.Context, id string, o ContentOutcome, now time.Time, callbackType string, payload func(id string) ([]byte, error)) (string, error) {
	var outboxID string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var cb string
		err := tx.QueryRow(ctx, `
			update cepjobs.content_jobs set status = $2, output = $3, model = nullif($4, ''), prompt_version = nullif($5, ''),
				prompt_tokens = prompt_tokens + $6, completion_tokens = completion_tokens + $7, cost_usd = cost_usd + $8,
				error = nullif($9, ''), finished_at = $10, updated_at = $10,
				callback_status = case when callback_url is null then null else 'pending' end
			where id = $1 and status not in ('completed', 'failed')
			returning coalesce(callback_url, '')`,
			id, o.Status, nullJSON(o.Output), o.Model, o.PromptVersion, o.PromptTokens, o.CompletionTokens, o.CostUSD,
			truncate(o.Error, 1000), now).Scan(&cb)
		if err == pgx.ErrNoRows {
			return nil // finished before: nothing to do
		}
		if err != nil || cb == "" {
			return err
		}
		p, err := payload(id)
		if err != nil {
			return err
		}
		outboxID, err = insertOutbox(ctx, tx, callbackType, p, now)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("finish content job: %w", err)
	}
	return outboxID, nil
}

// RecordCallback records a callback attempt: status CallbackDelivered or
// CallbackFailed, or empty for a transient failure.
func (s *Store) RecordCallback(ctx context.Context, id, status, errText string, now time.Time) error {
	_, err := s.pool.Exec(ctx, `
		update cepjobs.content_jobs set callback_attempts = callback_attempts + 1,
			callback_status = coalesce(nullif($2, ''), callback_status), callback_error = nullif($3, ''), updated_at = $4
		where id = $1 and callback_status = 'pending'`, id, status, truncate(errText, 500), now)
	if err != nil {
		return fmt.Errorf("record callback: %w", err)
	}
	return nil
}
