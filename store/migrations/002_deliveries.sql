-- Delivery bookkeeping for the automation worker.
--
-- attempt_started_at records intent: it is written before each vendor call,
-- so after a crash a pending row with an attempt started says "a call may
-- have reached the vendor" (the window between its answer and our record).
alter table cepjobs.lead_deliveries
    add column reason             text,
    add column detail             jsonb not null default '{}',
    add column attempt_started_at timestamptz,
    add column created_at         timestamptz;

update cepjobs.lead_deliveries set created_at = updated_at where created_at is null;
alter table cepjobs.lead_deliveries alter column created_at set not null;

-- Stored transactional emails for email:send: the task carries the id only.
create table cepjobs.email_messages (
    id                 uuid primary key,
    to_email           text not null,
    to_name            text,
    subject            text not null,
    text_body          text,
    html_body          text,
    template           text,
    merge_vars         jsonb not null default '{}',
    tags               text[] not null default '{}',
    status             text not null default 'pending'
        check (status in ('pending', 'sent', 'failed')),
    attempts           integer not null default 0,
    attempt_started_at timestamptz,
    last_error         text,
    vendor_ref         text,
    created_at         timestamptz not null,
    sent_at            timestamptz
);
