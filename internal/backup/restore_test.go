package backup_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"

	"github.com/cepcomunicacion/cepjobs/internal/backup"
	"github.com/cepcomunicacion/cepjobs/internal/testenv"
)

// backedUp fills a database, backs it up and returns its URL and the
// result.
func backedUp(t *testing.T, bu *bundle) (string, backup.Result) {
	t.Helper()
	src := newDatabase(t)
	fill(t, src, 20)
	res, err := bu.b.Run(context.Background(), src, dumpTime, nil)
	if err != nil {
		t.Fatal(err)
	}
	return src, res
}

func TestRestoreRefusesNonEmptyTarget(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	bu := setup(t)
	src, res := backedUp(t, bu)

	target := newDatabase(t)
	// A clashing table with other rows: force must replace it.
	if _, err := connect(t, target).Exec(ctx, `create table customers (id int, junk text); insert into customers values (1, 'junk')`); err != nil {
		t.Fatal(err)
	}
	err := bu.b.Restore(ctx, res.Key, target, backup.RestoreOptions{}, nil)
	if !errors.Is(err, backup.ErrNotEmpty) {
		t.Fatalf("got %v, want ErrNotEmpty", err)
	}
	mustContain(t, err, "public.customers")
	diff(t, "target relations", []string{"public.customers"}, relations(t, target))

	if err := bu.b.Restore(ctx, res.Key, target, backup.RestoreOptions{Force: true}, nil); err != nil {
		t.Fatal(err)
	}
	diff(t, "restored rows", fingerprint(t, src), fingerprint(t, target))
}

// With a wrong checksum recorded, the stream is a valid dump pg_restore
// would happily apply: only the held-back tail stops it committing.
func TestRestoreChecksumMismatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	bu := setup(t)
	_, res := backedUp(t, bu)

	m, err := bu.b.Manifest(ctx, res.Key)
	if err != nil {
		t.Fatal(err)
	}
	m.SHA256 = strings.Repeat("0", 64)
	bu.putManifest(t, m)

	target := newDatabase(t)
	err = bu.b.Restore(ctx, res.Key, target, backup.RestoreOptions{}, nil)
	if !errors.Is(err, backup.ErrChecksum) {
		t.Fatalf("got %v, want ErrChecksum", err)
	}
	mustContain(t, err, "stopped before committing", res.SHA256)
	diff(t, "target relations", []string(nil), relations(t, target))
}

// An object replaced by other bytes, of another size or the same, never
// restores.
func TestRestoreModifiedObject(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	bu := setup(t)
	_, res := backedUp(t, bu)
	info, err := bu.client.StatObject(ctx, bu.cfg.Bucket, res.Key, minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	obj, err := bu.client.GetObject(ctx, bu.cfg.Bucket, res.Key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	orig, err := io.ReadAll(obj)
	obj.Close()
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"appended", append(bytes.Clone(orig), "trailing garbage"...)},
		{"truncated", orig[:len(orig)-100]},
		{"flipped", func() []byte {
			b := bytes.Clone(orig)
			b[len(b)/2] ^= 0xff
			return b
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := bu.client.PutObject(ctx, bu.cfg.Bucket, res.Key, bytes.NewReader(tc.data), int64(len(tc.data)),
				minio.PutObjectOptions{UserMetadata: info.UserMetadata}); err != nil {
				t.Fatal(err)
			}
			target := newDatabase(t)
			err := bu.b.Restore(ctx, res.Key, target, backup.RestoreOptions{}, nil)
			t.Logf("restore error: %v", err)
			if !errors.Is(err, backup.ErrChecksum) {
				// A flipped byte may trip pg_restore's own checks first;
				// either way nothing may be committed.
				if tc.name != "flipped" || err == nil {
					t.Errorf("got %v, want ErrChecksum", err)
				}
			}
			diff(t, "target relations", []string(nil), relations(t, target))
		})
	}
}

func TestRestoreNotFound(t *testing.T) {
	t.Parallel()
	bu := setup(t)
	bu.put(t)
	err := bu.b.Restore(context.Background(), "postgres/x/2026/01/01/x-20260101T000000Z.dump", newDatabase(t), backup.RestoreOptions{}, nil)
	if !errors.Is(err, backup.ErrNotFound) {
		t.Errorf("got %v, want ErrNotFound", err)
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	bu := setup(t)
	src := newDatabase(t)
	wantTables := fill(t, src, 20)
	res, err := bu.b.Run(ctx, src, dumpTime, nil)
	if err != nil {
		t.Fatal(err)
	}

	var steps []string
	report, err := bu.b.Verify(ctx, res.Key, testenv.AdminURL(), func(p backup.Progress) {
		if len(steps) == 0 || steps[len(steps)-1] != p.Step {
			steps = append(steps, p.Step)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "steps", []string{"check", "create", "restore", "count", "done"}, steps)
	var want []backup.TableCheck
	for _, name := range []string{"other.events", "public.Mixed Case", "public.customers", "public.empty_table", "public.files"} {
		want = append(want, backup.TableCheck{Table: name, Want: wantTables[name], Got: wantTables[name], OK: true})
	}
	diff(t, "report tables", want, report.Tables)
	if !report.OK || report.SHA256 != res.SHA256 || report.Key != res.Key {
		t.Errorf("got report %+v, want OK for %s", report, res.Key)
	}
	assertDropped(t, report.Scratch)

	// A manifest that disagrees with the dump is reported table by table.
	m, err := bu.b.Manifest(ctx, res.Key)
	if err != nil {
		t.Fatal(err)
	}
	m.Tables["public.customers"]++
	m.Tables["public.gone"] = 7
	bu.putManifest(t, m)
	report, err = bu.b.Verify(ctx, res.Key, testenv.AdminURL(), nil)
	if !errors.Is(err, backup.ErrRowCounts) {
		t.Fatalf("got %v, want ErrRowCounts", err)
	}
	mustContain(t, err, "public.customers (want 5001, got 5000)", "public.gone (want 7, got -1)")
	var bad []string
	for _, c := range report.Tables {
		if !c.OK {
			bad = append(bad, c.Table)
		}
	}
	diff(t, "mismatched tables", []string{"public.customers", "public.gone"}, bad)
	if report.OK {
		t.Error("got report OK, want not OK")
	}
	assertDropped(t, report.Scratch)
}

// A dump that fails to restore still has its scratch database dropped,
// and the error is pg_restore's, though it quit without reading the rest.
func TestVerifyDropsScratchOnFailure(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	bu := setup(t, func(c *backup.Config) {
		c.PgRestore = fakeTool(t, `
if [ "$1" = "--version" ]; then exec pg_restore --version; fi
head -c 1000 > /dev/null
echo "pg_restore: error: simulated failure" >&2
exit 1
`)
	})
	_, res := backedUp(t, bu)
	report, err := bu.b.Verify(ctx, res.Key, testenv.AdminURL(), nil)
	mustContain(t, err, "pg_restore failed", "simulated failure")
	if report.Scratch == "" || report.OK {
		t.Fatalf("got report %+v, want a scratch name and not OK", report)
	}
	assertDropped(t, report.Scratch)
}

func (bu *bundle) putManifest(t *testing.T, m backup.Result) {
	t.Helper()
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bu.client.PutObject(context.Background(), bu.cfg.Bucket, m.Key+".json", bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
}

func assertDropped(t *testing.T, name string) {
	t.Helper()
	if !strings.HasPrefix(name, "cepjobs_verify_") {
		t.Fatalf("got scratch database %q, want cepjobs_verify_…", name)
	}
	var n int
	if err := connect(t, testenv.AdminURL()).QueryRow(context.Background(), "select count(*) from pg_database where datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("scratch database %s still exists", pgx.Identifier{name}.Sanitize())
	}
}

// Dumps of the older layout carry their size and checksum in their own
// metadata (copied onto them once hashed) as well as in their manifest.
// They still list, restore and verify, with their manifest or without,
// and fail on a checksum mismatch.
func TestOlderLayout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	bu := setup(t)
	src, res := backedUp(t, bu)
	db := dbName(t, src)
	// What the older Run left: the same object, with every field in its
	// metadata, and the manifest.
	legacy := func(sum string) {
		t.Helper()
		meta := map[string]string{
			"Sha256": sum, "Size": fmt.Sprint(res.Size), "Database": db, "Dump-Time": "2026-11-28T03:00:00Z",
			"Duration": "1.234s", "Server-Version": res.ServerVersion, "Pg-Dump-Version": res.PgDumpVersion,
		}
		if _, err := bu.client.CopyObject(ctx,
			minio.CopyDestOptions{Bucket: bu.cfg.Bucket, Object: res.Key, UserMetadata: meta, ReplaceMetadata: true},
			minio.CopySrcOptions{Bucket: bu.cfg.Bucket, Object: res.Key}); err != nil {
			t.Fatal(err)
		}
	}
	legacy(res.SHA256)

	list, err := bu.b.List(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].SHA256 != res.SHA256 || list[0].Size != res.Size {
		t.Errorf("got list %+v, want %s with sha256 %s", list, res.Key, res.SHA256)
	}
	target := newDatabase(t)
	if err := bu.b.Restore(ctx, res.Key, target, backup.RestoreOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	diff(t, "restored rows", fingerprint(t, src), fingerprint(t, target))
	report, err := bu.b.Verify(ctx, res.Key, testenv.AdminURL(), nil)
	if err != nil || !report.OK || report.SHA256 != res.SHA256 {
		t.Errorf("verify: got %+v, %v; want OK with sha256 %s", report, err, res.SHA256)
	}

	// Without a manifest it still lists and restores, from its metadata,
	// and its checksum still counts.
	if err := bu.client.RemoveObject(ctx, bu.cfg.Bucket, res.Key+".json", minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if list, err := bu.b.List(ctx, db); err != nil || len(list) != 1 || list[0].SHA256 != res.SHA256 {
		t.Errorf("got list %+v, %v without the manifest; want %s with sha256 %s", list, err, res.Key, res.SHA256)
	}
	target = newDatabase(t)
	if err := bu.b.Restore(ctx, res.Key, target, backup.RestoreOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	diff(t, "restored rows without the manifest", fingerprint(t, src), fingerprint(t, target))

	legacy(strings.Repeat("0", 64))
	target = newDatabase(t)
	err = bu.b.Restore(ctx, res.Key, target, backup.RestoreOptions{}, nil)
	if !errors.Is(err, backup.ErrChecksum) {
		t.Fatalf("got %v, want ErrChecksum", err)
	}
	diff(t, "target relations", []string(nil), relations(t, target))
}

// A dump with neither a manifest nor checksum metadata is not a backup:
// List leaves it out and Restore refuses it.
func TestDumpWithoutChecksum(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	bu := setup(t)
	src, res := backedUp(t, bu)
	if err := bu.client.RemoveObject(ctx, bu.cfg.Bucket, res.Key+".json", minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if list, err := bu.b.List(ctx, dbName(t, src)); err != nil || len(list) != 0 {
		t.Errorf("got list %+v, %v; want nothing", list, err)
	}
	err := bu.b.Restore(ctx, res.Key, newDatabase(t), backup.RestoreOptions{}, nil)
	if !errors.Is(err, backup.ErrNotFound) {
		t.Errorf("got %v, want ErrNotFound", err)
	}
	mustContain(t, err, "no sha256 metadata", "manifest")
}
