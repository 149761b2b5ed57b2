// Package backup owns PostgreSQL backups in S3-compatible object storage:
// taking them (pg_dump streamed into the bucket, no temporary file),
// listing and pruning them, restoring them (streamed into pg_restore) and
// verifying them by restoring into a scratch database. Scheduling, task
// handling and the CLI live elsewhere and call this package.
//
// It needs the PostgreSQL client tools (pg_dump, pg_restore) of a major at
// least as new as the server's.
package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

var (
	// ErrNotConfigured is returned by New when S3_ENDPOINT is empty.
	ErrNotConfigured = errors.New("backups not configured (S3_ENDPOINT is empty)")
	// ErrNotFound is returned for a backup, manifest or bucket that does not
	// exist.
	ErrNotFound = errors.New("backup not found")
	// ErrChecksum is returned when a backup's bytes do not match the
	// sha256 or size recorded when it was taken.
	ErrChecksum = errors.New("backup checksum mismatch")
	// ErrNotEmpty is returned by Restore for a target that already holds
	// tables, unless forced.
	ErrNotEmpty = errors.New("restore target not empty")
	// ErrRowCounts is returned by Verify when restored row counts differ
	// from the counts taken with the dump.
	ErrRowCounts = errors.New("restored row counts differ")
)

// Backups takes, lists, prunes, restores and verifies backups in one
// bucket.
type Backups struct {
	cfg    Config
	client *minio.Client
	log    *slog.Logger
}

// New makes the S3 client. It does not contact the server.
func New(cfg Config, log *slog.Logger) (*Backups, error) {
	if !cfg.Enabled() {
		return nil, ErrNotConfigured
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure: cfg.UseTLS,
		Region: cfg.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("create s3 client: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Backups{cfg: cfg, client: client, log: log}, nil
}

// Bucket is the bucket backups go to.
func (b *Backups) Bucket() string { return b.cfg.Bucket }

// Result describes a dump. Run returns it, and it is stored as JSON next
// to the dump as its manifest (<key>.json).
type Result struct {
	Key           string           `json:"key"`
	Database      string           `json:"database"`
	Encoding      string           `json:"encoding"`
	Time          time.Time        `json:"time"` // the now given to Run, in the key
	Size          int64            `json:"size"`
	SHA256        string           `json:"sha256"` // hex
	Duration      time.Duration    `json:"duration_ns"`
	ServerVersion string           `json:"server_version"`  // e.g. "16.4"
	PgDumpVersion string           `json:"pg_dump_version"` // e.g. "16.4"
	Format        string           `json:"format"`          // pg_dump --format
	Tables        map[string]int64 `json:"tables"`          // "schema.table" → rows in the dump
}

// Object is a stored dump.
type Object struct {
	Key          string
	Time         time.Time // when the dump was taken, from the key
	Size         int64
	SHA256       string
	LastModified time.Time // as the server reports it
}

// User metadata on a dump: what is known when its upload starts, so a dump
// is partly self-describing for tools that only see the object (mc stat,
// the console). Its size and sha256 are known only at the end and go to
// the manifest (<key>.json), which also holds the row counts; attaching
// them to the object would take a server-side copy of the whole dump.
//
// Dumps taken before this layout carry metaSHA256 and metaSize (and a
// Duration) in their metadata as well, attached by a copy to their key
// once hashed, and a manifest too; their metadata is used only when their
// manifest is gone.
const (
	metaSHA256        = "Sha256"
	metaSize          = "Size"
	metaDatabase      = "Database"
	metaTime          = "Dump-Time"
	metaServerVersion = "Server-Version"
	metaPgDumpVersion = "Pg-Dump-Version"
)

func (r Result) uploadMetadata() map[string]string {
	return map[string]string{
		metaDatabase:      r.Database,
		metaTime:          r.Time.UTC().Format(time.RFC3339),
		metaServerVersion: r.ServerVersion,
		metaPgDumpVersion: r.PgDumpVersion,
	}
}

// meta reads user metadata whatever case the server and HTTP client gave
// its names.
func meta(info minio.ObjectInfo, name string) string {
	for k, v := range info.UserMetadata {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// stored is what Restore and Verify check a dump against: the object as
// the server describes it, and the size and checksum it had when taken.
type stored struct {
	info          minio.ObjectInfo
	sha256        string // hex
	size          int64
	pgDumpVersion string
	manifest      *Result // nil when the checksum came from the metadata
}

// describe reads what a dump must be: from its manifest or, for a dump of
// the older layout whose manifest is gone or unreadable, from its own
// metadata. A dump with neither is refused: there is nothing to verify it
// against.
func (b *Backups) describe(ctx context.Context, key string) (stored, error) {
	info, err := b.client.StatObject(ctx, b.cfg.Bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return stored{}, fmt.Errorf("stat %s: %w", key, mapS3Error(err))
	}
	m, merr := b.Manifest(ctx, key)
	if merr == nil {
		if m.Key != key || len(m.SHA256) != 64 || m.Size < 0 {
			return stored{}, fmt.Errorf("stat %s: manifest names %q with sha256 %q and %d bytes: %w", key, m.Key, m.SHA256, m.Size, ErrChecksum)
		}
		return stored{info: info, sha256: m.SHA256, size: m.Size, pgDumpVersion: m.PgDumpVersion, manifest: &m}, nil
	}
	if ctx.Err() != nil {
		return stored{}, merr
	}
	sum, size, ok := legacyChecksum(info)
	if !ok {
		return stored{}, fmt.Errorf("stat %s: no sha256 metadata, and %w", key, merr)
	}
	b.log.Warn("backup manifest unreadable, using the dump's checksum metadata", "key", key, "err", merr)
	return stored{info: info, sha256: sum, size: size, pgDumpVersion: meta(info, metaPgDumpVersion)}, nil
}

// legacyChecksum reads the size and checksum a dump of the older layout
// carries in its metadata.
func legacyChecksum(info minio.ObjectInfo) (string, int64, bool) {
	sum := meta(info, metaSHA256)
	size, err := strconv.ParseInt(meta(info, metaSize), 10, 64)
	return sum, size, sum != "" && err == nil
}

// Manifest reads the manifest stored with the dump at key.
func (b *Backups) Manifest(ctx context.Context, key string) (Result, error) {
	obj, err := b.client.GetObject(ctx, b.cfg.Bucket, manifestKey(key), minio.GetObjectOptions{})
	if err != nil {
		return Result{}, fmt.Errorf("read manifest of %s: %w", key, mapS3Error(err))
	}
	defer obj.Close()
	var r Result
	if err := json.NewDecoder(io.LimitReader(obj, 16<<20)).Decode(&r); err != nil {
		return Result{}, fmt.Errorf("read manifest of %s: %w", key, mapS3Error(err))
	}
	return r, nil
}

func (b *Backups) putManifest(ctx context.Context, r Result) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	_, err = b.client.PutObject(ctx, b.cfg.Bucket, manifestKey(r.Key), bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: "application/json"})
	if err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	return nil
}

// ensureBucket creates the bucket on first use, so a fresh MinIO needs no
// manual step.
func (b *Backups) ensureBucket(ctx context.Context) error {
	ok, err := b.client.BucketExists(ctx, b.cfg.Bucket)
	if err != nil {
		return fmt.Errorf("check bucket %s: %w", b.cfg.Bucket, err)
	}
	if ok {
		return nil
	}
	err = b.client.MakeBucket(ctx, b.cfg.Bucket, minio.MakeBucketOptions{Region: b.cfg.Region})
	if code := minio.ToErrorResponse(err).Code; code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" {
		// Another run created it between our check and our create.
		err = nil
	}
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", b.cfg.Bucket, err)
	}
	b.log.Info("backup bucket created", "bucket", b.cfg.Bucket)
	return nil
}

// remove deletes keys best-effort, for cleanup after a failure that is
// already being returned: it runs even when ctx is cancelled, and logs
// rather than returns what it could not delete (Prune retries later).
func (b *Backups) remove(ctx context.Context, keys ...string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	for _, k := range keys {
		if err := b.client.RemoveObject(ctx, b.cfg.Bucket, k, minio.RemoveObjectOptions{}); err != nil && !isNotFound(err) {
			b.log.Warn("backup cleanup failed", "key", k, "err", err)
		}
	}
}

func isNotFound(err error) bool {
	switch minio.ToErrorResponse(err).Code {
	case "NoSuchKey", "NoSuchBucket", "NotFound":
		return true
	}
	return false
}

// mapS3Error is the one place S3 error codes become this package's
// sentinels.
func mapS3Error(err error) error {
	if err != nil && isNotFound(err) {
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	return err
}
