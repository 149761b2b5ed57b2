package backup_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cepcomunicacion/cepjobs/internal/backup"
)

// key builds a dump key as Run does. Prune goes by the time in the key,
// which is how these tests give objects ages S3 would not let them fake.
func key(db string, age time.Duration) string {
	t := dumpTime.Add(-age)
	return fmt.Sprintf("postgres/%s/%s/%s-%s.dump", db, t.Format("2006/01/02"), db, t.Format("20060102T150405Z"))
}

func tempKey(db string, age time.Duration) string {
	return fmt.Sprintf("postgres/%s/.incomplete/%s-%s-0123abcd.dump", db, db, dumpTime.Add(-age).Format("20060102T150405Z"))
}

func (bu *bundle) put(t *testing.T, keys ...string) {
	t.Helper()
	ctx := context.Background()
	if ok, _ := bu.client.BucketExists(ctx, bu.cfg.Bucket); !ok {
		if err := bu.client.MakeBucket(ctx, bu.cfg.Bucket, minio.MakeBucketOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range keys {
		body := "dump " + k
		if _, err := bu.client.PutObject(ctx, bu.cfg.Bucket, k, strings.NewReader(body), int64(len(body)), minio.PutObjectOptions{
			UserMetadata: map[string]string{"sha256": "not-checked-by-prune", "size": fmt.Sprint(len(body))},
		}); err != nil {
			t.Fatal(err)
		}
	}
}

const day = 24 * time.Hour

func TestPrune(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	bu := setup(t, func(c *backup.Config) {
		c.KeepMin = 3
		c.Retention = 3 * day
	})
	const db = "shop"
	kept := []string{
		key(db, time.Hour), key(db, time.Hour) + ".json",
		key(db, day), key(db, day) + ".json",
		key(db, 2*day), key(db, 2*day) + ".json",
		// Fourth newest, but within retention.
		key(db, 2*day+12*time.Hour), key(db, 2*day+12*time.Hour) + ".json",
		// Leftovers too young to be a crashed run's.
		tempKey(db, time.Hour),
		key(db, 2*time.Hour) + ".json",
		// Not ours: other databases, other roots, names we never write.
		key("otherdb", 400*day), key("otherdb", 400*day) + ".json",
		key("shop2", 400*day),
		"unrelated/" + key(db, 400*day),
		"postgres/shop/notes.txt",
		"postgres/shop/2026/01/01/other-20260101T000000Z.dump",
		"postgres/shop/2020/01/01/shop-20260101T000000Z.dump", // filed under the wrong date
		"postgres/shop/.incomplete/nested/shop-20200101T000000Z-0123abcd.dump",
	}
	doomed := []string{
		key(db, 4*day), key(db, 4*day) + ".json",
		key(db, 10*day), // its manifest is missing: still deleted
		key(db, 40*day), key(db, 40*day) + ".json",
		tempKey(db, 2*day),
		key(db, 5*day) + ".json", // a manifest whose dump never landed
	}
	bu.put(t, kept...)
	bu.put(t, doomed...)

	deleted, err := bu.b.Prune(ctx, db, dumpTime)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(deleted)
	slices.Sort(doomed)
	diff(t, "deleted", doomed, deleted)
	slices.Sort(kept)
	diff(t, "left", kept, bu.keys(t))

	// Pruning again finds nothing more: the rule is stable.
	again, err := bu.b.Prune(ctx, db, dumpTime)
	if err != nil || len(again) != 0 {
		t.Errorf("second prune deleted %v, %v; want nothing", again, err)
	}

	list, err := bu.b.List(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range list {
		got = append(got, o.Key)
	}
	diff(t, "list, newest first", []string{key(db, time.Hour), key(db, day), key(db, 2*day), key(db, 2*day+12*time.Hour)}, got)
}

// KeepMin holds even when every dump is past retention, as after a
// schedule stopped for months.
func TestPruneKeepsNewestWhateverTheirAge(t *testing.T) {
	t.Parallel()
	bu := setup(t, func(c *backup.Config) {
		c.KeepMin = 3
		c.Retention = 3 * day
	})
	const db = "old"
	var all []string
	for i := range 6 {
		all = append(all, key(db, time.Duration(100+i)*day))
	}
	bu.put(t, all...)
	deleted, err := bu.b.Prune(context.Background(), db, dumpTime)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(deleted)
	want := slices.Clone(all[3:])
	slices.Sort(want)
	diff(t, "deleted", want, deleted)
	want = slices.Clone(all[:3])
	slices.Sort(want)
	diff(t, "left", want, bu.keys(t))
}

// A run killed mid-upload leaves a multipart upload no listing shows, at
// the dump's key (or under .incomplete/ for the older layout); Prune
// aborts it once it is a day old.
func TestPruneAbortsStaleUploads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	bu := setup(t)
	bu.put(t) // creates the bucket
	core := minio.Core{Client: bu.client}
	stale, fresh := []string{key("shop", 2*day), tempKey("shop", 2*day)}, []string{key("shop", time.Hour), tempKey("shop", time.Hour)}
	for _, k := range append(slices.Clone(stale), fresh...) {
		id, err := core.NewMultipartUpload(ctx, bu.cfg.Bucket, k, minio.PutObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := core.PutObjectPart(ctx, bu.cfg.Bucket, k, id, 1, strings.NewReader("part"), 4, minio.PutObjectPartOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	diff(t, "unfinished uploads before", sorted(append(slices.Clone(stale), fresh...)), sorted(bu.unfinishedUploads(t)))
	deleted, err := bu.b.Prune(ctx, "shop", dumpTime)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "deleted", sorted(stale), sorted(deleted))
	diff(t, "unfinished uploads after", sorted(fresh), sorted(bu.unfinishedUploads(t)))
}

func sorted(s []string) []string {
	slices.Sort(s)
	return s
}
