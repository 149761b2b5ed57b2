package store

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"
)

// Delivery statuses.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliverySkipped   = "skipped"
	DeliveryFailed    = "failed"
)

// LeadDetail is everything the automation worker needs to deliver a lead,
// personal data included. It never leaves the worker except towards the
// vendors the person consented to.
type LeadDetail struct {
	ID                 string
	ExternalID         string
	FirstName          string
	LastName           string
	Email              string
	Phone              string
	Course             string
	Campaign           string
	Site               string
	Source             string
	Message            string
	UTM                map[string]string
	ConsentPrivacy     bool
	ConsentMarketing   bool
	ConsentTextVersion string
	ConsentAcceptedAt  *time.Time
	ClientIP           *netip.Addr
	ClientUserAgent    string
	ReceivedAt         time.Time
	Status             string
}

// LeadDetail loads a lead, or ErrNotFound.
func (s *Store) LeadDetail(ctx context.Context, id string) (LeadDetail, error) {
	var (
		l   LeadDetail
		utm []byte
	)
	err := s.pool.QueryRow(ctx, `
		select id::text, coalesce(external_id, ''), first_name, coalesce(last_name, ''), email, coalesce(phone, ''),
			course, coalesce(campaign, ''), coalesce(site, ''), source, coalesce(message, ''), utm,
			consent_privacy, consent_marketing, consent_text_version, consent_accepted_at,
			client_ip, coalesce(client_user_agent, ''), received_at, status
		from cepjobs.leads where id = $1`, id).Scan(
		&l.ID, &l.ExternalID, &l.FirstName, &l.LastName, &l.Email, &l.Phone,
		&l.Course, &l.Campaign, &l.Site, &l.Source, &l.Message, &utm,
		&l.ConsentPrivacy, &l.ConsentMarketing, &l.ConsentTextVersion, &l.ConsentAcceptedAt,
		&l.ClientIP, &l.ClientUserAgent, &l.ReceivedAt, &l.Status)
	if err != nil {
		return LeadDetail{}, fmt.Errorf("load lead: %w", mapErr(err))
	}
	if err := json.Unmarshal(utm, &l.UTM); err != nil {
		return LeadDetail{}, fmt.Errorf("load lead: utm: %w", err)
	}
	return l, nil
}

// PlannedDelivery is one channel as the fan-out decided it: pending (a task
// will deliver it) or skipped with a reason.
type PlannedDelivery struct {
	Channel string
	Status  string // DeliveryPending or DeliverySkipped
	Reason  string
}

// PlanDeliveries records the fan-out of a lead: one row per channel, inserted
// only if absent (a re-run after a crash keeps what the first run and any
// delivery since recorded), and the lead marked processing. It returns the
// rows as they are now, and the lead's status.
func (s *Store) PlanDeliveries(ctx context.Context, leadID string, plan []PlannedDelivery, now time.Time) ([]Delivery, string, error) {
	var (
		out    []Delivery
		status string
	)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Lock the lead: fan-out and the last delivery's status update
		// must not interleave.
		if err := tx.QueryRow(ctx, `select status from cepjobs.leads where id = $1 for update`, leadID).Scan(&status); err != nil {
			return mapErr(err)
		}
		for _, p := range plan {
			_, err := tx.Exec(ctx, `
				insert into cepjobs.lead_deliveries (lead_id, channel, status, reason, updated_at, created_at)
				values ($1, $2, $3, nullif($4, ''), $5, $5)
				on conflict (lead_id, channel) do nothing`, leadID, p.Channel, p.Status, p.Reason, now)
			if err != nil {
				return err
			}
		}
		if status == LeadQueued {
			if _, err := tx.Exec(ctx, `update cepjobs.leads set status = 'processing', status_changed_at = $2 where id = $1`, leadID, now); err != nil {
				return err
			}
			status = LeadProcessing
		}
		var err error
		out, err = deliveries(ctx, tx, leadID)
		if err != nil {
			return err
		}
		status, err = settleLead(ctx, tx, leadID, status, out, now)
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("plan deliveries: %w", err)
	}
	return out, status, nil
}

func deliveries(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, leadID string) ([]Delivery, error) {
	rows, err := q.Query(ctx, `
		select channel, status, attempts, coalesce(last_error, ''), coalesce(reason, ''), coalesce(vendor_ref, ''),
			detail, attempt_started_at, updated_at, delivered_at
		from cepjobs.lead_deliveries where lead_id = $1 order by channel`, leadID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Delivery, error) {
		var d Delivery
		err := r.Scan(&d.Channel, &d.Status, &d.Attempts, &d.LastError, &d.Reason, &d.VendorRef,
			&d.Detail, &d.AttemptStartedAt, &d.UpdatedAt, &d.DeliveredAt)
		return d, err
	})
}

// settleLead sets the lead's final status once no delivery is pending:
// completed when nothing failed, failed when nothing was delivered and
// something failed, partial otherwise.
func settleLead(ctx context.Context, tx pgx.Tx, leadID, status string, ds []Delivery, now time.Time) (string, error) {
	if status != LeadProcessing {
		return status, nil
	}
	var delivered, failed int
	for _, d := range ds {
		switch d.Status {
		case DeliveryPending:
			return status, nil
		case DeliveryDelivered:
			delivered++
		case DeliveryFailed:
			failed++
		}
	}
	final := LeadCompleted
	switch {
	case failed > 0 && delivered == 0:
		final = LeadFailed
	case failed > 0:
		final = LeadPartial
	}
	_, err := tx.Exec(ctx, `update cepjobs.leads set status = $2, status_changed_at = $3 where id = $1`, leadID, final, now)
	return final, err
}

// BeginAttempt records the intent to call the vendor for a pending
// delivery, before the call. It returns the row: a delivery that is no
// longer pending (delivered, skipped or failed by an earlier run) must not be
// attempted again.
func (s *Store) BeginAttempt(ctx context.Context, leadID, channel string, now time.Time) (Delivery, error) {
	var d Delivery
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
			update cepjobs.lead_deliveries set attempts = attempts + 1, attempt_started_at = $3, updated_at = $3
			where lead_id = $1 and channel = $2 and status = 'pending'`, leadID, channel, now)
		if err != nil {
			return err
		}
		ds, err := deliveries(ctx, tx, leadID)
		if err != nil {
			return err
		}
		for _, x := range ds {
			if x.Channel == channel {
				d = x
				return nil
			}
		}
		return ErrNotFound
	})
	if err != nil {
		return Delivery{}, fmt.Errorf("begin delivery attempt: %w", err)
	}
	return d, nil
}

// DeliveryOutcome is the result of one attempt.
type DeliveryOutcome struct {
	// Status is DeliveryDelivered, DeliverySkipped or DeliveryFailed; empty
	// for a transient failure (the row stays pending for the retry).
	Status    string
	VendorRef string
	Reason    string
	// Error is recorded as last_error; never personal data.
	Error string
	// Detail, when non-nil, replaces the row's progress record.
	Detail json.RawMessage
}

// RecordDelivery records an attempt's outcome and, when it was the last
// pending channel, settles the lead's status, in one transaction. It returns
// the lead's status afterwards.
func (s *Store) RecordDelivery(ctx context.Context, leadID, channel string, o DeliveryOutcome, now time.Time) (string, error) {
	var status string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `select status from cepjobs.leads where id = $1 for update`, leadID).Scan(&status); err != nil {
			return mapErr(err)
		}
		var delivered *time.Time
		if o.Status == DeliveryDelivered {
			delivered = &now
		}
		_, err := tx.Exec(ctx, `
			update cepjobs.lead_deliveries set
				status = coalesce(nullif($3, ''), status),
				vendor_ref = coalesce(nullif($4, ''), vendor_ref),
				reason = coalesce(nullif($5, ''), reason),
				last_error = nullif($6, ''),
				detail = coalesce($7, detail),
				delivered_at = coalesce($8, delivered_at),
				updated_at = $9
			where lead_id = $1 and channel = $2 and status = 'pending'`,
			leadID, channel, o.Status, o.VendorRef, o.Reason, truncate(o.Error, 500), nullJSON(o.Detail), delivered, now)
		if err != nil {
			return err
		}
		ds, err := deliveries(ctx, tx, leadID)
		if err != nil {
			return err
		}
		status, err = settleLead(ctx, tx, leadID, status, ds, now)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("record delivery: %w", err)
	}
	return status, nil
}

// SaveDeliveryDetail stores a pending delivery's progress (e.g. which of
// several recipients already got their message) right after each step, so a
// retry resumes instead of repeating.
func (s *Store) SaveDeliveryDetail(ctx context.Context, leadID, channel string, detail json.RawMessage, now time.Time) error {
	_, err := s.pool.Exec(ctx, `
		update cepjobs.lead_deliveries set detail = $3, updated_at = $4
		where lead_id = $1 and channel = $2 and status = 'pending'`, leadID, channel, detail, now)
	if err != nil {
		return fmt.Errorf("save delivery detail: %w", err)
	}
	return nil
}

func nullJSON(b json.RawMessage) any {
	if b == nil {
		return nil
	}
	return []byte(b)
}
