// Package backuptest gives tests a real S3 server on loopback: versitygw
// (built once from the module proxy and cached), or the server named by
// TEST_S3_ENDPOINT. Tests of the backup engine, the task handler, the CLI
// and `cepjobs dev` share it; none of them mocks S3.
package backuptest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cepcomunicacion/cepjobs/internal/backup"
)

// VersitygwVersion is the S3 server built for tests. v1.8.0 is known to
// handle everything backups use (FACTS.md); its bucket lifecycle rules are
// not implemented, which we do not use.
const VersitygwVersion = "v1.8.0"

// Server is an S3 endpoint for tests.
type Server struct {
	Endpoint  string // host:port
	AccessKey string
	SecretKey string
	Region    string
	UseTLS    bool

	cmd    *exec.Cmd
	exited chan error
	dir    string
}

// StartS3 starts a server for one test and stops it when the test ends.
// A package with many tests should rather call Start once in TestMain.
func StartS3(t testing.TB) *Server {
	t.Helper()
	s, err := Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("stop s3 server: %v", err)
		}
	})
	return s
}

// Start starts versitygw on a free loopback port, serving a fresh
// temporary directory, building it first if it is not cached yet (see
// BinaryPath). If TEST_S3_ENDPOINT is set it starts nothing and returns
// that server instead, with TEST_S3_ACCESS_KEY, TEST_S3_SECRET_KEY,
// TEST_S3_REGION and TEST_S3_USE_TLS. (They are not S3_ENDPOINT etc. so a
// developer's own configuration never sends test buckets to production.)
func Start(ctx context.Context) (*Server, error) {
	if ep := os.Getenv("TEST_S3_ENDPOINT"); ep != "" {
		tls, _ := strconv.ParseBool(os.Getenv("TEST_S3_USE_TLS"))
		s := &Server{
			Endpoint:  ep,
			AccessKey: os.Getenv("TEST_S3_ACCESS_KEY"),
			SecretKey: os.Getenv("TEST_S3_SECRET_KEY"),
			Region:    cmpOr(os.Getenv("TEST_S3_REGION"), "us-east-1"),
			UseTLS:    tls,
		}
		if err := s.waitReady(ctx, 10*time.Second, nil); err != nil {
			return nil, fmt.Errorf("reach TEST_S3_ENDPOINT %s: %w", ep, err)
		}
		return s, nil
	}
	bin, err := BinaryPath(ctx)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "cepjobs-s3-")
	if err != nil {
		return nil, fmt.Errorf("start s3 server: %w", err)
	}
	var lastErr error
	// A free port can be taken between finding it and versitygw binding
	// it; another port is the cure.
	for range 3 {
		s, err := launch(ctx, bin, dir)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	_ = os.RemoveAll(dir)
	return nil, lastErr
}

func launch(ctx context.Context, bin, dir string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("start s3 server: %w", err)
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, fmt.Errorf("start s3 server: %w", err)
	}
	logPath := filepath.Join(dir, "versitygw.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start s3 server: %w", err)
	}
	defer logFile.Close()
	s := &Server{
		Endpoint:  net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		AccessKey: "cepjobs-test",
		SecretKey: randomHex(16),
		Region:    "us-east-1",
		dir:       dir,
		exited:    make(chan error, 1),
	}
	s.cmd = exec.Command(bin, "--port", s.Endpoint, "--access", s.AccessKey, "--secret", s.SecretKey,
		"--region", s.Region, "--quiet", "posix", data)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	dieWithParent(s.cmd)
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start versitygw: %w", err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	if err := s.waitReady(ctx, 30*time.Second, s.exited); err != nil {
		_ = s.cmd.Process.Kill()
		<-s.exited
		log, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("start versitygw on %s: %w; its log: %s", s.Endpoint, err, bytes.TrimSpace(log))
	}
	return s, nil
}

// waitReady polls until the server answers an authenticated request.
func (s *Server) waitReady(ctx context.Context, timeout time.Duration, exited <-chan error) error {
	c, err := s.Client()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.ListBuckets(rctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %w", timeout, err)
		}
		select {
		case err := <-exited:
			return fmt.Errorf("exited early: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close stops the server and deletes its data. It does nothing to an
// external server.
func (s *Server) Close() error {
	if s.cmd == nil {
		return nil
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	return os.RemoveAll(s.dir)
}

// Client is a minio client for the server, for tests' own checks.
func (s *Server) Client() (*minio.Client, error) {
	c, err := minio.New(s.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Secure: s.UseTLS,
		Region: s.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("create s3 client: %w", err)
	}
	return c, nil
}

// Config is a backup configuration for the server with a bucket of its
// own, so tests can run in parallel. The bucket is not created (Run does
// that) and is emptied and removed when the test ends.
func (s *Server) Config(t testing.TB) backup.Config {
	t.Helper()
	bucket := "cepjobs-test-" + randomHex(6)
	t.Cleanup(func() {
		if err := s.RemoveBucket(context.Background(), bucket); err != nil {
			t.Errorf("remove test bucket: %v", err)
		}
	})
	return backup.Config{
		Endpoint:  s.Endpoint,
		AccessKey: s.AccessKey,
		SecretKey: s.SecretKey,
		Region:    s.Region,
		UseTLS:    s.UseTLS,
		Bucket:    bucket,
	}.WithDefaults()
}

// RemoveBucket deletes a bucket with everything in it, unfinished uploads
// included. A missing bucket is not an error.
func (s *Server) RemoveBucket(ctx context.Context, bucket string) error {
	c, err := s.Client()
	if err != nil {
		return err
	}
	if ok, err := c.BucketExists(ctx, bucket); err != nil || !ok {
		return err
	}
	var errs []error
	for o := range c.ListObjectsIter(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			return fmt.Errorf("list %s: %w", bucket, o.Err)
		}
		errs = append(errs, c.RemoveObject(ctx, bucket, o.Key, minio.RemoveObjectOptions{}))
	}
	for u := range c.ListIncompleteUploads(ctx, bucket, "", true) {
		if u.Err != nil {
			break // not every server lists them; the bucket removal says if any are left
		}
		errs = append(errs, c.RemoveIncompleteUpload(ctx, bucket, u.Key))
	}
	errs = append(errs, c.RemoveBucket(ctx, bucket))
	return errors.Join(errs...)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
