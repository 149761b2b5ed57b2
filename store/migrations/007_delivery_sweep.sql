-- The sweep's second half: pending deliveries whose lead:deliver task Redis
-- lost. A lead fanned out in the last second before Redis died and lost
-- that second (its lead:process task, the fan-out's lead:deliver tasks and
-- the completion all gone) is "processing" in Postgres with nothing left in
-- Redis to move it. Pending deliveries, oldest first; created_at never
-- changes, so it keys the sweep's cursor.
create index lead_deliveries_pending_idx on cepjobs.lead_deliveries (created_at, lead_id, channel) where status = 'pending';
