-- Campaign email automation: one row per campaign, one per recipient.
create table cepjobs.campaigns (
    id               text primary key,          -- the CMS's campaign id
    name             text not null,
    course           text,
    template         text not null,             -- Mailchimp Transactional template slug
    audience         jsonb not null,            -- the filter the CMS sent
    meta_campaign_id text,                      -- Meta Ads campaign, for spend and cost per lead
    status           text not null
        check (status in ('launching', 'sending', 'paused', 'completed', 'failed')),
    audience_size    integer not null default 0,
    batches          integer not null default 0,
    launch_cursor    uuid,                      -- keyset position of the audience scan
    launched_by      text not null,
    created_at       timestamptz not null,
    launched_at      timestamptz,
    paused_at        timestamptz,
    completed_at     timestamptz,
    updated_at       timestamptz not null
);

create table cepjobs.campaign_sends (
    campaign_id        text not null references cepjobs.campaigns (id) on delete cascade,
    lead_id            uuid not null references cepjobs.leads (id) on delete cascade,
    batch              integer not null,
    status             text not null default 'pending'
        check (status in ('pending', 'sent', 'skipped', 'failed')),
    attempts           integer not null default 0,
    attempt_started_at timestamptz,
    vendor_ref         text,
    reason             text,
    last_error         text,
    created_at         timestamptz not null,
    sent_at            timestamptz,
    primary key (campaign_id, lead_id)
);

create index campaign_sends_batch_idx on cepjobs.campaign_sends (campaign_id, batch);

-- Meta Ads insights, one row per Meta campaign and day (upserted).
create table cepjobs.meta_insights (
    meta_campaign_id text not null,
    day              date not null,
    campaign_name    text,
    spend            numeric(14, 4) not null default 0,
    currency         text,
    impressions      bigint not null default 0,
    clicks           bigint not null default 0,
    leads            bigint not null default 0,
    updated_at       timestamptz not null,
    primary key (meta_campaign_id, day)
);

-- Daily roll-ups: recomputed whole for a day, so re-running gives the same rows.
create table cepjobs.stats_daily (
    day             date not null,
    course          text not null,
    site            text not null,
    campaign        text not null,
    source          text not null,
    leads           integer not null,
    marketing_optin integer not null,
    delivered       jsonb not null default '{}',  -- channel -> delivered count
    failed          jsonb not null default '{}',  -- channel -> failed count
    skipped         jsonb not null default '{}',  -- channel -> skipped count
    spend           numeric(14, 4),               -- where Meta spend is known (campaign rows)
    cost_per_lead   numeric(14, 4),
    computed_at     timestamptz not null,
    primary key (day, course, site, campaign, source)
);

-- Exports and reports written to object storage.
create table cepjobs.exports (
    id            uuid primary key,
    kind          text not null check (kind in ('leads', 'report')),
    filters       jsonb not null default '{}',
    status        text not null default 'queued'
        check (status in ('queued', 'running', 'completed', 'failed')),
    rows          bigint not null default 0,
    bytes         bigint not null default 0,
    object_key    text,
    url           text,
    url_expires_at timestamptz,
    error         text,
    requested_by  text not null,
    created_at    timestamptz not null,
    finished_at   timestamptz,
    updated_at    timestamptz not null
);

-- RGPD erasure: the lead row stays (anonymised) for statistics.
alter table cepjobs.leads add column erased_at timestamptz;

create table cepjobs.erasures (
    lead_id      uuid primary key references cepjobs.leads (id) on delete cascade,
    requested_by text not null,
    requested_at timestamptz not null,
    completed_at timestamptz,
    steps        jsonb not null default '{}'          -- step -> outcome (postgres, mailchimp, …)
);

create index leads_received_idx on cepjobs.leads (received_at);
