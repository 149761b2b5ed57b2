package store

import (
	"context"
	"fmt"
	"time"
)

// PurgeResult counts what a maintenance purge removed.
type PurgeResult struct {
	IdempotencyKeys int64
	OutboxRows      int64
	Emails          int64
	// LegacyLeadIDs are old outbox row ids of leads no longer queued
	// (outbox_lead_legacy, migration 008).
	LegacyLeadIDs int64
}

// Purge removes bookkeeping past its use: idempotency keys older than
// keysOlder (a client retry comes within minutes, not weeks), outbox rows
// dispatched more than outboxOlder ago, and settled transactional emails
// (bodies hold personal data) older than emailsOlder.
func (s *Store) Purge(ctx context.Context, now time.Time, keysOlder, outboxOlder, emailsOlder time.Duration) (PurgeResult, error) {
	var r PurgeResult
	for _, q := range []struct {
		sql string
		arg time.Time
		n   *int64
	}{
		{`delete from cepjobs.idempotency_keys where created_at < $1`, now.Add(-keysOlder), &r.IdempotencyKeys},
		{`delete from cepjobs.outbox where dispatched_at < $1`, now.Add(-outboxOlder), &r.OutboxRows},
		{`delete from cepjobs.email_messages where status <> 'pending' and created_at < $1`, now.Add(-emailsOlder), &r.Emails},
	} {
		tag, err := s.pool.Exec(ctx, q.sql, q.arg)
		if err != nil {
			return r, fmt.Errorf("purge: %w", err)
		}
		*q.n = tag.RowsAffected()
	}
	// Old outbox row ids kept for leads that were queued at migration 008:
	// only while the lead is still queued.
	tag, err := s.pool.Exec(ctx, `
		delete from cepjobs.outbox_lead_legacy g
		where not exists (select 1 from cepjobs.leads l where l.id = g.lead_id and l.status = 'queued')`)
	if err != nil {
		return r, fmt.Errorf("purge: %w", err)
	}
	r.LegacyLeadIDs = tag.RowsAffected()
	return r, nil
}
