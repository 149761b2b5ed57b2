package backup

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/minio/minio-go/v7"
)

// staleAfter is when a temporary upload or a manifest without its dump is
// taken for the leftover of a crashed run. A day is far beyond any dump's
// duration, so Prune never removes the work of a run in progress.
const staleAfter = 24 * time.Hour

type listed struct {
	key  string
	kind keyKind
	time time.Time
	info minio.ObjectInfo
}

// scan lists the keys under db's prefix. A missing bucket is an empty
// list: nothing has been backed up yet.
func (b *Backups) scan(ctx context.Context, db string) ([]listed, error) {
	var out []listed
	for o := range b.client.ListObjectsIter(ctx, b.cfg.Bucket, minio.ListObjectsOptions{Prefix: dbPrefix(db), Recursive: true}) {
		if o.Err != nil {
			if isNotFound(o.Err) {
				return nil, nil
			}
			return nil, fmt.Errorf("list %s: %w", dbPrefix(db), o.Err)
		}
		kind, t := parseKey(db, o.Key)
		out = append(out, listed{key: o.Key, kind: kind, time: t, info: o})
	}
	return out, nil
}

// List returns db's dumps, newest first. Size comes from the listing,
// the checksum from each dump's manifest (one small GET per dump) or, for
// a dump of the older layout whose manifest is gone, from its metadata (a
// HEAD). A dump with neither is left out: nothing could verify it.
func (b *Backups) List(ctx context.Context, db string) ([]Object, error) {
	all, err := b.scan(ctx, db)
	if err != nil {
		return nil, err
	}
	manifests := map[string]bool{}
	for _, l := range all {
		if l.kind == kindManifest {
			manifests[l.key] = true
		}
	}
	var out []Object
	for _, l := range all {
		if l.kind != kindDump {
			continue
		}
		o := Object{Key: l.key, Time: l.time, Size: l.info.Size, LastModified: l.info.LastModified}
		var merr error
		if manifests[manifestKey(l.key)] {
			var m Result
			if m, merr = b.Manifest(ctx, l.key); merr == nil {
				o.SHA256 = m.SHA256
				out = append(out, o)
				continue
			}
			if ctx.Err() != nil {
				return nil, merr
			}
		}
		info, err := b.client.StatObject(ctx, b.cfg.Bucket, l.key, minio.StatObjectOptions{})
		if isNotFound(err) {
			continue // pruned since the listing
		}
		if err != nil {
			return nil, fmt.Errorf("stat %s: %w", l.key, err)
		}
		sum, _, ok := legacyChecksum(info)
		if !ok {
			b.log.Warn("backup left out of the list: no readable manifest nor checksum metadata", "key", l.key, "manifest_err", merr)
			continue
		}
		o.SHA256 = sum
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b Object) int { return b.Time.Compare(a.Time) })
	return out, nil
}

// Latest returns db's newest dump, or ErrNotFound.
func (b *Backups) Latest(ctx context.Context, db string) (Object, error) {
	all, err := b.List(ctx, db)
	if err != nil {
		return Object{}, err
	}
	if len(all) == 0 {
		return Object{}, fmt.Errorf("latest backup of %s: %w", db, ErrNotFound)
	}
	return all[0], nil
}

// Prune deletes db's dumps older than Retention, except that the KeepMin
// newest are always kept, whatever their age. Ages are taken from the
// keys (see keys.go), relative to now. With each deleted dump goes its
// manifest. It also removes leftovers of crashed runs older than a day:
// temporary uploads, unfinished multipart uploads and manifests without a
// dump. It touches nothing outside postgres/<db>/ and no key it did not
// write. It returns the deleted keys, and the ones deleted before an error.
func (b *Backups) Prune(ctx context.Context, db string, now time.Time) ([]string, error) {
	all, err := b.scan(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("prune %s: %w", db, err)
	}
	var dumps []listed
	dumpKeys := map[string]bool{}
	for _, l := range all {
		if l.kind == kindDump {
			dumps = append(dumps, l)
			dumpKeys[l.key] = true
		}
	}
	slices.SortFunc(dumps, func(a, b listed) int { return b.time.Compare(a.time) })

	var doomed []string
	cutoff := now.Add(-b.cfg.Retention)
	for i, d := range dumps {
		if i >= b.cfg.KeepMin && d.time.Before(cutoff) {
			// The dump first: a manifest without its dump is harmless and
			// removed later, a dump without its manifest cannot be verified.
			doomed = append(doomed, d.key, manifestKey(d.key))
		}
	}
	stale := now.Add(-staleAfter)
	for _, l := range all {
		switch {
		case l.kind == kindIncomplete && l.time.Before(stale):
			doomed = append(doomed, l.key)
		case l.kind == kindManifest && !dumpKeys[l.key[:len(l.key)-len(manifestExt)]] && l.time.Before(stale):
			doomed = append(doomed, l.key)
		}
	}

	var deleted []string
	present := map[string]bool{}
	for _, l := range all {
		present[l.key] = true
	}
	for _, k := range doomed {
		if !present[k] {
			continue // a dump without a manifest
		}
		if err := b.client.RemoveObject(ctx, b.cfg.Bucket, k, minio.RemoveObjectOptions{}); err != nil && !isNotFound(err) {
			return deleted, fmt.Errorf("prune %s: delete %s: %w", db, k, err)
		}
		deleted = append(deleted, k)
	}

	uploads, err := b.abortStaleUploads(ctx, db, stale)
	deleted = append(deleted, uploads...)
	if err != nil {
		return deleted, fmt.Errorf("prune %s: %w", db, err)
	}
	if len(deleted) > 0 {
		b.log.Info("backups pruned", "database", db, "deleted", len(deleted), "kept", len(dumps)-countDumps(deleted, db))
	}
	return deleted, nil
}

// abortStaleUploads aborts multipart uploads a killed run left behind, at
// a dump's key (or, from the older layout, under .incomplete/). They are
// invisible to listings but their parts take space until aborted (MinIO
// also expires them after a day by default; other servers may not).
func (b *Backups) abortStaleUploads(ctx context.Context, db string, stale time.Time) ([]string, error) {
	var keys []string
	for u := range b.client.ListIncompleteUploads(ctx, b.cfg.Bucket, dbPrefix(db), true) {
		if u.Err != nil {
			if isNotFound(u.Err) || minio.ToErrorResponse(u.Err).Code == "NotImplemented" {
				return nil, nil
			}
			return nil, fmt.Errorf("list unfinished uploads: %w", u.Err)
		}
		if kind, t := parseKey(db, u.Key); (kind == kindDump || kind == kindIncomplete) && t.Before(stale) {
			keys = append(keys, u.Key)
		}
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	var done []string
	for _, k := range keys {
		if err := b.client.RemoveIncompleteUpload(ctx, b.cfg.Bucket, k); err != nil && !isNotFound(err) {
			return done, fmt.Errorf("abort upload %s: %w", k, err)
		}
		done = append(done, k)
	}
	return done, nil
}

func countDumps(keys []string, db string) int {
	n := 0
	for _, k := range keys {
		if kind, _ := parseKey(db, k); kind == kindDump {
			n++
		}
	}
	return n
}
