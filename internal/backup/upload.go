package backup

import (
	"bytes"
	"context"
	"fmt"
	"hash"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
)

// upload is a multipart upload of one dump to its final key. Parts upload
// concurrently, each from its own buffer of the shared pool; nothing is
// visible at the key until complete.
type upload struct {
	b       *Backups
	core    minio.Core
	key, id string
	// ctx is the dump's: cancelled, with the cause, on the first failure
	// of pg_dump, of the count or of a part.
	ctx     context.Context
	cancel  context.CancelCauseFunc
	wg      sync.WaitGroup
	entered bool // holds a registration with the buffer pool

	mu    sync.Mutex
	sent  int // parts handed to put
	parts []minio.CompletePart
}

// startUpload starts the multipart upload of res's dump. The object's
// metadata carries what is known before the dump; its size and sha256 go
// to the manifest.
func (b *Backups) startUpload(ctx context.Context, cancel context.CancelCauseFunc, res Result) (*upload, error) {
	core := minio.Core{Client: b.client}
	id, err := core.NewMultipartUpload(ctx, b.cfg.Bucket, res.Key, minio.PutObjectOptions{
		ContentType:  "application/octet-stream",
		UserMetadata: res.uploadMetadata(),
	})
	if err != nil {
		return nil, fmt.Errorf("start upload: %w", err)
	}
	return &upload{b: b, core: core, key: res.Key, id: id, ctx: ctx, cancel: cancel}, nil
}

// stream reads src into part buffers, hashing it into h, and hands each
// full buffer (and the last, partial one) to an upload. It returns the
// bytes read, with a nil error at the end of src. It does not wait for the
// uploads: wait does.
func (u *upload) stream(src io.Reader, h hash.Hash, rep *reporter) (int64, error) {
	parts.enter()
	u.entered = true
	var size int64
	for num := 1; ; num++ {
		buf, err := parts.get(u.ctx)
		if err != nil {
			return size, err
		}
		n, err := fill(src, buf, h, rep)
		size += int64(n)
		switch {
		case n == 0 && num > 1:
			parts.put(buf)
		case num > maxParts:
			parts.put(buf)
			return size, fmt.Errorf("dump larger than %d parts of %d MiB", maxParts, partSize>>20)
		default:
			u.put(num, buf, n)
		}
		if err == io.EOF {
			return size, nil
		}
		if err != nil {
			return size, fmt.Errorf("read pg_dump output: %w", err)
		}
	}
}

// fill reads src into buf until buf is full or src fails or ends; it hashes
// each read as it comes, while the next bytes arrive in the pipe.
func fill(src io.Reader, buf []byte, h hash.Hash, rep *reporter) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := src.Read(buf[n:])
		if m > 0 {
			h.Write(buf[n : n+m])
			rep.add(int64(m))
			n += m
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// put uploads part num from buf[:n] in the background, and returns buf to
// the pool when done. A failure cancels the dump.
func (u *upload) put(num int, buf []byte, n int) {
	u.mu.Lock()
	u.sent++
	u.mu.Unlock()
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		defer parts.put(buf)
		data := buf[:n]
		p, err := u.core.PutObjectPart(u.ctx, u.b.cfg.Bucket, u.key, u.id, num, bytes.NewReader(data), int64(n), partOptions(data))
		if err != nil {
			u.cancel(fmt.Errorf("part %d: %w", num, err))
			return
		}
		u.mu.Lock()
		u.parts = append(u.parts, minio.CompletePart{PartNumber: num, ETag: p.ETag})
		u.mu.Unlock()
	}()
}

// partOptions: the part's bytes are not signed (UNSIGNED-PAYLOAD, as
// minio-go always does over TLS). Over plain HTTP minio-go would otherwise
// sign every 64 KiB chunk, hashing the dump a second time in this process
// and a third in the server; the dump's own sha256, in the signed manifest
// and checked on every restore, already covers its bytes end to end.
func partOptions([]byte) minio.PutObjectPartOptions {
	return minio.PutObjectPartOptions{DisableContentSha256: true}
}

// wait waits for every part handed to put.
func (u *upload) wait() {
	u.wg.Wait()
	if u.entered {
		u.entered = false
		parts.leave()
	}
}

// complete makes the object appear at its key.
func (u *upload) complete(ctx context.Context) (minio.UploadInfo, error) {
	u.mu.Lock()
	all := slices.Clone(u.parts)
	sent := u.sent
	u.mu.Unlock()
	if len(all) != sent {
		return minio.UploadInfo{}, fmt.Errorf("%d parts stored of %d", len(all), sent)
	}
	slices.SortFunc(all, func(a, b minio.CompletePart) int { return a.PartNumber - b.PartNumber })
	return u.core.CompleteMultipartUpload(ctx, u.b.cfg.Bucket, u.key, u.id, all, minio.PutObjectOptions{})
}

// abort discards the upload and its stored parts. It runs even when ctx is
// cancelled; what it cannot abort, Prune aborts a day later.
func (u *upload) abort(ctx context.Context) {
	u.wait()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	err := u.core.AbortMultipartUpload(ctx, u.b.cfg.Bucket, u.key, u.id)
	if err != nil && !isNotFound(err) && minio.ToErrorResponse(err).Code != "NoSuchUpload" {
		u.b.log.Warn("backup upload abort failed", "key", u.key, "err", err)
	}
}
