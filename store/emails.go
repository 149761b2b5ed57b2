package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Email statuses.
const (
	EmailPending = "pending"
	EmailSent    = "sent"
	EmailFailed  = "failed"
)

// Email is a stored transactional email: the email:send task carries its id
// only, so addresses and bodies stay out of Redis.
type Email struct {
	ID        string
	ToEmail   string
	ToName    string
	Subject   string
	Text      string
	HTML      string
	Template  string
	MergeVars map[string]string
	Tags      []string
	Status    string
	Attempts  int
	LastError string
	VendorRef string
	CreatedAt time.Time
	SentAt    *time.Time
}

// QueueEmail stores an email and its email:send outbox row in one
// transaction; payload builds the task payload from the email id. It returns
// the email id and the outbox id to dispatch.
func (s *Store) QueueEmail(ctx context.Context, e Email, now time.Time, taskType string, payload func(emailID string) ([]byte, error)) (emailID, outboxID string, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		id, err := uuid.NewV7()
		if err != nil {
			return err
		}
		vars, err := json.Marshal(nonNil(e.MergeVars))
		if err != nil {
			return err
		}
		tags := e.Tags
		if tags == nil {
			tags = []string{}
		}
		_, err = tx.Exec(ctx, `
			insert into cepjobs.email_messages (id, to_email, to_name, subject, text_body, html_body, template, merge_vars, tags, created_at)
			values ($1, $2, nullif($3, ''), $4, nullif($5, ''), nullif($6, ''), nullif($7, ''), $8, $9, $10)`,
			id, e.ToEmail, e.ToName, e.Subject, e.Text, e.HTML, e.Template, vars, tags, now)
		if err != nil {
			return err
		}
		p, err := payload(id.String())
		if err != nil {
			return err
		}
		outboxID, err = insertOutbox(ctx, tx, taskType, p, now)
		emailID = id.String()
		return err
	})
	if err != nil {
		return "", "", fmt.Errorf("queue email: %w", err)
	}
	return emailID, outboxID, nil
}

// BeginEmailAttempt records the intent to send and returns the email; a
// status other than pending means it must not be sent again.
func (s *Store) BeginEmailAttempt(ctx context.Context, id string, now time.Time) (Email, error) {
	var (
		e    Email
		vars []byte
	)
	err := s.pool.QueryRow(ctx, `
		with upd as (
			update cepjobs.email_messages set attempts = attempts + 1, attempt_started_at = $2
			where id = $1 and status = 'pending'
		)
		select id::text, to_email, coalesce(to_name, ''), subject, coalesce(text_body, ''), coalesce(html_body, ''),
			coalesce(template, ''), merge_vars, tags, status, attempts, coalesce(last_error, ''), coalesce(vendor_ref, ''),
			created_at, sent_at
		from cepjobs.email_messages where id = $1`, id, now).Scan(
		&e.ID, &e.ToEmail, &e.ToName, &e.Subject, &e.Text, &e.HTML, &e.Template, &vars, &e.Tags,
		&e.Status, &e.Attempts, &e.LastError, &e.VendorRef, &e.CreatedAt, &e.SentAt)
	if err != nil {
		return Email{}, fmt.Errorf("begin email attempt: %w", mapErr(err))
	}
	if err := json.Unmarshal(vars, &e.MergeVars); err != nil {
		return Email{}, fmt.Errorf("begin email attempt: merge vars: %w", err)
	}
	return e, nil
}

// RecordEmail records the outcome of a send: status EmailSent or EmailFailed,
// or empty for a transient failure that leaves it pending.
func (s *Store) RecordEmail(ctx context.Context, id, status, vendorRef, errText string, now time.Time) error {
	var sent *time.Time
	if status == EmailSent {
		sent = &now
	}
	_, err := s.pool.Exec(ctx, `
		update cepjobs.email_messages set
			status = coalesce(nullif($2, ''), status),
			vendor_ref = coalesce(nullif($3, ''), vendor_ref),
			last_error = nullif($4, ''),
			sent_at = coalesce($5, sent_at)
		where id = $1 and status = 'pending'`, id, status, vendorRef, truncate(errText, 500), sent)
	if err != nil {
		return fmt.Errorf("record email: %w", err)
	}
	return nil
}
