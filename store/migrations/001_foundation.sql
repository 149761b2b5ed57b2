-- Leads as the CMS posts them, with the consent evidence RGPD asks us to keep.
create table cepjobs.leads (
    id                   uuid primary key,
    external_id          text,
    first_name           text not null,
    last_name            text,
    email                text not null,
    email_normalized     text not null,
    phone                text,
    course               text not null,
    campaign             text,
    site                 text,
    source               text not null,
    message              text,
    utm                  jsonb not null default '{}',
    consent_privacy      boolean not null,
    consent_marketing    boolean not null,
    consent_text_version text not null,
    consent_accepted_at  timestamptz,
    client_ip            inet,
    client_user_agent    text,
    received_at          timestamptz not null,
    submitted_by         text not null,
    status               text not null default 'queued'
        check (status in ('queued', 'processing', 'completed', 'partial', 'failed')),
    status_changed_at    timestamptz not null
);

-- Duplicate detection: same email and course within a window.
create index leads_dedup_idx on cepjobs.leads (email_normalized, course, received_at desc);

-- One row per lead and channel: the record of each side effect, so a retried
-- task skips what is already delivered.
create table cepjobs.lead_deliveries (
    lead_id      uuid not null references cepjobs.leads (id) on delete cascade,
    channel      text not null,
    status       text not null check (status in ('pending', 'delivered', 'skipped', 'failed')),
    attempts     integer not null default 0,
    last_error   text,
    vendor_ref   text,
    updated_at   timestamptz not null,
    delivered_at timestamptz,
    primary key (lead_id, channel)
);

-- Transactional outbox: written in the same transaction as the change that
-- needs a task; the id doubles as the asynq TaskID.
create table cepjobs.outbox (
    id            uuid primary key,
    task_type     text not null,
    payload       bytea not null,
    created_at    timestamptz not null,
    available_at  timestamptz not null,
    attempts      integer not null default 0,
    last_error    text,
    dispatched_at timestamptz
);

create index outbox_pending_idx on cepjobs.outbox (available_at) where dispatched_at is null;

-- Idempotency-Key replay: the first answer to a key, per API principal.
create table cepjobs.idempotency_keys (
    principal     text not null,
    key           text not null,
    request_hash  bytea not null,
    status_code   integer not null,
    response_body bytea not null,
    created_at    timestamptz not null,
    primary key (principal, key)
);

create index idempotency_keys_created_idx on cepjobs.idempotency_keys (created_at);
