package handlers_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cepcomunicacion/cepjobs/handlers"
	"github.com/cepcomunicacion/cepjobs/internal/backup"
	"github.com/cepcomunicacion/cepjobs/internal/backup/backuptest"
	"github.com/cepcomunicacion/cepjobs/internal/testenv"
	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// platformDB makes a database standing in for the platform's: several
// tables of known rows (a few MB), one in its own schema.
func platformDB(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	url, drop, err := testenv.CreateDatabase(ctx, "platform")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `
		create table courses (id serial primary key, slug text unique not null, title text not null, price numeric(10,2), starts date);
		create table students (id bigserial primary key, email text not null, name text, created timestamptz not null, profile jsonb, photo bytea);
		create schema crm;
		create table crm.notes (id bigserial primary key, student_id bigint references students(id), body text, tags text[]);
		insert into courses (slug, title, price, starts)
			select 'curso-' || g, 'Curso número ' || g || ' — ñandú', g * 12.5, date '2026-01-01' + g from generate_series(1, 200) g;
		insert into students (email, name, created, profile, photo)
			select 'alumno' || g || '@example.com', 'Alumno ' || g, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 minute',
				jsonb_build_object('n', g, 'tags', jsonb_build_array('a', g::text)), decode(md5(g::text), 'hex')
			from generate_series(1, 20000) g;
		insert into crm.notes (student_id, body, tags)
			select 1 + (g % 20000), repeat(md5(g::text), 4), array['x', g::text] from generate_series(1, 20000) g;`)
	if err != nil {
		t.Fatal(err)
	}
	return url
}

// fingerprint is every row of every table, hashed per table.
func fingerprint(t *testing.T, url string) map[string]string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	out := map[string]string{}
	for _, tbl := range []string{"courses", "students", "crm.notes"} {
		var sum string
		var n int
		if err := conn.QueryRow(ctx, `select count(*), coalesce(md5(string_agg(x::text, E'\n' order by x.id)), '') from `+tbl+` x`).Scan(&n, &sum); err != nil {
			t.Fatal(err)
		}
		out[tbl] = sum
		if n == 0 {
			t.Fatalf("%s is empty", tbl)
		}
	}
	return out
}

type statsBundle struct {
	mux     *asynq.ServeMux
	backups *backup.Backups
	store   *store.Store
	reg     *prometheus.Registry
}

func statsSetup(t *testing.T, databaseURL string, edit func(*backup.Config)) *statsBundle {
	t.Helper()
	s3 := backuptest.StartS3(t)
	cfg := s3.Config(t)
	if edit != nil {
		edit(&cfg)
	}
	bk, err := backup.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), store.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	reg := prometheus.NewRegistry()
	return &statsBundle{
		mux: handlers.NewStats(handlers.StatsDeps{
			Store: st, Dispatch: noDispatch{}, Backups: bk, DatabaseURL: databaseURL, OpsEmail: "ops@example.com",
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: handlers.NewBackupMetrics(reg),
		}),
		backups: bk, store: st, reg: reg,
	}
}

type noDispatch struct{}

func (noDispatch) Now(context.Context, string, string, []byte) {}

func backupTask(t *testing.T) *asynq.Task {
	task, err := tasks.NewBackupDatabase(tasks.BackupDatabase{Slot: time.Now().UTC().Truncate(time.Second)}, "b")
	if err != nil {
		t.Fatal(err)
	}
	return task
}

// TestBackupRoundTrip backs a database up through the real task handler,
// restores it into a new database, and compares every row.
func TestBackupRoundTrip(t *testing.T) {
	src := platformDB(t)
	b := statsSetup(t, src, nil)
	ctx := context.Background()
	if err := b.mux.ProcessTask(ctx, backupTask(t)); err != nil {
		t.Fatalf("backup task: %v", err)
	}
	db, _ := backup.DatabaseName(src)
	latest, err := b.backups.Latest(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	m, err := b.backups.Manifest(ctx, latest.Key)
	if err != nil {
		t.Fatal(err)
	}
	if m.Tables["public.students"] != 20000 || m.Tables["crm.notes"] != 20000 || m.SHA256 == "" || m.Size < 100_000 {
		t.Errorf("manifest: got %d students, %d notes, sha %q, %d bytes", m.Tables["public.students"], m.Tables["crm.notes"], m.SHA256, m.Size)
	}

	dst, drop, err := testenv.CreateDatabase(ctx, "restored")
	if err != nil {
		t.Fatal(err)
	}
	defer drop()
	if err := b.backups.Restore(ctx, latest.Key, dst, backup.RestoreOptions{}, nil); err != nil {
		t.Fatalf("restore: %v", err)
	}
	want, got := fingerprint(t, src), fingerprint(t, dst)
	for tbl, sum := range want {
		if got[tbl] != sum {
			t.Errorf("%s: restored rows differ from the source", tbl)
		}
	}
	if metric := gauge(t, b.reg, "cepjobs_backup_last_size_bytes"); metric != float64(m.Size) {
		t.Errorf("last size gauge: got %v, want %d", metric, m.Size)
	}
}

// TestBackupFailureAlerts: a pg_dump older than the server is refused for
// good, and ops get an email.
func TestBackupFailureAlerts(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "pg_dump")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	b := statsSetup(t, dbURL, func(c *backup.Config) { c.PgDump = fake })
	err := b.mux.ProcessTask(context.Background(), backupTask(t))
	if !errors.Is(err, asynq.SkipRetry) || !errors.Is(err, backup.ErrClientTooOld) {
		t.Fatalf("old pg_dump: got %v, want a permanent ErrClientTooOld", err)
	}
	var n int
	conn, _ := pgx.Connect(context.Background(), dbURL)
	defer conn.Close(context.Background())
	if err := conn.QueryRow(context.Background(), `select count(*) from cepjobs.email_messages where to_email = 'ops@example.com' and subject like 'cepjobs: backup failed%'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("alert emails: got %d (%v), want 1", n, err)
	}
	if f := gauge(t, b.reg, "cepjobs_backup_failures_total"); f != 1 {
		t.Errorf("failures counter: got %v, want 1", f)
	}
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.GetGauge() != nil && mf.GetType().String() == "GAUGE" {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
