-- Fills the benchmark database for bench/backup/run.sh. Run with
--   psql -v schema_only=1 -f generate.sql            (the tables)
--   psql -v lo=.. -v hi=.. -v alo=.. -v ahi=.. -v total=.. -f generate.sql
-- The second form fills one share of every table; run.sh runs two shares
-- side by side, one per core.
--
-- The data is meant to compress like a real application database, not like
-- pgbench (~35:1): a mix of incompressible bytes, hex digests, random
-- numbers, jsonb and text drawn from a vocabulary. Ordinary (logged) tables:
-- pg_dump must dump them like any other.
\set ON_ERROR_STOP 1
set synchronous_commit = off;
set client_min_messages = warning;

\if :{?schema_only}
create extension if not exists pgcrypto;
create schema if not exists bench;

-- Orders: the realistic part. Emails, statuses, money, free text notes, a
-- jsonb of attributes.
create table if not exists bench.orders (
    id          bigint primary key,
    created_at  timestamptz not null,
    customer    text not null,
    email       text not null,
    status      text not null,
    amount      numeric(12,2) not null,
    quantity    integer not null,
    score       double precision not null,
    reference   text not null,
    notes       text not null,
    attrs       jsonb not null
);

-- Events: machine data. Numbers, digests and a jsonb payload.
create table if not exists bench.events (
    id         bigint primary key,
    order_id   bigint not null,
    ts         timestamptz not null,
    kind       smallint not null,
    latency_ms double precision not null,
    trace      text not null,
    payload    jsonb not null
);

-- Attachments: incompressible bytes (thumbnails, encrypted tokens).
create table if not exists bench.attachments (
    id       bigint primary key,
    order_id bigint not null,
    sha1     text not null,
    mime     text not null,
    data     bytea not null
);
\else

-- The vocabulary for text columns.
-- plain storage: an out-of-line (TOASTed) array would be detoasted at
-- every subscript, a dozen times per row.
create temporary table words (w text[], n int);
alter table words alter column w set storage plain;
insert into words
select array[
  'el','la','de','que','y','en','un','una','los','las','por','con','para','del','se','no','al','lo','como','más',
  'oferta','empleo','candidato','entrevista','contrato','salario','jornada','empresa','puesto','perfil',
  'experiencia','formación','curso','certificado','prácticas','horario','turno','vacaciones','incorporación',
  'inmediata','Madrid','Barcelona','Valencia','Sevilla','Bilbao','Málaga','Zaragoza','remoto','presencial',
  'híbrido','comercial','administrativo','técnico','desarrollador','enfermería','logística','almacén',
  'atención','cliente','ventas','marketing','contabilidad','recursos','humanos','proyecto','equipo','gestión',
  'the','candidate','was','called','on','Monday','and','asked','to','send','an','updated','CV','before','Friday',
  'interview','scheduled','for','next','week','at','office','please','confirm','availability','salary','range',
  'discussed','offer','accepted','rejected','pending','review','follow','up','email','phone','no','answer',
  'reference','checked','documents','received','missing','signature','contract','start','date','agreed',
  'llamar','mañana','por','la','tarde','envió','documentación','falta','firma','revisar','currículum',
  'disponible','desde','septiembre','octubre','noviembre','diciembre','enero','febrero','marzo','abril',
  'mayo','junio','julio','agosto','nota','interna','prioridad','alta','media','baja','seguimiento'
]::text[], 0;
update words set n = cardinality(w);

-- Each part fills ids lo..hi of orders and events (run.sh computes
-- them), and alo..ahi of attachments. :total is the last order id.

insert into bench.orders
select g,
       timestamptz '2020-01-01' + (random() * interval '1800 days'),
       initcap(w[1 + (random() * (n - 1))::int]) || ' ' || initcap(w[1 + (random() * (n - 1))::int]),
       lower(w[1 + (random() * (n - 1))::int]) || '.' || (random() * 100000)::int || '@' ||
         (array['gmail.com','hotmail.com','yahoo.es','outlook.com','empresa.es','cep.es'])[1 + (random() * 5)::int],
       (array['new','paid','shipped','cancelled','refunded','pending'])[1 + (random() * 5)::int],
       round((random() * 5000)::numeric, 2),
       (random() * 50)::int,
       random(),
       md5(random()::text),
       array_to_string(array(select w[1 + (random() * (n - 1))::int] from generate_series(1, 5 + (g % 40)::int)), ' '),
       jsonb_build_object(
         'ip', ((random() * 223)::int + 1) || '.' || (random() * 255)::int || '.' || (random() * 255)::int || '.' || (random() * 255)::int,
         'ua', (array['Mozilla/5.0 (Windows NT 10.0; Win64; x64)','Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)',
                      'Mozilla/5.0 (X11; Linux x86_64)','Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1)'])[1 + (random() * 3)::int],
         'utm', jsonb_build_object('source', (array['google','facebook','newsletter','direct'])[1 + (random() * 3)::int],
                                   'campaign', 'c' || (random() * 500)::int),
         'session', md5(random()::text) || md5(random()::text),
         'lat', round((36 + random() * 7)::numeric, 6), 'lon', round((-9 + random() * 12)::numeric, 6),
         'tags', to_jsonb(array[w[1 + (random() * (n - 1))::int], w[1 + (random() * (n - 1))::int]]))
from words, generate_series(:lo, :hi) g;

insert into bench.events
select g,
       1 + (random() * (:total - 1))::bigint,
       timestamptz '2020-01-01' + (random() * interval '1800 days'),
       (random() * 30)::int,
       random() * 2000,
       md5(random()::text) || md5(random()::text),
       jsonb_build_object('seq', g, 'v', random(), 'w', (random() * 1e9)::bigint, 'h', md5(random()::text),
                          'ok', random() < 0.9, 'vals', to_jsonb(array[random(), random(), random(), random()]))
from generate_series(:lo, :hi) g;

-- Fewer attachment rows but bigger ones: 2 in 5 orders, 65..1625 random bytes (gen_random_bytes gives at most 1024 a call).
insert into bench.attachments
select g,
       1 + (random() * (:total - 1))::bigint,
       encode(gen_random_bytes(20), 'hex'),
       (array['image/jpeg','image/png','application/pdf'])[1 + (random() * 2)::int],
       gen_random_bytes(64 + (random() * 960)::int) || gen_random_bytes(1 + (random() * 600)::int)
from generate_series(:alo, :ahi) g;
\endif
