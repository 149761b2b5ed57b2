package backup_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cepcomunicacion/cepjobs/internal/backup"
	"github.com/cepcomunicacion/cepjobs/internal/testenv"
)

var dumpTime = time.Date(2026, 11, 28, 3, 0, 0, 0, time.UTC)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	bu := setup(t)
	src := newDatabase(t)
	// 1300 rows of 16 KiB random bytes make a dump of three 8 MiB parts, the
	// last partial.
	wantTables := fill(t, src, 1300)
	db := dbName(t, src)

	var mu sync.Mutex
	var steps []string
	res, err := bu.b.Run(ctx, src, dumpTime, func(p backup.Progress) {
		mu.Lock()
		defer mu.Unlock()
		if len(steps) == 0 || steps[len(steps)-1] != p.Step {
			steps = append(steps, p.Step)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "steps", []string{"check", "dump", "finalize", "done"}, steps)

	wantKey := fmt.Sprintf("postgres/%s/2026/11/28/%s-20261128T030000Z.dump", db, db)
	if res.Key != wantKey {
		t.Errorf("got key %s, want %s", res.Key, wantKey)
	}
	diff(t, "tables", wantTables, res.Tables)
	if res.Size < 16<<20 {
		t.Errorf("got a %d-byte dump, want over two 8 MiB parts", res.Size)
	}
	if !strings.HasPrefix(res.PgDumpVersion, serverMajor(t, src)) || !strings.HasPrefix(res.ServerVersion, serverMajor(t, src)) {
		t.Errorf("got pg_dump %s and server %s, want both of major %s", res.PgDumpVersion, res.ServerVersion, serverMajor(t, src))
	}

	// The stored bytes are what the result says.
	obj, err := bu.client.GetObject(ctx, bu.cfg.Bucket, res.Key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, obj)
	obj.Close()
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != res.SHA256 || n != res.Size {
		t.Errorf("downloaded %d bytes with sha256 %s, result says %d and %s", n, got, res.Size, res.SHA256)
	}
	// The object describes itself as far as known when its upload began;
	// size and checksum are in the manifest.
	info, err := bu.client.StatObject(ctx, bu.cfg.Bucket, res.Key, minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "metadata", map[string]string{
		"Database": db, "Dump-Time": "2026-11-28T03:00:00Z", "Server-Version": res.ServerVersion, "Pg-Dump-Version": res.PgDumpVersion,
	}, map[string]string(info.UserMetadata))
	if info.Size != res.Size {
		t.Errorf("object has %d bytes, result says %d", info.Size, res.Size)
	}
	manifest, err := bu.b.Manifest(ctx, res.Key)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "manifest", res, manifest)

	// Nothing but the dump and its manifest: the temporary upload is gone.
	diff(t, "keys", []string{res.Key, res.Key + ".json"}, bu.keys(t))
	diff(t, "unfinished uploads", []string(nil), bu.unfinishedUploads(t))

	list, err := bu.b.List(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Key != res.Key || list[0].SHA256 != res.SHA256 || list[0].Size != res.Size || !list[0].Time.Equal(dumpTime) {
		t.Errorf("got list %+v, want the one dump %s", list, res.Key)
	}

	target := newDatabase(t)
	if err := bu.b.Restore(ctx, res.Key, target, backup.RestoreOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	diff(t, "restored rows", fingerprint(t, src), fingerprint(t, target))
}

func TestRunLatestIsNewest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	bu := setup(t)
	src := newDatabase(t)
	fill(t, src, 1)
	var keys []string
	for _, at := range []time.Time{dumpTime.Add(-48 * time.Hour), dumpTime, dumpTime.Add(-24 * time.Hour)} {
		res, err := bu.b.Run(ctx, src, at, nil)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, res.Key)
	}
	latest, err := bu.b.Latest(ctx, dbName(t, src))
	if err != nil {
		t.Fatal(err)
	}
	if latest.Key != keys[1] {
		t.Errorf("got latest %s, want %s", latest.Key, keys[1])
	}
	list, err := bu.b.List(ctx, dbName(t, src))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range list {
		got = append(got, o.Key)
	}
	diff(t, "list, newest first", []string{keys[1], keys[2], keys[0]}, got)

	if _, err := bu.b.Latest(ctx, "nosuchdb"); !errors.Is(err, backup.ErrNotFound) {
		t.Errorf("got %v for a database never backed up, want ErrNotFound", err)
	}
}

// A pg_dump that fails after writing more than a part must leave nothing
// in the bucket: no dump, no temporary object, no unfinished upload. The
// fake also records its argv and environment to show the password went
// through PGPASSWORD only.
func TestRunPgDumpFailsHalfWay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	record := filepath.Join(t.TempDir(), "record")
	bu := setup(t, func(c *backup.Config) {
		c.PgDump = fakeTool(t, `
if [ "$1" = "--version" ]; then exec pg_dump --version; fi
echo "$@" > `+record+`
env | grep '^PG' >> `+record+`
head -c 20000000 /dev/zero
echo "pg_dump: error: simulated failure half-way" >&2
exit 1
`)
	})
	src := newDatabase(t)
	fill(t, src, 1)
	// Hold the row count up, so pg_dump fails while it is still running:
	// the error must blame pg_dump, not the count cancelled in its wake.
	tx, err := connect(t, src).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "lock table customers in access exclusive mode"); err != nil {
		t.Fatal(err)
	}
	// The local server trusts loopback, so this password is carried but
	// never checked.
	const password = "s3cr3t-pw"
	url := strings.Replace(src, "postgres@", "postgres:"+password+"@", 1)

	_, err = bu.b.Run(ctx, url, dumpTime, nil)
	mustContain(t, err, "pg_dump failed: exit status 1", "simulated failure half-way")
	if strings.Contains(err.Error(), password) {
		t.Errorf("error %q shows the password", err)
	}
	diff(t, "keys", []string(nil), bu.keys(t))
	diff(t, "unfinished uploads", []string(nil), bu.unfinishedUploads(t))
	if list, err := bu.b.List(ctx, dbName(t, src)); err != nil || len(list) != 0 {
		t.Errorf("got list %v, %v; want nothing", list, err)
	}

	rec, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	argv, env, _ := strings.Cut(string(rec), "\n")
	if strings.Contains(argv, password) {
		t.Errorf("pg_dump argv %q shows the password", argv)
	}
	for _, want := range []string{"--format=custom", "--compress=1", "--snapshot=", "--dbname=postgres://postgres@"} {
		if !strings.Contains(argv, want) {
			t.Errorf("pg_dump argv %q lacks %q", argv, want)
		}
	}
	if !strings.Contains(env, "PGPASSWORD="+password) {
		t.Errorf("pg_dump environment %q lacks PGPASSWORD", env)
	}
}

// pg_dump runs with a 1 MiB stdout buffer (stdbuf) where stdbuf works, and
// the dump is whole either way.
func TestRunBuffersPgDumpOutput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	record := filepath.Join(t.TempDir(), "record")
	bu := setup(t, func(c *backup.Config) {
		c.PgDump = fakeTool(t, `
if [ "$1" != "--version" ]; then echo "stdbuf_o=$_STDBUF_O" > `+record+`; fi
exec pg_dump "$@"
`)
	})
	src := newDatabase(t)
	wantTables := fill(t, src, 10)
	res, err := bu.b.Run(ctx, src, dumpTime, nil)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "tables", wantTables, res.Tables)
	rec, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	want := "stdbuf_o=1048576\n" // stdbuf passes the size in bytes
	if _, err := exec.LookPath("stdbuf"); err != nil {
		want = "stdbuf_o=\n"
	}
	if string(rec) != want {
		t.Errorf("pg_dump ran with %q, want %q", rec, want)
	}
}

// Cancelling ctx mid-stream kills pg_dump, even one whose child still
// holds its stdout, and aborts the upload.
func TestRunCancelledHalfWay(t *testing.T) {
	t.Parallel()
	marker := filepath.Join(t.TempDir(), "written")
	bu := setup(t, func(c *backup.Config) {
		c.PgDump = fakeTool(t, `
if [ "$1" = "--version" ]; then exec pg_dump --version; fi
head -c 20000000 /dev/zero
touch `+marker+`
sleep 10
`)
	})
	src := newDatabase(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := bu.b.Run(ctx, src, dumpTime, nil)
		errc <- err
	}()
	testenv.Eventually(t, 20*time.Second, "the fake pg_dump to write its bytes", func() bool {
		_, err := os.Stat(marker)
		return err == nil
	})
	// Two parts are stored by now, or soon: still nothing shows, to a
	// listing or to List, but the upload in progress.
	testenv.Eventually(t, 20*time.Second, "the upload to start", func() bool {
		return len(bu.unfinishedUploads(t)) == 1
	})
	diff(t, "keys mid-upload", []string(nil), bu.keys(t))
	if list, err := bu.b.List(context.Background(), dbName(t, src)); err != nil || len(list) != 0 {
		t.Errorf("got list %v, %v mid-upload; want nothing", list, err)
	}
	cancel()
	err := <-errc
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 9*time.Second {
		t.Errorf("Run returned after %s, want before the fake's sleep ends", d)
	}
	diff(t, "keys", []string(nil), bu.keys(t))
	diff(t, "unfinished uploads", []string(nil), bu.unfinishedUploads(t))
}

func TestRunRefusesOldPgDump(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	bu := setup(t, func(c *backup.Config) {
		c.PgDump = fakeTool(t, `
if [ "$1" = "--version" ]; then echo "pg_dump (PostgreSQL) 9.6.24"; exit 0; fi
echo "must not be run" >&2
exit 99
`)
	})
	src := newDatabase(t)
	major := serverMajor(t, src)
	_, err := bu.b.Run(ctx, src, dumpTime, nil)
	want := fmt.Sprintf("pg_dump 9.6 cannot dump a PostgreSQL %s server: install postgresql-client-%s or set CEPJOBS_PG_DUMP", major, major)
	if err == nil || err.Error() != want {
		t.Errorf("got error %v, want %q", err, want)
	}
	if !errors.Is(err, backup.ErrClientTooOld) {
		t.Errorf("got %v, want it to match ErrClientTooOld", err)
	}
	if ok, err := bu.client.BucketExists(ctx, bu.cfg.Bucket); err != nil || ok {
		t.Errorf("bucket exists: %v, %v; want nothing created", ok, err)
	}
}

func TestRunMissingPgDump(t *testing.T) {
	t.Parallel()
	bu := setup(t, func(c *backup.Config) { c.PgDump = "/nonexistent/pg_dump" })
	_, err := bu.b.Run(context.Background(), newDatabase(t), dumpTime, nil)
	mustContain(t, err, "/nonexistent/pg_dump --version", "CEPJOBS_PG_DUMP")
}

// An upload that fails half-way, on a part or when completing (after the
// manifest is stored), leaves nothing: no dump, no manifest, no unfinished
// upload.
func TestRunUploadFails(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		fail func(r *http.Request) bool
		want string
	}{
		{"second part", func(r *http.Request) bool {
			return r.Method == http.MethodPut && r.URL.Query().Get("partNumber") == "2"
		}, "upload dump: part 2: refused by the test proxy"},
		{"complete", func(r *http.Request) bool {
			return r.Method == http.MethodPost && r.URL.Query().Has("uploadId")
		}, "complete upload of postgres/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			bu := setup(t)
			proxied := bu.cfg
			proxied.Endpoint = failingProxy(t, bu.cfg.Endpoint, tc.fail)
			b, err := backup.New(proxied, slog.New(slog.NewTextHandler(t.Output(), nil)))
			if err != nil {
				t.Fatal(err)
			}
			src := newDatabase(t)
			fill(t, src, 1300) // three parts
			_, err = b.Run(ctx, src, dumpTime, nil)
			t.Logf("run error: %v", err)
			mustContain(t, err, tc.want)
			diff(t, "keys", []string(nil), bu.keys(t))
			diff(t, "unfinished uploads", []string(nil), bu.unfinishedUploads(t))
		})
	}
}

// failingProxy forwards to the S3 server at endpoint, but answers the
// requests fail picks with a non-retryable S3 error, and returns its
// host:port.
func failingProxy(t *testing.T, endpoint string, fail func(*http.Request) bool) string {
	t.Helper()
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: endpoint})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail(r) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>refused by the test proxy</Message></Error>`)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}
