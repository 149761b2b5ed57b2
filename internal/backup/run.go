package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"os/exec"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"
)

// pg_dump options. Custom format keeps selective restore and lets
// pg_restore drop owners or privileges at restore time; compression level
// 1 dumps about as fast as plain SQL at almost gzip -6 size (FACTS.md).
// Owners and privileges are kept in the dump: pg_restore can leave them
// out (RestoreOptions.NoOwner), but cannot invent what the dump dropped.
var dumpArgs = []string{"--format=custom", "--compress=1", "--no-password"}

// Run dumps the database at databaseURL into the bucket, under a key made
// from its name and now.
//
// The dump streams from pg_dump's stdout into a multipart upload to a
// temporary key, hashed on the way. Only when pg_dump has exited cleanly is
// the upload completed; then the manifest (<key>.json, with row counts) is
// written and the dump copied server-side to its final key with its
// checksum in the metadata. A dump under a final key is therefore always
// complete. If pg_dump fails or ctx is cancelled, the multipart upload is
// aborted and nothing is left behind.
//
// Row counts are taken in a repeatable-read transaction whose snapshot
// pg_dump imports (--snapshot), so they describe exactly the dumped data.
func (b *Backups) Run(ctx context.Context, databaseURL string, now time.Time, progress func(Progress)) (Result, error) {
	rep := newReporter(progress)
	rep.stepTo(StepCheck)
	ci, err := parseConnInfo(databaseURL)
	if err != nil {
		return Result{}, fmt.Errorf("back up database: %w", err)
	}
	conn, err := pgx.Connect(ctx, ci.full())
	if err != nil {
		return Result{}, fmt.Errorf("back up database: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	server, err := serverVersion(ctx, conn)
	if err != nil {
		return Result{}, fmt.Errorf("back up database: %w", err)
	}
	db, encoding, err := databaseInfo(ctx, conn)
	if err != nil {
		return Result{}, fmt.Errorf("back up database: %w", err)
	}
	dumpVersion, err := toolVersion(ctx, b.cfg.PgDump, "CEPJOBS_PG_DUMP")
	if err != nil {
		return Result{}, fmt.Errorf("back up %s: %w", db, err)
	}
	if err := checkPgDump(dumpVersion, server); err != nil {
		return Result{}, err
	}
	if err := b.ensureBucket(ctx); err != nil {
		return Result{}, fmt.Errorf("back up %s: %w", db, err)
	}

	res := Result{
		Key:           dumpKey(db, now),
		Database:      db,
		Encoding:      encoding,
		Time:          now.UTC().Truncate(time.Second),
		ServerVersion: server.String(),
		PgDumpVersion: dumpVersion.String(),
		Format:        "custom",
	}
	tmpKey := incompleteKey(db, now)

	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return Result{}, fmt.Errorf("back up %s: begin snapshot: %w", db, err)
	}
	// The snapshot must stay importable until pg_dump has imported it,
	// which we cannot observe, so the transaction lives until the dump ends.
	defer tx.Rollback(context.WithoutCancel(ctx))
	var snapshot string
	if err := tx.QueryRow(ctx, "select pg_export_snapshot()").Scan(&snapshot); err != nil {
		return Result{}, fmt.Errorf("back up %s: export snapshot: %w", db, err)
	}

	start := time.Now()
	rep.stepTo(StepDump)
	size, sum, err := b.dump(ctx, ci, snapshot, tx, tmpKey, rep, &res)
	if err != nil {
		return Result{}, fmt.Errorf("back up %s: %w", db, err)
	}
	res.Size, res.SHA256, res.Duration = size, sum, time.Since(start)
	_ = tx.Rollback(ctx)

	rep.stepTo(StepFinalize)
	if err := b.finalize(ctx, tmpKey, res); err != nil {
		return Result{}, fmt.Errorf("back up %s: %w", db, err)
	}
	rep.stepTo(StepDone)
	b.log.Info("backup stored", "database", db, "key", res.Key, "bytes", res.Size,
		"duration", res.Duration.Round(time.Millisecond).String(), "tables", len(res.Tables))
	return res, nil
}

// dumpFailed marks the error pg_dump's stream ended with, so it can be told
// from an upload failure that merely stopped pg_dump.
type dumpFailed struct{ err error }

func (e *dumpFailed) Error() string { return e.err.Error() }
func (e *dumpFailed) Unwrap() error { return e.err }

// dump streams pg_dump into tmpKey while counting rows in tx, and returns
// the size and hex sha256 of what it uploaded. On error nothing is left
// at tmpKey.
func (b *Backups) dump(parent context.Context, ci connInfo, snapshot string, tx pgx.Tx, tmpKey string, rep *reporter, res *Result) (int64, string, error) {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)

	// Counting runs beside the dump: both read the same snapshot, and on a
	// big database doing them one after the other would double the time.
	countDone := make(chan error, 1)
	go func() {
		tables, err := countRows(ctx, tx)
		if err != nil {
			cancel(err)
		}
		res.Tables = tables
		countDone <- err
	}()

	stderr := newTailWriter(4096, ci.password)
	args := append(append([]string(nil), dumpArgs...), "--snapshot="+snapshot, "--dbname="+ci.String())
	cmd := exec.CommandContext(ctx, b.cfg.PgDump, args...)
	cmd.Env = append(os.Environ(), ci.env()...)
	cmd.Stderr = stderr
	// A wrapper script may leave a child holding stdout after being killed;
	// WaitDelay stops us waiting for it forever.
	cmd.WaitDelay = 5 * time.Second
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	if err := cmd.Start(); err != nil {
		cancel(nil)
		<-countDone
		return 0, "", fmt.Errorf("start pg_dump: %w", err)
	}
	waited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		if err != nil {
			err = &dumpFailed{withStderr(fmt.Errorf("pg_dump failed: %w", err), stderr)}
		}
		// The reader sees pg_dump's error instead of EOF, so minio-go aborts
		// the multipart upload rather than completing a truncated object.
		pw.CloseWithError(err)
		waited <- err
	}()

	hr := &hashingReader{r: pr, h: sha256.New(), rep: rep}
	info, putErr := b.client.PutObject(ctx, b.cfg.Bucket, tmpKey, hr, -1, minio.PutObjectOptions{
		ContentType: "application/octet-stream",
		PartSize:    partSize,
		// Parts are read from one stream in order; more threads would only
		// add buffers.
		NumThreads: 1,
	})
	if putErr != nil {
		// Stop pg_dump and the count. Only the first cause is kept, so a
		// count that fails because of this cancel does not take the blame.
		cancel(putErr)
	}
	pr.CloseWithError(errors.New("upload ended"))
	dumpErr := <-waited
	countErr := <-countDone

	if parent.Err() != nil {
		b.remove(parent, tmpKey)
		return 0, "", fmt.Errorf("dump interrupted: %w", context.Cause(parent))
	}
	// The first failure: pg_dump's (through the upload), the upload's or
	// the count's; each cancels ctx with itself as the cause.
	cause := context.Cause(ctx)
	if cause == nil {
		cause = dumpErr // nil unless the upload somehow outlived pg_dump's failure
	}
	if cause != nil {
		b.remove(parent, tmpKey)
		var failed *dumpFailed
		switch {
		case errors.As(cause, &failed):
			return 0, "", failed.err
		case cause == countErr:
			return 0, "", countErr
		default:
			return 0, "", fmt.Errorf("upload dump: %w", cause)
		}
	}
	if s := stderr.String(); s != "" {
		b.log.Warn("pg_dump wrote to stderr", "stderr", s)
	}
	if info.Size != hr.n {
		b.remove(parent, tmpKey)
		return 0, "", fmt.Errorf("upload dump: stored %d bytes, read %d", info.Size, hr.n)
	}
	return hr.n, hex.EncodeToString(hr.h.Sum(nil)), nil
}

// finalize writes the manifest, then copies the upload to its final key
// with metadata, then deletes the upload. The manifest goes first so a
// dump at a final key always has one; if the copy fails, both are removed.
func (b *Backups) finalize(ctx context.Context, tmpKey string, res Result) error {
	if err := b.putManifest(ctx, res); err != nil {
		b.remove(ctx, tmpKey, manifestKey(res.Key))
		return err
	}
	// ComposeObject rather than CopyObject: a single copy request is
	// limited to 5 GiB on AWS, and ComposeObject switches to a multipart
	// copy above that.
	_, err := b.client.ComposeObject(ctx,
		minio.CopyDestOptions{
			Bucket:          b.cfg.Bucket,
			Object:          res.Key,
			UserMetadata:    res.metadata(),
			ReplaceMetadata: true,
			ContentType:     "application/octet-stream",
		},
		minio.CopySrcOptions{Bucket: b.cfg.Bucket, Object: tmpKey})
	if err != nil {
		b.remove(ctx, tmpKey, manifestKey(res.Key))
		return fmt.Errorf("copy dump to %s: %w", res.Key, err)
	}
	info, err := b.client.StatObject(ctx, b.cfg.Bucket, res.Key, minio.StatObjectOptions{})
	if err == nil && (info.Size != res.Size || meta(info, metaSHA256) != res.SHA256) {
		err = fmt.Errorf("stored object has %d bytes and sha256 %q, want %d and %q", info.Size, meta(info, metaSHA256), res.Size, res.SHA256)
	}
	if err != nil {
		b.remove(ctx, res.Key, manifestKey(res.Key), tmpKey)
		return fmt.Errorf("check copied dump: %w", err)
	}
	b.remove(ctx, tmpKey)
	return nil
}

// hashingReader hashes and counts what passes through it.
type hashingReader struct {
	r   io.Reader
	h   hash.Hash
	n   int64
	rep *reporter
}

func (r *hashingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.h.Write(p[:n])
		r.n += int64(n)
		r.rep.add(int64(n))
	}
	return n, err
}
