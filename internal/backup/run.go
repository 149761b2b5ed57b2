package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/jackc/pgx/v5"
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
// The dump streams from pg_dump's stdout straight into a multipart upload
// at its final key, hashed on the way; parts upload while the next one
// fills. A multipart upload is invisible until completed, and it is
// completed only once pg_dump has exited cleanly and the manifest
// (<key>.json: size, sha256, row counts) is stored. A dump under a final
// key therefore always has its manifest, and is always whole. If pg_dump
// fails, an upload fails or ctx is cancelled, the upload is aborted and
// the manifest, if written, removed; a killed process leaves only an
// unfinished upload, which Prune aborts a day later.
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
	prefix := bufferedCommand(ctx, b.cfg.PgDump, dumpVersion)
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
	up, err := b.dump(ctx, prefix, ci, snapshot, tx, &res, rep)
	if err != nil {
		return Result{}, fmt.Errorf("back up %s: %w", db, err)
	}
	res.Duration = time.Since(start)
	_ = tx.Rollback(ctx)

	rep.stepTo(StepFinalize)
	if err := b.finalize(ctx, up, res); err != nil {
		return Result{}, fmt.Errorf("back up %s: %w", db, err)
	}
	rep.stepTo(StepDone)
	b.log.Info("backup stored", "database", db, "key", res.Key, "bytes", res.Size,
		"duration", res.Duration.Round(time.Millisecond).String(), "tables", len(res.Tables))
	return res, nil
}

// dumpFailed marks the error pg_dump exited with, so it can be told from
// an upload failure that merely stopped pg_dump.
type dumpFailed struct{ err error }

func (e *dumpFailed) Error() string { return e.err.Error() }
func (e *dumpFailed) Unwrap() error { return e.err }

// dump streams pg_dump into a multipart upload at res.Key while counting
// rows in tx. It sets res.Size, res.SHA256 and res.Tables, and returns the
// upload, all parts stored but not completed. On error the upload is
// aborted.
func (b *Backups) dump(parent context.Context, prefix []string, ci connInfo, snapshot string, tx pgx.Tx, res *Result, rep *reporter) (*upload, error) {
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

	up, err := b.startUpload(ctx, cancel, *res)
	if err != nil {
		cancel(nil)
		<-countDone
		return nil, err
	}
	size, sum, err := b.runPgDump(ctx, cancel, prefix, ci, snapshot, up, rep)
	countErr := <-countDone

	if parent.Err() != nil {
		up.abort(parent)
		return nil, fmt.Errorf("dump interrupted: %w", context.Cause(parent))
	}
	// The first failure: pg_dump's, an upload's or the count's; each
	// cancels ctx with itself as the cause.
	cause := context.Cause(ctx)
	if cause == nil {
		cause = err
	}
	if cause != nil {
		up.abort(parent)
		var failed *dumpFailed
		switch {
		case errors.As(cause, &failed):
			return nil, failed.err
		case cause == countErr:
			return nil, countErr
		default:
			return nil, fmt.Errorf("upload dump: %w", cause)
		}
	}
	res.Size, res.SHA256 = size, sum
	return up, nil
}

// runPgDump runs pg_dump with its stdout on a pipe read straight into part
// buffers, hashing as it reads, and hands each full buffer to up. It
// returns the size and hex sha256 of the dump once pg_dump has exited
// cleanly and every part is stored. Any failure cancels ctx with itself as
// the cause.
func (b *Backups) runPgDump(ctx context.Context, cancel context.CancelCauseFunc, prefix []string, ci connInfo, snapshot string, up *upload, rep *reporter) (int64, string, error) {
	stderr := newTailWriter(4096, ci.password)
	// prefix (stdbuf, when it works) execs pg_dump in its own process: the
	// same pid, so a cancel still kills pg_dump itself.
	args := append(append(append([]string(nil), prefix...), b.cfg.PgDump), dumpArgs...)
	args = append(args, "--snapshot="+snapshot, "--dbname="+ci.String())
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), ci.env()...)
	cmd.Stderr = stderr
	// A wrapper script may leave a child holding stderr after being
	// killed; WaitDelay stops us waiting for it forever.
	cmd.WaitDelay = 5 * time.Second
	// An *os.File as stdout: pg_dump writes into the pipe, we read from it
	// into the part buffers, with no copying goroutine between.
	pr, pw, err := os.Pipe()
	if err != nil {
		cancel(&dumpFailed{fmt.Errorf("start pg_dump: %w", err)})
		return 0, "", context.Cause(ctx)
	}
	defer pr.Close()
	growPipe(pw.Fd(), pipeSize)
	cmd.Stdout = pw
	err = cmd.Start()
	pw.Close()
	if err != nil {
		cancel(&dumpFailed{fmt.Errorf("start pg_dump: %w", err)})
		return 0, "", context.Cause(ctx)
	}
	// Killing pg_dump does not close the pipe if a child of a wrapper
	// still holds it: a deadline ends our read whatever happens.
	stop := context.AfterFunc(ctx, func() { _ = pr.SetReadDeadline(time.Now()) })
	defer stop()

	h := sha256.New()
	size, readErr := up.stream(pr, h, rep)
	if readErr != nil {
		cancel(readErr)
	}
	if err := cmd.Wait(); err != nil {
		// Stop the uploads and the count; if something else failed first
		// and pg_dump was killed for it, that first cause stays.
		cancel(&dumpFailed{withStderr(fmt.Errorf("pg_dump failed: %w", err), stderr)})
	}
	up.wait()
	if err := context.Cause(ctx); err != nil {
		return 0, "", err
	}
	if s := stderr.String(); s != "" {
		b.log.Warn("pg_dump wrote to stderr", "stderr", s)
	}
	return size, hex.EncodeToString(h.Sum(nil)), nil
}

// pipeSize is the kernel buffer asked for pg_dump's stdout pipe (Linux
// allows unprivileged processes up to 1 MiB by default).
const pipeSize = 1 << 20

// finalize writes the manifest, then completes the upload, which makes
// the dump appear at its key. The manifest goes first so a dump at a final
// key always has one; if completing fails, the manifest is removed.
func (b *Backups) finalize(ctx context.Context, up *upload, res Result) error {
	if err := b.putManifest(ctx, res); err != nil {
		up.abort(ctx)
		b.remove(ctx, manifestKey(res.Key))
		return err
	}
	info, err := up.complete(ctx)
	if err == nil && info.Size != 0 && info.Size != res.Size {
		// Not every server returns the size here; StatObject would cost a
		// round trip for what the parts' sizes already say.
		err = fmt.Errorf("stored object has %d bytes, want %d", info.Size, res.Size)
	}
	if err != nil {
		up.abort(ctx)
		b.remove(ctx, res.Key, manifestKey(res.Key))
		return fmt.Errorf("complete upload of %s: %w", res.Key, err)
	}
	return nil
}
