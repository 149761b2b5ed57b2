package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// leadIDOfPayload extracts the lead id from a lead:process outbox payload.
// It must stay character for character the expression of
// outbox_lead_process_idx (migration 005), or the planner cannot use it.
const leadIDOfPayload = `substring(encode(o.payload, 'escape') from '"lead_id":\s*"([0-9a-fA-F-]{36})"')`

// SweepCursor is where a sweep pass stopped in the queued backlog, ordered
// by (received_at, id). The zero value starts at the oldest lead.
type SweepCursor struct {
	ReceivedAt time.Time
	LeadID     string
}

// StaleLead is a lead still queued past the sweep's bound, with the outbox
// row of its lead:process task.
type StaleLead struct {
	LeadID     string
	ReceivedAt time.Time
	// OutboxID is the row's id, which is the task's TaskID; empty when the
	// row is gone (the maintenance purge removes dispatched rows after 7
	// days).
	OutboxID string
	// Dispatched says the row reached Redis once. A row not dispatched yet
	// belongs to the outbox relay.
	Dispatched bool
}

// StaleQueuedLeads returns up to limit leads still queued that were received
// before receivedBefore, after the cursor in (received_at, id) order, each
// with its lead:process outbox row. Both lookups use partial indexes
// (migration 005), so a pass costs O(limit) whatever the size of the table.
func (s *Store) StaleQueuedLeads(ctx context.Context, receivedBefore time.Time, after SweepCursor, limit int) ([]StaleLead, error) {
	from := after.ReceivedAt
	if from.IsZero() {
		from = time.Unix(0, 0)
	}
	fromID := after.LeadID
	if fromID == "" {
		fromID = "00000000-0000-0000-0000-000000000000"
	}
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

// staleQueuedLeadsSQL: $1 received before, $2 and $3 the cursor, $4 the
// limit.
const staleQueuedLeadsSQL = `
		select l.id::text, l.received_at, coalesce(ob.id::text, ''), coalesce(ob.dispatched, false)
		from cepjobs.leads l
		left join lateral (
			select o.id, o.dispatched_at is not null as dispatched
			from cepjobs.outbox o
			where o.task_type = 'lead:process' and ` + leadIDOfPayload + ` = l.id::text
			order by o.created_at
			limit 1
		) ob on true
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
	from := after.CreatedAt
	if from.IsZero() {
		from = time.Unix(0, 0)
	}
	fromID := after.LeadID
	if fromID == "" {
		fromID = "00000000-0000-0000-0000-000000000000"
	}
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
