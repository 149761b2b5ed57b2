-- A lead's lead:process outbox row now has the lead's id as its own (and so
-- as the task's TaskID): the sweep finds it by primary key. The expression
-- index of migration 005 evaluated a regular expression over the payload on
-- every insert and every dispatched mark, and grew by two entries per lead.
--
-- Rows written before this migration keep their own ids. For the leads that
-- are still queued (only those matter to the sweep) the old row id is kept
-- here; the maintenance purge empties the table as they move on.
create table cepjobs.outbox_lead_legacy (
    lead_id   uuid primary key,
    outbox_id uuid not null
);

insert into cepjobs.outbox_lead_legacy (lead_id, outbox_id)
select l.id, ob.id
from cepjobs.leads l
cross join lateral (
    select o.id from cepjobs.outbox o
    where o.task_type = 'lead:process'
        and substring(encode(o.payload, 'escape') from '"lead_id":\s*"([0-9a-fA-F-]{36})"') = l.id::text
    order by o.created_at
    limit 1
) ob
where l.status = 'queued';

drop index cepjobs.outbox_lead_process_idx;
