-- A lead's lead:process outbox row now has the lead's id as its own (and so
-- as the task's TaskID): the sweep finds it by primary key, and migration 009
-- drops the expression index of migration 005, which evaluated a regular
-- expression over the payload on every insert and every dispatched mark (it
-- was ~40 % of PostgreSQL's CPU per lead under load).
--
-- Rows written before, and rows the previous release still writes during a
-- rolling deploy (an old intake replica, an old worker-automation storing a
-- Meta lead), have ids of their own. For those, outbox_lead_legacy keeps the
-- lead's old row id: filled here for the leads still queued (only those
-- matter to the sweep), and by the trigger below for rows inserted later.
-- The maintenance purge empties it as the leads move on.
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

-- Never raises: a payload it cannot read records nothing.
create function cepjobs.outbox_lead_legacy_record() returns trigger
language plpgsql as $$
declare
    lead uuid;
begin
    begin
        lead := substring(encode(new.payload, 'escape') from '"lead_id":\s*"([0-9a-fA-F-]{36})"')::uuid;
    exception when others then
        return null;
    end;
    if lead is not null and lead <> new.id then
        insert into cepjobs.outbox_lead_legacy (lead_id, outbox_id) values (lead, new.id)
        on conflict (lead_id) do nothing;
    end if;
    return null;
end $$;

-- The WHEN clause keeps this release's rows (id = lead id, payload exactly
-- {"lead_id":"<id>"}) away from the function: a concatenation and a
-- comparison per row, no regular expression. It can be dropped once no
-- release older than this one runs.
create trigger outbox_lead_legacy_record
    after insert on cepjobs.outbox
    for each row
    when (new.task_type = 'lead:process'
        and new.payload <> convert_to('{"lead_id":"' || new.id::text || '"}', 'UTF8'))
    execute function cepjobs.outbox_lead_legacy_record();
