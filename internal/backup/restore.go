package backup

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"
)

// RestoreOptions tune Restore.
type RestoreOptions struct {
	// Force restores into a database that already has tables. pg_restore
	// then drops the objects the dump contains before recreating them
	// (--clean --if-exists), inside the same single transaction, so the
	// target ends either fully replaced or untouched. Objects the dump does
	// not contain are left alone.
	Force bool
	// NoOwner leaves out the dump's owners and privileges (--no-owner
	// --no-privileges): every object then belongs to the role of the target
	// URL. Needed when the original roles do not exist on the target
	// server; without it a missing role fails the whole restore.
	NoOwner bool
}

// restoreArgs: --single-transaction makes the restore all or nothing, and
// --exit-on-error stops at the first error instead of ploughing on into a
// transaction that will roll back anyway.
var restoreArgs = []string{"--exit-on-error", "--single-transaction", "--no-password", "--format=custom"}

// Restore streams the dump at key into pg_restore for the database at
// targetURL. Without opts.Force the target must hold no tables, views or
// sequences outside the system schemas.
//
// The dump is hashed as it streams and its last chunk is held back until
// the hash and size match those recorded when it was taken. pg_restore
// cannot finish (and so cannot commit) without that chunk, so a corrupt or
// substituted object is caught before anything is committed: on a
// mismatch pg_restore is killed and its transaction rolls back.
func (b *Backups) Restore(ctx context.Context, key, targetURL string, opts RestoreOptions, progress func(Progress)) error {
	rep := newReporter(progress)
	rep.stepTo(StepCheck)
	st, err := b.describe(ctx, key)
	if err != nil {
		return fmt.Errorf("restore %s: %w", key, err)
	}
	if err := b.checkRestoreClient(ctx, st); err != nil {
		return fmt.Errorf("restore %s: %w", key, err)
	}
	ci, err := parseConnInfo(targetURL)
	if err != nil {
		return fmt.Errorf("restore %s: %w", key, err)
	}
	if !opts.Force {
		if err := checkEmpty(ctx, ci); err != nil {
			return fmt.Errorf("restore %s: %w", key, err)
		}
	}
	var extra []string
	if opts.Force {
		extra = append(extra, "--clean", "--if-exists")
	}
	if opts.NoOwner {
		extra = append(extra, "--no-owner", "--no-privileges")
	}
	rep.stepTo(StepRestore)
	if err := b.restore(ctx, key, st, ci, extra, rep); err != nil {
		return fmt.Errorf("restore %s: %w", key, err)
	}
	rep.stepTo(StepDone)
	b.log.Info("backup restored", "key", key, "bytes", st.size, "duration", rep.elapsed().Round(time.Millisecond))
	return nil
}

func (b *Backups) checkRestoreClient(ctx context.Context, st stored) error {
	restoreVersion, err := toolVersion(ctx, b.cfg.PgRestore, "CEPJOBS_PG_RESTORE")
	if err != nil {
		return err
	}
	if v := st.pgDumpVersion; v != "" {
		dumpVersion, err := parseToolVersion("(PostgreSQL) " + v)
		if err != nil {
			return fmt.Errorf("read pg_dump version of the dump: %w", err)
		}
		return checkPgRestore(restoreVersion, dumpVersion)
	}
	return nil
}

func checkEmpty(ctx context.Context, ci connInfo) error {
	conn, err := pgx.Connect(ctx, ci.full())
	if err != nil {
		return fmt.Errorf("connect to target: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	names, err := userRelations(ctx, conn, 5)
	if err != nil {
		return err
	}
	if len(names) > 0 {
		return fmt.Errorf("%w: it holds %s (restore into an empty database, or force)", ErrNotEmpty, strings.Join(names, ", "))
	}
	return nil
}

// restore runs pg_restore on the dump at key, described by st.
func (b *Backups) restore(parent context.Context, key string, st stored, ci connInfo, extra []string, rep *reporter) error {
	wantSum, wantSize := st.sha256, st.size
	if st.info.Size != wantSize {
		return fmt.Errorf("%w: object has %d bytes, the dump had %d", ErrChecksum, st.info.Size, wantSize)
	}
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	var getOpts minio.GetObjectOptions
	// Read the very object we checked, not one replaced since.
	if err := getOpts.SetMatchETag(st.info.ETag); err != nil {
		return fmt.Errorf("download backup: %w", err)
	}
	obj, err := b.client.GetObject(ctx, b.cfg.Bucket, key, getOpts)
	if err != nil {
		return fmt.Errorf("download backup: %w", mapS3Error(err))
	}
	defer obj.Close()

	stderr := newTailWriter(4096, ci.password)
	args := append(append(append([]string(nil), restoreArgs...), extra...), "--dbname="+ci.String())
	cmd := exec.CommandContext(ctx, b.cfg.PgRestore, args...)
	cmd.Env = append(os.Environ(), ci.env()...)
	cmd.Stdout = stderr // pg_restore -d prints nothing here but errors
	cmd.Stderr = stderr
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("start pg_restore: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start pg_restore: %w", err)
	}
	// killed tells a pg_restore we stopped (checksum, download failure)
	// from one that quit on its own, whose error is then the story even if
	// the download we cancel after it fails too.
	var killed atomic.Bool
	vr := &verifyingReader{
		src: obj, h: sha256.New(), wantSum: wantSum, wantSize: wantSize, rep: rep,
		stop: func() { killed.Store(true); _ = cmd.Process.Kill() },
		held: make([]byte, 0, restoreChunk), next: make([]byte, restoreChunk),
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(stdin, vr) // pg_restore's own error says more than EPIPE
		_ = stdin.Close()
	}()
	waitErr := cmd.Wait()
	cancel() // stop a download pg_restore no longer reads
	<-copied

	switch {
	case vr.mismatch:
		return fmt.Errorf("%w: got sha256 %s over %d bytes, want %s over %d; pg_restore was stopped before committing",
			ErrChecksum, vr.gotSum, vr.n, wantSum, wantSize)
	case parent.Err() != nil:
		return fmt.Errorf("restore interrupted: %w", context.Cause(parent))
	case killed.Load() && vr.srcErr != nil:
		return fmt.Errorf("download backup: %w", mapS3Error(vr.srcErr))
	case waitErr != nil:
		return withStderr(fmt.Errorf("pg_restore failed: %w", waitErr), stderr)
	case !vr.verified:
		// Only an archive with trailing bytes pg_restore does not need gets
		// here, and the size check above rules that out.
		return fmt.Errorf("%w: pg_restore finished before the end of the backup, checksum not verified", ErrChecksum)
	}
	if s := stderr.String(); s != "" {
		b.log.Warn("pg_restore wrote to stderr", "stderr", s)
	}
	return nil
}

// restoreChunk is how much verifyingReader holds back. Any non-empty tail
// blocks pg_restore; a larger one only means fewer, bigger writes.
const restoreChunk = 256 << 10

// verifyingReader passes its source on, hashing it, but holds back the
// last chunk until the source has ended and the hash and size match.
type verifyingReader struct {
	src      io.Reader
	h        hash.Hash
	wantSum  string
	wantSize int64
	rep      *reporter
	stop     func() // kills pg_restore before it could see the end

	n          int64
	held, next []byte // held: read and hashed, not yet passed on
	out        []byte // being passed on
	end        error  // returned once out is drained

	verified, mismatch bool
	gotSum             string
	srcErr             error
}

func (r *verifyingReader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.end != nil {
			return 0, r.end
		}
		r.fill()
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}

// fill reads the next chunk, passes the held one on and holds the new one;
// at the end of the source it releases the held chunk only if the dump
// checks out.
func (r *verifyingReader) fill() {
	n, err := io.ReadFull(r.src, r.next)
	if n > 0 {
		r.h.Write(r.next[:n])
		r.n += int64(n)
		r.rep.add(int64(n))
	}
	switch {
	case err == nil:
		// out is empty, so held's buffer can take the next read.
		r.out = r.held
		r.held, r.next = r.next[:n], r.held[:cap(r.held)]
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		r.gotSum = hex.EncodeToString(r.h.Sum(nil))
		if r.gotSum != r.wantSum || r.n != r.wantSize {
			r.mismatch = true
			r.stop()
			r.end = ErrChecksum
			return
		}
		r.verified = true
		r.out = append(r.held, r.next[:n]...)
		r.end = io.EOF
	default:
		r.srcErr = err
		r.stop()
		r.end = err
	}
}

// TableCheck compares one table's rows at dump time and after restore.
type TableCheck struct {
	Table string // schema.table
	Want  int64  // rows in the dump; -1 if the table was not in it
	Got   int64  // rows restored; -1 if the table is missing
	OK    bool
}

// VerifyReport is what Verify found.
type VerifyReport struct {
	Key      string
	SHA256   string
	Scratch  string // the scratch database, dropped before Verify returns
	Tables   []TableCheck
	OK       bool // restored, checksum matched, every table's rows match
	Duration time.Duration
}

// Verify restores the dump at key into a new scratch database on the
// server of adminURL (whose role must be allowed to create databases),
// compares each table's row count with the count taken with the dump, and
// drops the scratch database whatever happens. Owners and privileges are
// not restored: only the data is checked. A count mismatch returns the
// report and an error matching ErrRowCounts.
func (b *Backups) Verify(ctx context.Context, key, adminURL string, progress func(Progress)) (VerifyReport, error) {
	rep := newReporter(progress)
	rep.stepTo(StepCheck)
	report := VerifyReport{Key: key}
	st, err := b.describe(ctx, key)
	if err != nil {
		return report, fmt.Errorf("verify %s: %w", key, err)
	}
	report.SHA256 = st.sha256
	m := st.manifest
	if m == nil {
		legacy, err := b.Manifest(ctx, key)
		if err != nil {
			return report, fmt.Errorf("verify %s: %w", key, err)
		}
		m = &legacy
	}
	if err := b.checkRestoreClient(ctx, st); err != nil {
		return report, fmt.Errorf("verify %s: %w", key, err)
	}
	admin, err := parseConnInfo(adminURL)
	if err != nil {
		return report, fmt.Errorf("verify %s: %w", key, err)
	}
	conn, err := pgx.Connect(ctx, admin.full())
	if err != nil {
		return report, fmt.Errorf("verify %s: connect: %w", key, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	server, err := serverVersion(ctx, conn)
	if err != nil {
		return report, fmt.Errorf("verify %s: %w", key, err)
	}

	rep.stepTo(StepCreate)
	report.Scratch = scratchName()
	if err := createDatabase(ctx, conn, report.Scratch, m.Encoding); err != nil {
		return report, fmt.Errorf("verify %s: %w", key, err)
	}
	got, err := b.restoreAndCount(ctx, key, st, admin.withDatabase(report.Scratch), rep)
	// Drop even when ctx is done: a leftover copy of production data is
	// worse than a slow return.
	dropCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if dropErr := dropDatabase(dropCtx, conn, report.Scratch, server); dropErr != nil {
		err = errors.Join(err, dropErr)
	}
	if err != nil {
		return report, fmt.Errorf("verify %s: %w", key, err)
	}

	report.Tables, report.OK = compareCounts(m.Tables, got)
	report.Duration = rep.elapsed()
	rep.stepTo(StepDone)
	if !report.OK {
		var bad []string
		for _, t := range report.Tables {
			if !t.OK {
				bad = append(bad, fmt.Sprintf("%s (want %d, got %d)", t.Table, t.Want, t.Got))
			}
		}
		return report, fmt.Errorf("verify %s: %w: %s", key, ErrRowCounts, strings.Join(bad, ", "))
	}
	b.log.Info("backup verified", "key", key, "tables", len(report.Tables), "duration", report.Duration.Round(time.Millisecond))
	return report, nil
}

func (b *Backups) restoreAndCount(ctx context.Context, key string, st stored, scratch connInfo, rep *reporter) (map[string]int64, error) {
	rep.stepTo(StepRestore)
	if err := b.restore(ctx, key, st, scratch, []string{"--no-owner", "--no-privileges"}, rep); err != nil {
		return nil, err
	}
	rep.stepTo(StepCount)
	conn, err := pgx.Connect(ctx, scratch.full())
	if err != nil {
		return nil, fmt.Errorf("connect to scratch database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return countRows(ctx, conn)
}

func compareCounts(want, got map[string]int64) ([]TableCheck, bool) {
	names := map[string]bool{}
	for t := range want {
		names[t] = true
	}
	for t := range got {
		names[t] = true
	}
	checks := make([]TableCheck, 0, len(names))
	ok := true
	for t := range names {
		c := TableCheck{Table: t, Want: -1, Got: -1}
		if n, found := want[t]; found {
			c.Want = n
		}
		if n, found := got[t]; found {
			c.Got = n
		}
		c.OK = c.Want == c.Got && c.Want >= 0
		ok = ok && c.OK
		checks = append(checks, c)
	}
	slices.SortFunc(checks, func(a, b TableCheck) int { return strings.Compare(a.Table, b.Table) })
	return checks, ok
}

// scratchName is random so concurrent verifications never collide.
func scratchName() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "cepjobs_verify_" + hex.EncodeToString(b[:])
}
