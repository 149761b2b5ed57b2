// Package objstore is the small S3 client behind exports: one bucket on an
// S3-compatible server (MinIO in production), streamed uploads of unknown
// size in bounded memory, and presigned download links. Backups have their
// own, richer client in internal/backup; this one shares its endpoint
// settings (S3_*), not its bucket.
package objstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// PartSize bounds the memory of an upload: minio-go holds one part in
// memory, and with an unknown size and no PartSize it would allocate
// 528 MiB. 5 MiB parts (S3's minimum) allow objects up to 10,000 parts =
// 48.8 GiB, and keep a worker exporting 100,000 leads at 42–45 MiB peak RSS
// (16 MiB parts: 65–80 MiB; bench/export).
const PartSize = 5 << 20

// MaxURLTTL is the longest a presigned link can live (SigV4).
const MaxURLTTL = 7 * 24 * time.Hour

// writeBuffer batches the writer's small writes (one CSV line each) into
// fewer pipe hand-offs.
const writeBuffer = 64 << 10

// Config says where the bucket is. The endpoint fields are backup.Config's
// (S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION, S3_USE_TLS).
type Config struct {
	Endpoint  string // host:port
	AccessKey string
	SecretKey string
	Region    string
	UseTLS    bool
	Bucket    string
}

// ValidBucketName reports whether name is a bucket name S3 accepts.
func ValidBucketName(name string) error {
	if err := s3utils.CheckValidBucketNameStrict(name); err != nil {
		return fmt.Errorf("%q is not a valid bucket name (3-63 lowercase letters, digits, dots, hyphens)", name)
	}
	return nil
}

// Store reads and writes one bucket.
type Store struct {
	client  *minio.Client
	bucket  string
	region  string
	log     *slog.Logger
	ensured atomic.Bool
}

// New makes the client. It does not contact the server: the bucket is
// created on first upload, so a worker starts while MinIO is still coming
// up.
func New(c Config, log *slog.Logger) (*Store, error) {
	if c.Endpoint == "" {
		return nil, errors.New("create object store: no endpoint")
	}
	if err := ValidBucketName(c.Bucket); err != nil {
		return nil, fmt.Errorf("create object store: %w", err)
	}
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	// With Region set minio-go never asks the server for the bucket's
	// location, so presigning is a local computation.
	client, err := minio.New(c.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(c.AccessKey, c.SecretKey, ""),
		Secure: c.UseTLS,
		Region: c.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("create s3 client: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{client: client, bucket: c.Bucket, region: c.Region, log: log}, nil
}

// Bucket is the bucket the store writes.
func (s *Store) Bucket() string { return s.bucket }

// EnsureBucket creates the bucket unless it exists. Once it succeeded it
// does nothing.
func (s *Store) EnsureBucket(ctx context.Context) error {
	if s.ensured.Load() {
		return nil
	}
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("check bucket %s: %w", s.bucket, err)
	}
	if !ok {
		err = s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: s.region})
		if code := minio.ToErrorResponse(err).Code; code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" {
			err = nil // another worker created it between our check and our create
		}
		if err != nil {
			return fmt.Errorf("create bucket %s: %w", s.bucket, err)
		}
		s.log.Info("object storage bucket created", "bucket", s.bucket)
	}
	s.ensured.Store(true)
	return nil
}

// errUploadEnded is what a writer sees once the upload stopped reading.
var errUploadEnded = errors.New("upload ended")

// Upload stores at key whatever write writes, streamed: write runs in its
// own goroutine and its bytes go through a pipe into a multipart upload of
// unknown size, PartSize at a time, so memory stays bounded whatever the
// object's size. It returns the size stored.
//
// write gets a context that is cancelled as soon as the upload fails, and
// must return when it is. If write returns an error, the upload is aborted
// and nothing is stored at key (an object already there stays); the first
// failure, write's or the upload's, is the error returned.
func (s *Store) Upload(ctx context.Context, key, contentType string, write func(ctx context.Context, w io.Writer) error) (int64, error) {
	if err := s.EnsureBucket(ctx); err != nil {
		return 0, fmt.Errorf("upload %s: %w", key, err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	pr, pw := io.Pipe()
	counted := &countingWriter{w: pw}
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		bw := bufio.NewWriterSize(counted, writeBuffer)
		err := write(ctx, bw)
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			// The first failure is the cause; an error that only echoes
			// the upload stopping (errUploadEnded) does not take the blame.
			cancel(err)
		}
		// The reader sees the error instead of EOF, so minio-go aborts the
		// multipart upload rather than completing a truncated object.
		pw.CloseWithError(err)
	}()

	info, putErr := s.client.PutObject(ctx, s.bucket, key, pr, -1, minio.PutObjectOptions{
		ContentType: contentType,
		PartSize:    PartSize,
		// Parts come from one stream in order; more threads would only add
		// buffers.
		NumThreads: 1,
	})
	if putErr != nil {
		cancel(putErr)
	}
	pr.CloseWithError(errUploadEnded)
	<-wrote

	if err := context.Cause(ctx); err != nil {
		s.abandon(ctx, key)
		return 0, fmt.Errorf("upload %s: %w", key, err)
	}
	if info.Size != counted.n {
		return 0, fmt.Errorf("upload %s: stored %d bytes, wrote %d", key, info.Size, counted.n)
	}
	return info.Size, nil
}

// abandon removes what a failed upload may have left (minio-go aborts its
// multipart upload, but with a context that may be cancelled already). It
// is best-effort: an incomplete upload costs space, not correctness.
func (s *Store) abandon(ctx context.Context, key string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := s.client.RemoveIncompleteUpload(ctx, s.bucket, key); err != nil {
		s.log.Debug("remove incomplete upload", "key", key, "err", err)
	}
}

// PresignGet returns a link that downloads key without credentials for
// ttl (at most MaxURLTTL). A non-empty filename makes browsers save the
// download under that name. No request is made: anyone with the link can
// read the object until it expires, so the link is the secret.
func (s *Store) PresignGet(ctx context.Context, key string, ttl time.Duration, filename string) (string, error) {
	if ttl <= 0 || ttl > MaxURLTTL {
		return "", fmt.Errorf("presign %s: ttl %s is outside (0, %s]", key, ttl, MaxURLTTL)
	}
	params := url.Values{}
	if filename != "" {
		params.Set("response-content-disposition", fmt.Sprintf("attachment; filename=%q", filename))
	}
	u, err := s.client.PresignedGetObject(ctx, s.bucket, key, ttl, params)
	if err != nil {
		return "", fmt.Errorf("presign %s: %w", key, err)
	}
	return u.String(), nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
