package objstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cepcomunicacion/cepjobs/internal/backup/backuptest"
	"github.com/cepcomunicacion/cepjobs/internal/objstore"
	"github.com/cepcomunicacion/cepjobs/internal/testenv"
)

type bundle struct {
	s3     *backuptest.Server
	store  *objstore.Store
	client *minio.Client
}

func setup(t *testing.T) *bundle {
	t.Helper()
	s3 := backuptest.StartS3(t)
	bucket := s3.Config(t).Bucket // a fresh name, removed when the test ends
	st, err := objstore.New(objstore.Config{Endpoint: s3.Endpoint, AccessKey: s3.AccessKey, SecretKey: s3.SecretKey, Region: s3.Region, UseTLS: s3.UseTLS, Bucket: bucket}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s3.Client()
	if err != nil {
		t.Fatal(err)
	}
	return &bundle{s3: s3, store: st, client: c}
}

func (b *bundle) get(t *testing.T, key string) []byte {
	t.Helper()
	o, err := b.client.GetObject(context.Background(), b.store.Bucket(), key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	data, err := io.ReadAll(o)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return data
}

// lines writes n numbered lines, one Write each, as a CSV writer would.
func lines(n int, h io.Writer) func(context.Context, io.Writer) error {
	return func(ctx context.Context, w io.Writer) error {
		for i := range n {
			line := fmt.Sprintf("%09d,some text to make the line about a hundred bytes long,ñandú,%s\r\n", i, strings.Repeat("x", 30))
			if _, err := io.WriteString(io.MultiWriter(w, h), line); err != nil {
				return err
			}
		}
		return nil
	}
}

func TestUploadStreamsSeveralPartsAndPresigns(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	// About 37 MB: several 5 MiB parts, the last one short.
	h := sha256.New()
	size, err := b.store.Upload(ctx, "exports/big.csv", "text/csv; charset=utf-8", lines(370_000, h))
	if err != nil {
		t.Fatal(err)
	}
	if size <= 2*objstore.PartSize {
		t.Fatalf("size: got %d, want more than two parts", size)
	}
	want := h.Sum(nil)
	if got := sha256.Sum256(b.get(t, "exports/big.csv")); !bytes.Equal(got[:], want) {
		t.Error("stored object differs from what was written")
	}

	link, err := b.store.PresignGet(ctx, "exports/big.csv", time.Hour, "leads.csv")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	hg := sha256.New()
	n, err := io.Copy(hg, resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("download: got %d, %v", resp.StatusCode, err)
	}
	if n != size || !bytes.Equal(hg.Sum(nil), want) {
		t.Errorf("download: got %d bytes, want %d identical ones", n, size)
	}
	if cd := resp.Header.Get("Content-Disposition"); cd != `attachment; filename="leads.csv"` {
		t.Errorf("Content-Disposition: got %q", cd)
	}
	if _, err := b.store.PresignGet(ctx, "exports/big.csv", 8*24*time.Hour, ""); err == nil {
		t.Error("presign for 8 days: got nil error, want one (S3 allows 7)")
	}
}

func TestUploadWriteErrorKeepsOldObject(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	if _, err := b.store.Upload(ctx, "k.csv", "text/csv", func(_ context.Context, w io.Writer) error {
		_, err := io.WriteString(w, "old")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("database went away")
	_, err := b.store.Upload(ctx, "k.csv", "text/csv", func(ctx context.Context, w io.Writer) error {
		// More than a part, so the multipart upload is under way.
		if err := lines(200_000, io.Discard)(ctx, w); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("upload: got %v, want the writer's error", err)
	}
	if got := string(b.get(t, "k.csv")); got != "old" {
		t.Errorf("after a failed upload: got %.20q, want the old object", got)
	}
}

func TestUploadServerDown(t *testing.T) {
	t.Parallel()
	st, err := objstore.New(objstore.Config{Endpoint: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), AccessKey: "a", SecretKey: "b", Bucket: "cep-exports"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	called := false
	_, err = st.Upload(ctx, "k.csv", "text/csv", func(context.Context, io.Writer) error { called = true; return nil })
	if err == nil || ctx.Err() != nil {
		t.Fatalf("upload to a closed port: got %v (ctx %v), want a prompt error", err, ctx.Err())
	}
	if called {
		t.Error("the writer ran although the bucket could not be checked")
	}
}

func TestConfigChecks(t *testing.T) {
	t.Parallel()
	if _, err := objstore.New(objstore.Config{Endpoint: "h:1", Bucket: "Bad_Bucket"}, nil); err == nil {
		t.Error("bad bucket name: got nil error")
	}
	if _, err := objstore.New(objstore.Config{Bucket: "cep-exports"}, nil); err == nil {
		t.Error("no endpoint: got nil error")
	}
}
