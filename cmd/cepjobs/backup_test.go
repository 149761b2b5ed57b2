package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"

	"github.com/cepcomunicacion/cepjobs/internal/backup"
	"github.com/cepcomunicacion/cepjobs/internal/backup/backuptest"
	"github.com/cepcomunicacion/cepjobs/internal/config"
	"github.com/cepcomunicacion/cepjobs/internal/fleet"
	"github.com/cepcomunicacion/cepjobs/internal/testenv"
)

// backupBundle is an S3 server with a bucket of the test's own, and the
// environment that points the CLI at it, the test database and the test
// Redis.
type backupBundle struct {
	s3      *backuptest.Server
	cfg     backup.Config
	environ []string
}

// setupBackup starts S3, flushes the CLI's Redis DB (so these tests do not
// run in parallel with each other or with TestDevRunsTheFleet) and puts
// known rows in public.cli_backup_rows of the test database.
func setupBackup(t *testing.T) *backupBundle {
	t.Helper()
	s3 := backuptest.StartS3(t)
	cfg := s3.Config(t)
	seedBackupRows(t)
	return &backupBundle{s3: s3, cfg: cfg, environ: []string{
		"REDIS_URL=" + testenv.RedisURL(t, testenv.RedisDBCLI),
		"DATABASE_URL=" + dbURL,
		"S3_ENDPOINT=" + cfg.Endpoint,
		"S3_ACCESS_KEY=" + cfg.AccessKey,
		"S3_SECRET_KEY=" + cfg.SecretKey,
		"S3_REGION=" + cfg.Region,
		"CEPJOBS_BACKUP_BUCKET=" + cfg.Bucket,
	}}
}

func seedBackupRows(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, sql := range []string{
		"create table if not exists public.cli_backup_rows (id int primary key, name text not null)",
		"insert into public.cli_backup_rows values (1, 'uno'), (2, 'dos'), (3, 'tres') on conflict do nothing",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
}

// backupRows reads public.cli_backup_rows of the database at url.
func backupRows(t *testing.T, url string) []string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "select id || ':' || name from public.cli_backup_rows order by id")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// backupNow runs `backup now` with args and returns the key it printed
// last.
func (bb *backupBundle) backupNow(t *testing.T, args ...string) string {
	t.Helper()
	out, stderr, err := runCLI(t, "", bb.environ, append([]string{"backup", "now"}, args...)...)
	if err != nil {
		t.Fatalf("backup now %q: %v\nstdout: %s\nstderr: %s", args, err, out, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	key := lines[len(lines)-1]
	if !strings.HasPrefix(key, "postgres/") || !strings.HasSuffix(key, ".dump") {
		t.Fatalf("backup now %q: last line %q, want the object key\nstdout: %s", args, key, out)
	}
	return key
}

// stat reports whether the bucket holds key, and its sha256 (from its
// manifest).
func (bb *backupBundle) stat(t *testing.T, key string) (bool, string) {
	t.Helper()
	c, err := bb.s3.Client()
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.StatObject(context.Background(), bb.cfg.Bucket, key, minio.StatObjectOptions{})
	if minio.ToErrorResponse(err).Code == "NoSuchKey" {
		return false, ""
	}
	if err != nil {
		t.Fatal(err)
	}
	b, err := backup.New(bb.cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := b.Manifest(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if m.SHA256 == "" {
		t.Fatalf("manifest of %s has no sha256", key)
	}
	return true, m.SHA256
}

func TestBackupNowInlineThenList(t *testing.T) {
	bb := setupBackup(t)
	out, _, err := runCLI(t, "", bb.environ, "backup", "list")
	if err != nil || !strings.Contains(out, "no backups yet") {
		t.Fatalf("list of an empty bucket: got %q, %v; want \"no backups yet\"", out, err)
	}

	start := time.Now()
	out, stderr, err := runCLI(t, "", bb.environ, "backup", "now", "--inline")
	if err != nil {
		t.Fatalf("backup now --inline: %v\nstderr: %s", err, stderr)
	}
	t.Logf("backup now --inline took %s", time.Since(start).Round(time.Millisecond))
	lines := strings.Split(strings.TrimSpace(out), "\n")
	key := lines[len(lines)-1]
	if ok, _ := bb.stat(t, key); !ok {
		t.Fatalf("last line of stdout %q is not a key in the bucket\nstdout: %s", key, out)
	}
	if !strings.Contains(out, "backup stored:") {
		t.Errorf("stdout lacks the summary: %q", out)
	}
	// Not a terminal: one plain line per step.
	for _, step := range []string{"check  ", "dump", "finalize  ", "done  "} {
		if !strings.Contains(stderr, "\n"+step) && !strings.HasPrefix(stderr, step) {
			t.Errorf("progress on stderr lacks step %q:\n%s", step, stderr)
		}
	}
	if strings.Contains(stderr, "\r") {
		t.Errorf("progress redrawn in place on a non-terminal: %q", stderr)
	}

	out, _, err = runCLI(t, "", bb.environ, "backup", "list")
	if err != nil {
		t.Fatal(err)
	}
	_, sum := bb.stat(t, key)
	row := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(key) + `\s+\d+(\.\d)? (B|KiB|MiB)\s+\d+s\s+` + sum[:12] + `$`)
	if !strings.HasPrefix(out, "KEY") || !row.MatchString(out) {
		t.Errorf("list: got\n%s\nwant a header and a row for %s with size, age and sha256 %s", out, key, sum[:12])
	}
}

func TestBackupNowQueued(t *testing.T) {
	bb := setupBackup(t)
	cfg, err := config.Load(append(bb.environ, "CEPJOBS_STATS_METRICS_ADDR=127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w, err := fleet.NewStatsWorker(ctx, cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Errorf("worker-stats: %v", err)
		}
	}()

	start := time.Now()
	key := bb.backupNow(t, "--timeout", "2m")
	t.Logf("queued backup took %s", time.Since(start).Round(time.Millisecond))
	if ok, _ := bb.stat(t, key); !ok {
		t.Errorf("key %s printed by the queued backup is not in the bucket", key)
	}
}

// Nobody consumes the backup queue: the command says so and what to do.
func TestBackupNowQueuedWithoutWorker(t *testing.T) {
	bb := setupBackup(t)
	_, _, err := runCLI(t, "", bb.environ, "backup", "now", "--timeout", "1500ms")
	if err == nil || !strings.Contains(err.Error(), "no worker-stats is consuming the backup queue") || !strings.Contains(err.Error(), "--inline") {
		t.Errorf("got %v, want the no-worker hint", err)
	}
}

func TestBackupRestore(t *testing.T) {
	bb := setupBackup(t)
	bb.backupNow(t, "--inline")
	target := "cepjobs_test_cli_restore_" + randomSuffix()
	t.Cleanup(func() { dropDatabase(t, target) })

	out, stderr, err := runCLI(t, "", bb.environ, "backup", "restore", "latest", "--target-db", target)
	if err != nil {
		t.Fatalf("restore into a new database: %v\nstderr: %s", err, stderr)
	}
	for _, want := range []string{"created database " + target, "restored postgres/", "into database " + target} {
		if !strings.Contains(out, want) {
			t.Errorf("restore output lacks %q:\n%s", want, out)
		}
	}
	targetURL, err := withDatabase(dbURL, target)
	if err != nil {
		t.Fatal(err)
	}
	want := backupRows(t, dbURL)
	if diff := cmp.Diff(want, backupRows(t, targetURL)); diff != "" {
		t.Errorf("restored rows (-source +target):\n%s", diff)
	}

	// Flags before the key this time; the target now has tables.
	_, _, err = runCLI(t, "", bb.environ, "backup", "restore", "--target-db", target, "latest")
	if err == nil || !strings.Contains(err.Error(), "--force") || !errors.Is(err, backup.ErrNotEmpty) {
		t.Errorf("restore into a non-empty target: got %v, want an error naming --force", err)
	}
	out, _, err = runCLI(t, "", bb.environ, "backup", "restore", "latest", "--target-db", target, "--force", "--no-owner")
	if err != nil || strings.Contains(out, "created database") {
		t.Errorf("restore --force into the existing target: got %q, %v", out, err)
	}
	if diff := cmp.Diff(want, backupRows(t, targetURL)); diff != "" {
		t.Errorf("rows after restore --force (-source +target):\n%s", diff)
	}

	_, _, err = runCLI(t, "", bb.environ, "backup", "restore", "postgres/nope.dump", "--target-db", target)
	if err == nil || !strings.Contains(err.Error(), "backup list") {
		t.Errorf("restore of a missing key: got %v, want a pointer to backup list", err)
	}
}

func TestBackupVerify(t *testing.T) {
	bb := setupBackup(t)
	_, _, err := runCLI(t, "", bb.environ, "backup", "verify")
	if err == nil || !strings.Contains(err.Error(), "backup now") {
		t.Errorf("verify with no backups: got %v, want a pointer to backup now", err)
	}
	key := bb.backupNow(t, "--inline")
	out, stderr, err := runCLI(t, "", bb.environ, "backup", "verify", "latest")
	if err != nil {
		t.Fatalf("verify: %v\nstdout: %s\nstderr: %s", err, out, stderr)
	}
	if !regexp.MustCompile(`(?m)^TABLE\s+DUMPED\s+RESTORED\s+OK$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^public\.cli_backup_rows\s+3\s+3\s+ok$`).MatchString(out) ||
		!strings.Contains(out, "OK: "+key) {
		t.Errorf("verify output:\n%s\nwant the table with public.cli_backup_rows 3 3 ok and an OK line for %s", out, key)
	}
	for _, step := range []string{"create  ", "restore", "count  "} {
		if !strings.Contains(stderr, "\n"+step) {
			t.Errorf("verify progress lacks step %q:\n%s", step, stderr)
		}
	}
}

func TestSchedule(t *testing.T) {
	out, _, err := runCLI(t, "", nil, "schedule")
	if err != nil {
		t.Fatal(err)
	}
	// Every entry's task type has a handler now: none is waiting.
	for _, want := range []string{"NEXT (UTC)", "backup:database", "0 3 * * *", "stats:rollup", "maintenance:purge", "stats:report", "campaign:sync-meta", "Europe/Madrid"} {
		if !strings.Contains(out, want) {
			t.Errorf("schedule output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "waiting:") {
		t.Errorf("an entry is listed as waiting:\n%s", out)
	}
	_, _, err = runCLI(t, "", []string{"CEPJOBS_BACKUP_SCHEDULE=every day"}, "schedule")
	if err == nil || !strings.Contains(err.Error(), "CEPJOBS_BACKUP_SCHEDULE") {
		t.Errorf("bad schedule: got %v, want an error naming CEPJOBS_BACKUP_SCHEDULE", err)
	}
}

func TestBackupNotConfigured(t *testing.T) {
	environ := []string{"DATABASE_URL=" + dbURL}
	for _, args := range [][]string{
		{"backup", "now", "--inline"}, {"backup", "list"}, {"backup", "verify"},
		{"backup", "restore", "latest", "--target-db", "x"},
	} {
		_, _, err := runCLI(t, "", environ, args...)
		if err == nil || !strings.Contains(err.Error(), "set S3_ENDPOINT, S3_ACCESS_KEY and S3_SECRET_KEY") {
			t.Errorf("%q without S3: got %v, want what to set", args, err)
		}
	}
}

func TestBackupUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"backup"}, "usage: cepjobs backup <command>"},
		{[]string{"backup", "frob"}, `unknown command "frob"`},
		{[]string{"backup", "now", "extra"}, usageBackupNow},
		{[]string{"backup", "now", "--timeout", "soon"}, usageBackupNow},
		{[]string{"backup", "list", "x"}, usageBackupList},
		{[]string{"backup", "restore", "latest"}, usageBackupRestore},
		{[]string{"backup", "restore", "--target-db", "x"}, usageBackupRestore},
		{[]string{"backup", "verify", "a", "b"}, usageBackupVerify},
	} {
		_, stderr, err := runCLI(t, "", nil, tc.args...)
		var ee exitError
		if !errors.As(err, &ee) || ee != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: got %v, stderr %q; want exit status 2 and %q", tc.args, err, stderr, tc.want)
		}
	}
}

func TestWithDatabase(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://u:p@h:5433/app?sslmode=disable": "postgres://u:p@h:5433/other?sslmode=disable",
		"postgresql://h/app":                        "postgresql://h/other",
		"host=h user=u dbname=app":                  "host=h user=u dbname=app dbname='other'",
	} {
		got, err := withDatabase(in, "other")
		if err != nil || got != want {
			t.Errorf("withDatabase(%q): got %q, %v; want %q", in, got, err, want)
		}
	}
}

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func dropDatabase(t *testing.T, name string) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testenv.AdminURL())
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "drop database if exists "+pgx.Identifier{name}.Sanitize()+" with (force)"); err != nil {
		t.Errorf("drop %s: %v", name, err)
	}
}
