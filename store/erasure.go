package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// RequestErasure records an erasure request for a lead and its lead:erase
// outbox row in one transaction. It returns the outbox row id to dispatch,
// "" when the lead was erased (or its erasure requested) before, and
// ErrNotFound for an unknown lead.
func (s *Store) RequestErasure(ctx context.Context, leadID, by string, now time.Time, taskType string, payload func(string) ([]byte, error)) (string, error) {
	if _, err := uuid.Parse(leadID); err != nil {
		return "", ErrNotFound
	}
	var outboxID string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `select true from cepjobs.leads where id = $1 for update`, leadID).Scan(&exists); err != nil {
			return mapErr(err)
		}
		tag, err := tx.Exec(ctx, `
			insert into cepjobs.erasures (lead_id, requested_by, requested_at) values ($1, $2, $3)
			on conflict (lead_id) do nothing`, leadID, by, now)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		p, err := payload(leadID)
		if err != nil {
			return err
		}
		outboxID, err = insertOutbox(ctx, tx, taskType, p, now)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("request erasure: %w", err)
	}
	return outboxID, nil
}

// Erasure is the state of a lead's erasure.
type Erasure struct {
	LeadID      string
	RequestedAt time.Time
	CompletedAt *time.Time
	Steps       map[string]string
}

// ErasureOf returns a lead's erasure record, or ErrNotFound.
func (s *Store) ErasureOf(ctx context.Context, leadID string) (Erasure, error) {
	var (
		e     Erasure
		steps []byte
	)
	err := s.pool.QueryRow(ctx, `select lead_id::text, requested_at, completed_at, steps from cepjobs.erasures where lead_id = $1`, leadID).
		Scan(&e.LeadID, &e.RequestedAt, &e.CompletedAt, &steps)
	if err != nil {
		return Erasure{}, fmt.Errorf("erasure: %w", mapErr(err))
	}
	if err := json.Unmarshal(steps, &e.Steps); err != nil {
		return Erasure{}, fmt.Errorf("erasure steps: %w", err)
	}
	return e, nil
}

// RecordErasureStep notes the outcome of one step (e.g. "mailchimp":
// "deleted") before the next one runs, so a retry does not repeat it.
func (s *Store) RecordErasureStep(ctx context.Context, leadID, step, outcome string, now time.Time) error {
	_, err := s.pool.Exec(ctx, `update cepjobs.erasures set steps = steps || jsonb_build_object($2::text, $3::text) where lead_id = $1`,
		leadID, step, outcome)
	if err != nil {
		return fmt.Errorf("record erasure step: %w", err)
	}
	return nil
}

// anonymise blanks every personal field of the selected leads; the rows stay
// (course, campus, campaign, source, dates, consent flags and text version)
// for statistics. Transactional emails to them go too.
const anonymise = `
	with target as (%s),
	gone as (
		delete from cepjobs.email_messages m using cepjobs.leads l, target t
		where l.id = t.id and m.to_email = l.email
	),
	refs as (
		-- Vendor references can be derived from the address (Mailchimp's
		-- member id is its MD5).
		update cepjobs.lead_deliveries d set vendor_ref = null, detail = '{}'
		from target t where d.lead_id = t.id
	)
	update cepjobs.leads l set
		external_id = null, first_name = '', last_name = null, email = '', email_normalized = 'erased:' || l.id::text,
		phone = null, message = null, client_ip = null, client_user_agent = null, utm = '{}',
		erased_at = $1
	from target t where l.id = t.id and l.erased_at is null`

// EraseLead anonymises one lead and completes its erasure record.
func (s *Store) EraseLead(ctx context.Context, leadID string, now time.Time) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf(anonymise, `select $2::uuid as id`), now, leadID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `update cepjobs.erasures set completed_at = $2, steps = steps || '{"postgres":"anonymised"}' where lead_id = $1`, leadID, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("erase lead: %w", err)
	}
	return nil
}

// AnonymiseOlderThan anonymises every lead received before cutoff (RGPD
// retention) and returns how many.
func (s *Store) AnonymiseOlderThan(ctx context.Context, cutoff, now time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, fmt.Sprintf(anonymise, `select id from cepjobs.leads where received_at < $2 and erased_at is null`), now, cutoff)
	if err != nil {
		return 0, fmt.Errorf("anonymise old leads: %w", err)
	}
	return tag.RowsAffected(), nil
}
