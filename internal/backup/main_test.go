package backup_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"

	"github.com/cepcomunicacion/cepjobs/internal/backup"
	"github.com/cepcomunicacion/cepjobs/internal/backup/backuptest"
	"github.com/cepcomunicacion/cepjobs/internal/testenv"
)

var s3 *backuptest.Server

func TestMain(m *testing.M) {
	start := time.Now()
	srv, err := backuptest.Start(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "backup_test: s3 server %s ready in %s\n", srv.Endpoint, time.Since(start).Round(time.Millisecond))
	s3 = srv
	code := m.Run()
	if err := srv.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

// bundle is what most tests need: a bucket of their own, the engine on it
// and a client to look inside.
type bundle struct {
	cfg    backup.Config
	b      *backup.Backups
	client *minio.Client
}

func setup(t *testing.T, tune ...func(*backup.Config)) *bundle {
	t.Helper()
	cfg := s3.Config(t)
	for _, f := range tune {
		f(&cfg)
	}
	b, err := backup.New(cfg, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	client, err := s3.Client()
	if err != nil {
		t.Fatal(err)
	}
	return &bundle{cfg: cfg, b: b, client: client}
}

// keys lists every key in the bucket, sorted.
func (bu *bundle) keys(t *testing.T) []string {
	t.Helper()
	var out []string
	for o := range bu.client.ListObjectsIter(context.Background(), bu.cfg.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			if minio.ToErrorResponse(o.Err).Code == "NoSuchBucket" {
				return nil
			}
			t.Fatal(o.Err)
		}
		out = append(out, o.Key)
	}
	return out
}

// unfinishedUploads lists multipart uploads never completed nor aborted.
func (bu *bundle) unfinishedUploads(t *testing.T) []string {
	t.Helper()
	var out []string
	for u := range bu.client.ListIncompleteUploads(context.Background(), bu.cfg.Bucket, "", true) {
		if u.Err != nil {
			if minio.ToErrorResponse(u.Err).Code == "NoSuchBucket" {
				return nil
			}
			t.Fatal(u.Err)
		}
		out = append(out, u.Key)
	}
	return out
}

// newDatabase creates an empty database dropped when the test ends.
func newDatabase(t *testing.T) string {
	t.Helper()
	url, drop, err := testenv.CreateDatabase(context.Background(), "backup")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop)
	return url
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func dbName(t *testing.T, url string) string {
	t.Helper()
	name, err := backup.DatabaseName(url)
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// fill creates tables of many column types, in two schemas, with
// fileRows rows of 16 KiB random bytes in public.files, and returns the
// row count of every table.
func fill(t *testing.T, url string, fileRows int) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	conn := connect(t, url)
	_, err := conn.Exec(ctx, `
create schema other;
create table customers (
  id bigserial primary key,
  name text not null,
  email text,
  balance numeric(14,4),
  created timestamptz,
  prefs jsonb
);
insert into customers (name, email, balance, created, prefs)
select 'name ' || i, 'u' || i || '@example.com', (i * 12.3456)::numeric(14,4),
       timestamptz '2026-01-01 00:00:00+00' + i * interval '37 minutes',
       jsonb_build_object('i', i, 'tags', jsonb_build_array('a', i % 7), 'ok', i % 2 = 0)
from generate_series(1, 5000) i;
create table files (id int primary key, name text, data bytea);
create table other.events (
  id bigint generated always as identity primary key,
  kind text,
  payload jsonb,
  at timestamptz,
  note text
);
insert into other.events (kind, payload, at, note)
select 'kind' || (i % 5), jsonb_build_object('n', i, 'nested', jsonb_build_object('x', i * 1.5)),
       timestamptz '2026-06-01 12:00:00+02' + i * interval '1 second',
       case i % 4 when 0 then null when 1 then E'ñandú 🎉 "quoted" \\ back\nslash' when 2 then '' else repeat('x', i) end
from generate_series(1, 3000) i;
create table "Mixed Case" (id int primary key, "Value" text);
insert into "Mixed Case" values (1, 'a'), (2, 'b'), (3, null);
create table empty_table (id int primary key);
create view customer_emails as select id, email from customers;
`)
	if err != nil {
		t.Fatal(err)
	}
	rows := make([][]any, fileRows)
	for i := range rows {
		data := make([]byte, 16<<10)
		_, _ = rand.Read(data)
		rows[i] = []any{i + 1, fmt.Sprintf("file-%04d.bin", i+1), data}
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"files"}, []string{"id", "name", "data"}, pgx.CopyFromRows(rows)); err != nil {
		t.Fatal(err)
	}
	return map[string]int64{
		"public.customers":   5000,
		"public.files":       int64(fileRows),
		"other.events":       3000,
		"public.Mixed Case":  3,
		"public.empty_table": 0,
	}
}

// fingerprint digests every row of every table fill made, and the
// sequences, so two databases compare row for row.
func fingerprint(t *testing.T, url string) map[string]string {
	t.Helper()
	ctx := context.Background()
	conn := connect(t, url)
	out := map[string]string{}
	for _, table := range []string{`customers`, `files`, `other.events`, `"Mixed Case"`, `empty_table`} {
		var n int64
		var digest string
		err := conn.QueryRow(ctx, `select count(*), coalesce(md5(string_agg(t::text, E'\n' order by id)), '') from `+table+` t`).Scan(&n, &digest)
		if err != nil {
			t.Fatalf("fingerprint %s: %v", table, err)
		}
		out[table] = fmt.Sprintf("%d rows md5 %s", n, digest)
	}
	var seq string
	if err := conn.QueryRow(ctx, `select (select last_value from customers_id_seq)::text || '/' || (select last_value from other.events_id_seq)::text`).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	out["sequences"] = seq
	var emails int64
	if err := conn.QueryRow(ctx, `select count(*) from customer_emails`).Scan(&emails); err != nil {
		t.Fatal(err)
	}
	out["view"] = fmt.Sprint(emails)
	return out
}

// relations lists the user tables and views of a database, to tell an
// untouched restore target from a half-restored one.
func relations(t *testing.T, url string) []string {
	t.Helper()
	rows, err := connect(t, url).Query(context.Background(), `
select n.nspname || '.' || c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'p', 'v', 'm', 'S') and n.nspname not in ('pg_catalog', 'information_schema')
  and n.nspname not like 'pg\_toast%' order by 1`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		return nil
	}
	return names
}

// fakeTool writes an executable shell script standing in for pg_dump or
// pg_restore.
func fakeTool(t *testing.T, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fake-tool")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func serverMajor(t *testing.T, url string) string {
	t.Helper()
	var n int
	if err := connect(t, url).QueryRow(context.Background(), "select current_setting('server_version_num')::int").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n >= 100000 {
		return fmt.Sprint(n / 10000)
	}
	return fmt.Sprintf("%d.%d", n/10000, n/100%100)
}

func mustContain(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}

func diff(t *testing.T, what string, want, got any, opts ...cmp.Option) {
	t.Helper()
	if d := cmp.Diff(want, got, opts...); d != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", what, d)
	}
}
