-- The lead sweep (outbox.Sweeper) finds leads whose lead:process task should
-- be in Redis but is not (Redis lost it: a restart from an AOF missing its
-- last second, a failover to a lagging replica, a deleted task).
--
-- Queued leads, oldest first. Partial: a lead leaves 'queued' within
-- moments of its task starting, so the index holds only the backlog.
create index leads_queued_idx on cepjobs.leads (received_at, id) where status = 'queued';

-- A lead's lead:process outbox row (whose id is the task's TaskID), found
-- by the lead id in its payload. The expression never raises (no cast): a
-- payload it cannot read indexes as null. store.leadIDOfPayload is the same
-- expression and must stay identical for the planner to use this index.
create index outbox_lead_process_idx on cepjobs.outbox
    ((substring(encode(payload, 'escape') from '"lead_id":\s*"([0-9a-fA-F-]{36})"')))
    where task_type = 'lead:process';
