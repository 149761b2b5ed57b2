-- Every outbox row is inserted once and marked dispatched moments later: the
-- mark cannot be a HOT update (dispatched_at is the predicate of
-- outbox_pending_idx), so each row leaves a dead entry in the pending index
-- until vacuum. Vacuum and analyze the table after 2 % of it changed rather
-- than the default 20 %, so the relay's scan and the planner's estimates stay
-- small under a steady stream of leads.
alter table cepjobs.outbox set (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02
);
