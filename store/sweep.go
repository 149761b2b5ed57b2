package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// SweepCursor is where a sweep pass stopped in the queued backlog, ordered
// by (received_at, id). The zero value starts at the oldest lead.
type SweepCursor struct {
	ReceivedAt time.Time
	LeadID     string
}

// StaleLead is a lead still queued past the sweep's bound, with what its
// lead:process outbox row says.
type StaleLead struct {
	LeadID     string
	ReceivedAt time.Time
	// TaskID is the lead:process task's TaskID: the lead id, or for a lead
	// stored before migration 008 the id of its outbox row then.
	TaskID string
	// Pending says the outbox row is there and not dispatched yet: the
	// outbox relay owns it. A dispatched row, or one purged (the maintenance
	// purge removes dispatched rows after 7 days), is not pending.
	Pending bool
}

// StaleQueuedLeads returns up to limit leads still queued that were received
// before receivedBefore, after the cursor in (received_at, id) order, each
// with its lead:process outbox row. The leads come from a partial index
// (migration 005) and each row by primary key, so a pass costs O(limit)
// whatever the size of the tables.
func (s *Store) StaleQueuedLeads(ctx context.Context, receivedBefore time.Time, after SweepCursor, limit int) ([]StaleLead, error) {
	from, fromID := cursorStart(after.ReceivedAt, after.LeadID)
	rows, err := s.pool.Query(ctx, staleQueuedLeadsSQL, receivedBefore, from, fromID, limit)
	if err != nil {
		return nil, fmt.Errorf("stale queued leads: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[StaleLead])
	if err != nil {
		return nil, fmt.Errorf("stale queued leads: %w", err)
	}
	return out, nil
}

// cursorStart turns a sweep cursor's time and lead id into query
// arguments: the zero cursor starts before the oldest row.
func cursorStart(at time.Time, leadID string) (time.Time, string) {
	if at.IsZero() {
		at = time.Unix(0, 0)
	}
	if leadID == "" {
		leadID = "00000000-0000-0000-0000-000000000000"
	}
	return at, leadID
}

// staleQueuedLeadsSQL: $1 received before, $2 and $3 the cursor, $4 the
// limit.
const staleQueuedLeadsSQL = `
		select l.id::text, l.received_at, t.id::text,
			exists (select 1 from cepjobs.outbox o where o.id = t.id and o.dispatched_at is null)
		from cepjobs.leads l
		cross join lateral (
			select coalesce((select g.outbox_id from cepjobs.outbox_lead_legacy g where g.lead_id = l.id), l.id) as id
		) t
		where l.status = 'queued' and l.received_at < $1
			and (l.received_at, l.id) > ($2, $3::uuid)
		order by l.received_at, l.id
		limit $4`

// DeliveryCursor is where a sweep pass stopped among pending deliveries,
// ordered by (created_at, lead_id, channel). The zero value starts at the
// oldest.
type DeliveryCursor struct {
	CreatedAt time.Time
	LeadID    string
	Channel   string
}

// StaleDelivery is a delivery still pending past the sweep's bound.
type StaleDelivery struct {
	LeadID    string
	Channel   string
	CreatedAt time.Time
}

// StalePendingDeliveries returns up to limit deliveries still pending that
// were planned before createdBefore, after the cursor in (created_at,
// lead_id, channel) order (partial index lead_deliveries_pending_idx,
// migration 007).
func (s *Store) StalePendingDeliveries(ctx context.Context, createdBefore time.Time, after DeliveryCursor, limit int) ([]StaleDelivery, error) {
	from, fromID := cursorStart(after.CreatedAt, after.LeadID)
	rows, err := s.pool.Query(ctx, stalePendingDeliveriesSQL, createdBefore, from, fromID, after.Channel, limit)
	if err != nil {
		return nil, fmt.Errorf("stale pending deliveries: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[StaleDelivery])
	if err != nil {
		return nil, fmt.Errorf("stale pending deliveries: %w", err)
	}
	return out, nil
}

// stalePendingDeliveriesSQL: $1 created before, $2–$4 the cursor, $5 the
// limit.
const stalePendingDeliveriesSQL = `
		select lead_id::text, channel, created_at
		from cepjobs.lead_deliveries
		where status = 'pending' and created_at < $1
			and (created_at, lead_id, channel) > ($2, $3::uuid, $4)
		order by created_at, lead_id, channel
		limit $5`
