-- AI content jobs (worker-llm). Inputs are course facts, never personal data.
create table cepjobs.content_jobs (
    id                uuid primary key,
    kind              text not null,
    language          text not null,
    input             jsonb not null,
    callback_url      text,
    status            text not null default 'queued'
        check (status in ('queued', 'running', 'waiting_budget', 'completed', 'failed')),
    output            jsonb,
    model             text,
    prompt_version    text,
    prompt_tokens     integer not null default 0,
    completion_tokens integer not null default 0,
    cost_usd          numeric(12, 6) not null default 0,
    attempts          integer not null default 0,
    error             text,
    callback_status   text check (callback_status in ('pending', 'delivered', 'failed')),
    callback_attempts integer not null default 0,
    callback_error    text,
    submitted_by      text not null,
    created_at        timestamptz not null,
    started_at        timestamptz,
    finished_at       timestamptz,
    updated_at        timestamptz not null
);

-- Every model call's cost, by UTC day: the daily budget sums this, so
-- spending counts whether the job then succeeded or not.
create table cepjobs.llm_usage (
    id                bigserial primary key,
    job_id            uuid references cepjobs.content_jobs (id) on delete set null,
    day               date not null,
    model             text not null,
    prompt_tokens     integer not null,
    completion_tokens integer not null,
    cost_usd          numeric(12, 6) not null,
    created_at        timestamptz not null
);

create index llm_usage_day_idx on cepjobs.llm_usage (day);
