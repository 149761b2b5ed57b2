package backuptest_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/cepcomunicacion/cepjobs/internal/backup/backuptest"
)

func TestStartS3(t *testing.T) {
	s := backuptest.StartS3(t)
	cfg := s.Config(t)
	if cfg.Endpoint != s.Endpoint || cfg.Bucket == "" || !cfg.Enabled() {
		t.Fatalf("got config %+v for server %s", cfg, s.Endpoint)
	}
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	const body = "hello"
	if _, err := c.PutObject(ctx, cfg.Bucket, "a/b", strings.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	obj, err := c.GetObject(ctx, cfg.Bucket, "a/b", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	got, err := io.ReadAll(obj)
	if err != nil || string(got) != body {
		t.Errorf("got %q, %v; want %q", got, err, body)
	}
	// RemoveBucket (run by Config's cleanup) empties a full bucket.
	if err := s.RemoveBucket(ctx, cfg.Bucket); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.BucketExists(ctx, cfg.Bucket); err != nil || ok {
		t.Errorf("bucket exists after RemoveBucket: %v, %v", ok, err)
	}
}
