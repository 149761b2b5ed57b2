package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cepcomunicacion/cepjobs/handlers"
	"github.com/cepcomunicacion/cepjobs/internal/backup"
	"github.com/cepcomunicacion/cepjobs/internal/config"
	"github.com/cepcomunicacion/cepjobs/internal/redisconn"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

const backupUsage = `usage: cepjobs backup <command> [flags]

commands:
  now [--inline] [--timeout 2h]
        back up the database now: queued to worker-stats, or in this process
        with --inline; prints the object key as the last line
  list  list the database's backups, newest first
  restore <key|latest> --target-db NAME [--force] [--no-owner]
        restore a backup into database NAME on the same server (created if
        missing); --force replaces what the backup contains in a non-empty one
  verify [key|latest]
        restore a backup into a scratch database and compare its row counts
        with those taken with the dump

The database is CEPJOBS_BACKUP_DATABASE_URL, or DATABASE_URL; the bucket is
CEPJOBS_BACKUP_BUCKET on S3_ENDPOINT.
`

// Usage lines of the subcommands, repeated with their usage errors.
const (
	usageBackupNow     = "usage: cepjobs backup now [--inline] [--timeout 2h]"
	usageBackupList    = "usage: cepjobs backup list"
	usageBackupRestore = "usage: cepjobs backup restore <key|latest> --target-db NAME [--force] [--no-owner]"
	usageBackupVerify  = "usage: cepjobs backup verify [key|latest]"
)

// errBackupsOff is what every command that talks to the bucket itself says
// without one.
var errBackupsOff = errors.New("backups are not configured: set S3_ENDPOINT, S3_ACCESS_KEY and S3_SECRET_KEY (see README)")

func runBackup(ctx context.Context, e env, rest []string) error {
	if len(rest) == 0 {
		fmt.Fprint(e.stderr, backupUsage)
		return exitError(2)
	}
	switch cmd, rest := rest[0], rest[1:]; cmd {
	case "now":
		return runBackupNow(ctx, e, rest)
	case "list":
		return runBackupList(ctx, e, rest)
	case "restore":
		return runBackupRestore(ctx, e, rest)
	case "verify":
		return runBackupVerify(ctx, e, rest)
	case "help", "-h", "--help":
		fmt.Fprint(e.stdout, backupUsage)
		return nil
	default:
		fmt.Fprintf(e.stderr, "cepjobs backup: unknown command %q\n\n%s", cmd, backupUsage)
		return exitError(2)
	}
}

// usageError reports a misused subcommand with its usage line.
func usageError(e env, usage, format string, args ...any) error {
	fmt.Fprintf(e.stderr, "cepjobs: "+format+"\n%s\n", append(args, usage)...)
	return exitError(2)
}

// newFlagSet prints usage before the flag defaults on a bad flag.
func newFlagSet(e env, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseInterspersed parses flags wherever they are among the positional
// arguments, which it returns: the flag package stops at the first
// non-flag, and `restore latest --force` reads naturally. Everything after
// "--" is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// flagError turns a flag parse error (already printed with the usage) into
// the exit status: none for -h, 2 otherwise.
func flagError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return exitError(2)
}

// backupTarget is what the commands that read or write the bucket
// themselves need.
type backupTarget struct {
	cfg      config.Config
	b        *backup.Backups
	dbURL    string // the database backed up
	db       string // its name, which keys are filed under
	progress *progressPrinter
}

func openBackups(e env) (backupTarget, error) {
	cfg, err := config.Load(e.environ)
	if err != nil {
		return backupTarget{}, err
	}
	if !cfg.Backup.Enabled() {
		return backupTarget{}, errBackupsOff
	}
	p := newProgressPrinter(e.stderr)
	// Only warnings: what happened is the command's own output, and the
	// engine's info logs would repeat it.
	log := slog.New(slog.NewTextHandler(p, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b, err := backup.New(cfg.Backup, log)
	if err != nil {
		return backupTarget{}, err
	}
	dbURL := cfg.BackupDatabaseURL()
	db, err := backup.DatabaseName(dbURL)
	if err != nil {
		return backupTarget{}, fmt.Errorf("CEPJOBS_BACKUP_DATABASE_URL or DATABASE_URL: %w", err)
	}
	return backupTarget{cfg: cfg, b: b, dbURL: dbURL, db: db, progress: p}, nil
}

// where names the bucket for messages.
func (t backupTarget) where() string {
	return fmt.Sprintf("bucket %s on %s", t.cfg.Backup.Bucket, t.cfg.Backup.Endpoint)
}

// resolveKey turns "latest" into the newest backup's key.
func (t backupTarget) resolveKey(ctx context.Context, arg string) (string, error) {
	if arg != "latest" {
		return arg, nil
	}
	o, err := t.b.Latest(ctx, t.db)
	if errors.Is(err, backup.ErrNotFound) {
		return "", fmt.Errorf("no backups of database %s in %s yet: take one with `cepjobs backup now`", t.db, t.where())
	}
	if err != nil {
		return "", fmt.Errorf("find the latest backup of %s in %s: %w", t.db, t.where(), err)
	}
	return o.Key, nil
}

// keyHint adds what to do about a key that names no backup.
func keyHint(err error) error {
	if errors.Is(err, backup.ErrNotFound) {
		return fmt.Errorf("%w (`cepjobs backup list` shows the keys)", err)
	}
	return err
}

func runBackupNow(ctx context.Context, e env, rest []string) error {
	fs := newFlagSet(e, "backup now", usageBackupNow)
	inline := fs.Bool("inline", false, "run pg_dump in this process instead of queueing the backup for worker-stats")
	timeout := fs.Duration("timeout", 2*time.Hour, "give up after this long")
	pos, err := parseInterspersed(fs, rest)
	if err != nil {
		return flagError(err)
	}
	if len(pos) > 0 {
		return usageError(e, usageBackupNow, "backup now takes no arguments, got %q", pos)
	}
	if *timeout <= 0 {
		return usageError(e, usageBackupNow, "--timeout must be positive, got %s", *timeout)
	}
	if *inline {
		return backupInline(ctx, e, *timeout)
	}
	cfg, err := config.Load(e.environ)
	if err != nil {
		return err
	}
	return backupQueued(ctx, e, cfg, *timeout)
}

// backupInline backs up in this process, then applies retention as the
// worker does after a scheduled backup.
func backupInline(ctx context.Context, e env, timeout time.Duration) error {
	t, err := openBackups(e)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	now := time.Now()
	res, err := t.b.Run(ctx, t.dbURL, now, t.progress.Report)
	t.progress.Done()
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("backup did not finish within --timeout %s: %w", timeout, err)
		}
		return err
	}
	pruned, err := t.b.Prune(ctx, res.Database, time.Now())
	if err != nil {
		// The backup is stored; retention runs again with the next one.
		fmt.Fprintf(e.stderr, "warning: retention: %v\n", err)
	}
	fmt.Fprintf(e.stdout, "backup stored: %s, %s, sha256 %s, took %s",
		humanBytes(res.Size), plural(len(res.Tables), "table"), shortSum(res.SHA256), res.Duration.Round(time.Millisecond))
	if len(pruned) > 0 {
		fmt.Fprintf(e.stdout, "; retention deleted %d old objects", len(pruned))
	}
	fmt.Fprintln(e.stdout)
	fmt.Fprintln(e.stdout, res.Key)
	return nil
}

// manualTaskID names an on-demand backup. It differs from the scheduler's
// slot IDs (backup:database:<slot>), so a manual backup never takes a
// scheduled slot's ID.
func manualTaskID(slot time.Time) string {
	return tasks.TypeBackupDatabase + ":manual:" + slot.UTC().Format(time.RFC3339)
}

// Waiting for a queued backup.
const (
	pollEvery = 500 * time.Millisecond
	// noWorkerAfter is how long a backup may sit in the queue before we
	// say nobody consumes it: a worker polls its queues every second.
	noWorkerAfter = 30 * time.Second
)

// backupQueued enqueues backup:database for worker-stats and waits for its
// result.
func backupQueued(ctx context.Context, e env, cfg config.Config, timeout time.Duration) error {
	opt, err := redisconn.Parse(cfg.Redis.URL)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	// One connection pool for both; closing it closes them (asynq refuses
	// to close a shared client itself).
	rc := redisconn.Client(opt)
	defer rc.Close()
	client := asynq.NewClientFromRedisClient(rc)
	insp := asynq.NewInspectorFromRedisClient(rc)

	slot := time.Now().UTC().Truncate(time.Second)
	id := manualTaskID(slot)
	task, err := tasks.NewBackupDatabase(tasks.BackupDatabase{Slot: slot}, id)
	if err != nil {
		return err
	}
	spec, _ := tasks.SpecOf(tasks.TypeBackupDatabase)
	_, err = client.EnqueueContext(ctx, task)
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		// A conflict is the same request made twice within a second: wait
		// for the first.
		return fmt.Errorf("enqueue the backup on Redis %s: %w (start Redis, or take the backup in this process with --inline)",
			redisconn.Redact(cfg.Redis.URL), err)
	}
	fmt.Fprintf(e.stderr, "queued %s on queue %s; waiting for worker-stats\n", id, spec.Queue)

	w := &backupWait{e: e, id: id, progress: newProgressPrinter(e.stderr), start: time.Now()}
	defer w.progress.Done()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		info, err := insp.GetTaskInfo(spec.Queue, id)
		switch {
		case errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound):
			return fmt.Errorf("backup task %s disappeared from queue %s (deleted from the dashboard?); run `cepjobs backup now` again", id, spec.Queue)
		case err != nil:
			// Redis may blink; keep asking until the timeout.
			w.lastErr = err
		default:
			if done, err := w.observe(info); done {
				return err
			}
		}
		select {
		case <-wctx.Done():
			return w.gaveUp(ctx, timeout)
		case <-tick.C:
		}
	}
}

// backupWait follows one queued backup task.
type backupWait struct {
	e        env
	id       string
	progress *progressPrinter
	start    time.Time

	state   asynq.TaskState
	picked  bool // a worker has started it at least once
	warned  bool
	retried int
	lastErr error // of the last poll that failed
}

// observe reports one poll; done is true with the command's result.
func (w *backupWait) observe(info *asynq.TaskInfo) (done bool, err error) {
	w.state, w.lastErr = info.State, nil
	elapsed := time.Since(w.start)
	switch info.State {
	case asynq.TaskStateCompleted:
		w.progress.Done()
		return true, w.printResult(info)
	case asynq.TaskStateArchived:
		w.progress.Done()
		return true, fmt.Errorf("backup failed on worker-stats and will not be retried: %s", info.LastErr)
	case asynq.TaskStateActive:
		w.picked = true
		w.progress.Report(backup.Progress{Step: "running on worker-stats", Elapsed: elapsed})
	case asynq.TaskStateRetry:
		w.picked = true
		if info.Retried != w.retried {
			w.retried = info.Retried
			fmt.Fprintf(w.progress, "retrying: %s (attempt %d of %d at %s)\n", info.LastErr,
				info.Retried+1, info.MaxRetry+1, info.NextProcessAt.Local().Format(time.TimeOnly))
		}
		w.progress.Report(backup.Progress{Step: "waiting to retry", Elapsed: elapsed})
	default: // pending, scheduled
		if !w.picked && !w.warned && elapsed >= noWorkerAfter {
			w.warned = true
			fmt.Fprintln(w.progress, errNoWorker.Error())
		}
		w.progress.Report(backup.Progress{Step: "queued", Elapsed: elapsed})
	}
	return false, nil
}

var errNoWorker = errors.New("no worker-stats is consuming the backup queue; start one (or `make run`), or use --inline")

func (w *backupWait) printResult(info *asynq.TaskInfo) error {
	var res handlers.BackupResult
	if err := json.Unmarshal(info.Result, &res); err != nil || res.Key == "" {
		return fmt.Errorf("backup task %s completed without a result naming its key (is worker-stats older than this cepjobs?)", w.id)
	}
	fmt.Fprintf(w.e.stdout, "backup stored: %s, %s, sha256 %s, took %s",
		humanBytes(res.Size), plural(res.Tables, "table"), shortSum(res.SHA256), res.Duration)
	if len(res.Pruned) > 0 {
		fmt.Fprintf(w.e.stdout, "; retention deleted %d old objects", len(res.Pruned))
	}
	fmt.Fprintln(w.e.stdout)
	fmt.Fprintln(w.e.stdout, res.Key)
	return nil
}

// gaveUp explains why waiting stopped. The task stays queued either way:
// an extra backup later is harmless, and deleting it could race a worker
// just picking it up.
func (w *backupWait) gaveUp(parent context.Context, timeout time.Duration) error {
	w.progress.Done()
	why := fmt.Sprintf("gave up waiting after --timeout %s", timeout)
	if parent.Err() != nil {
		why = "interrupted"
	}
	switch {
	case w.lastErr != nil:
		return fmt.Errorf("%s: cannot read task %s from Redis: %w", why, w.id, w.lastErr)
	case !w.picked:
		return fmt.Errorf("%s: %w (task %s stays queued and runs when a worker starts)", why, errNoWorker, w.id)
	default:
		return fmt.Errorf("%s: task %s is %s on worker-stats and carries on there (see the dashboard)", why, w.id, w.state)
	}
}

func runBackupList(ctx context.Context, e env, rest []string) error {
	if len(rest) > 0 {
		return usageError(e, usageBackupList, "backup list takes no arguments, got %q", rest)
	}
	t, err := openBackups(e)
	if err != nil {
		return err
	}
	objs, err := t.b.List(ctx, t.db)
	if err != nil {
		return fmt.Errorf("list backups of %s in %s: %w", t.db, t.where(), err)
	}
	if len(objs) == 0 {
		fmt.Fprintf(e.stdout, "no backups yet of database %s in %s\n", t.db, t.where())
		return nil
	}
	now := time.Now()
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tSIZE\tAGE\tSHA256")
	for _, o := range objs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.Key, humanBytes(o.Size), humanAge(now.Sub(o.Time)), shortSum(o.SHA256))
	}
	return tw.Flush()
}

func runBackupRestore(ctx context.Context, e env, rest []string) error {
	fs := newFlagSet(e, "backup restore", usageBackupRestore)
	target := fs.String("target-db", "", "database to restore into, on the server of the backed-up database (created if missing)")
	force := fs.Bool("force", false, "restore into a database that already has tables, replacing the objects the backup contains")
	noOwner := fs.Bool("no-owner", false, "leave out owners and privileges (when the original roles do not exist here)")
	pos, err := parseInterspersed(fs, rest)
	if err != nil {
		return flagError(err)
	}
	switch {
	case len(pos) != 1:
		return usageError(e, usageBackupRestore, "backup restore takes one backup key or \"latest\", got %q", pos)
	case *target == "":
		return usageError(e, usageBackupRestore, "backup restore needs --target-db")
	}
	t, err := openBackups(e)
	if err != nil {
		return err
	}
	key, err := t.resolveKey(ctx, pos[0])
	if err != nil {
		return err
	}
	m, err := t.b.Manifest(ctx, key)
	if err != nil {
		return keyHint(fmt.Errorf("restore %s: %w", key, err))
	}
	targetURL, err := withDatabase(t.dbURL, *target)
	if err != nil {
		return err
	}
	adminURL, err := withDatabase(t.dbURL, "postgres")
	if err != nil {
		return err
	}
	host := serverName(t.dbURL)
	created, err := ensureDatabase(ctx, targetURL, adminURL, *target, m.Encoding)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(e.stdout, "created database %s on %s\n", *target, host)
	}
	err = t.b.Restore(ctx, key, targetURL, backup.RestoreOptions{Force: *force, NoOwner: *noOwner}, t.progress.Report)
	t.progress.Done()
	if errors.Is(err, backup.ErrNotEmpty) {
		return fmt.Errorf("%w\ndatabase %s is not empty: pass --force to replace the objects the backup contains (in one transaction), or choose an empty --target-db", err, *target)
	}
	if err != nil && created {
		err = fmt.Errorf("%w (database %s was created for this restore and is left empty)", err, *target)
	}
	if err != nil {
		return keyHint(err)
	}
	var rows int64
	for _, n := range m.Tables {
		rows += n
	}
	fmt.Fprintf(e.stdout, "restored %s (database %s taken %s, %s, sha256 %s verified) into database %s on %s: %s, %s\n",
		key, m.Database, m.Time.UTC().Format(time.RFC3339), humanBytes(m.Size), shortSum(m.SHA256), *target, host,
		plural(len(m.Tables), "table"), plural(int(rows), "row"))
	return nil
}

func runBackupVerify(ctx context.Context, e env, rest []string) error {
	fs := newFlagSet(e, "backup verify", usageBackupVerify)
	pos, err := parseInterspersed(fs, rest)
	if err != nil {
		return flagError(err)
	}
	if len(pos) > 1 {
		return usageError(e, usageBackupVerify, "backup verify takes at most one backup key or \"latest\", got %q", pos)
	}
	arg := "latest"
	if len(pos) == 1 {
		arg = pos[0]
	}
	t, err := openBackups(e)
	if err != nil {
		return err
	}
	key, err := t.resolveKey(ctx, arg)
	if err != nil {
		return err
	}
	adminURL, err := withDatabase(t.dbURL, "postgres")
	if err != nil {
		return err
	}
	rep, err := t.b.Verify(ctx, key, adminURL, t.progress.Report)
	t.progress.Done()
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42501": // insufficient_privilege
		return fmt.Errorf("%w (verify restores into a scratch database: the role of the backed-up database's URL needs CREATEDB)", err)
	case err != nil && !errors.Is(err, backup.ErrRowCounts):
		return keyHint(err)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tDUMPED\tRESTORED\tOK")
	bad := 0
	for _, c := range rep.Tables {
		ok := "ok"
		if !c.OK {
			ok, bad = "MISMATCH", bad+1
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Table, rowCount(c.Want), rowCount(c.Got), ok)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !rep.OK {
		fmt.Fprintf(e.stdout, "FAILED: %s restored, but %d of %d tables do not have the rows they were dumped with\n", key, bad, len(rep.Tables))
		return exitError(1)
	}
	fmt.Fprintf(e.stdout, "OK: %s restored into a scratch database (sha256 %s verified), %s with the rows they were dumped with, in %s\n",
		key, shortSum(rep.SHA256), plural(len(rep.Tables), "table"), rep.Duration.Round(time.Millisecond))
	return nil
}

// rowCount shows a table missing on one side as "-".
func rowCount(n int64) string {
	if n < 0 {
		return "-"
	}
	return fmt.Sprint(n)
}

// plural is "1 table", "2 tables".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func shortSum(sum string) string {
	if len(sum) > 12 {
		return sum[:12]
	}
	return sum
}

// withDatabase points a connection string at another database on the same
// server, keeping user, password, host and options.
func withDatabase(connString, name string) (string, error) {
	if _, err := pgconn.ParseConfig(connString); err != nil {
		return "", errors.New("CEPJOBS_BACKUP_DATABASE_URL or DATABASE_URL: cannot parse the connection string")
	}
	if strings.HasPrefix(connString, "postgres://") || strings.HasPrefix(connString, "postgresql://") {
		u, err := url.Parse(connString)
		if err != nil {
			return "", errors.New("CEPJOBS_BACKUP_DATABASE_URL or DATABASE_URL: cannot parse the connection string")
		}
		u.Path, u.RawPath = "/"+name, ""
		if q := u.Query(); q.Has("dbname") {
			q.Set("dbname", name)
			u.RawQuery = q.Encode()
		}
		return u.String(), nil
	}
	// key=value form: libpq and pgx take the last of a repeated key.
	return connString + " dbname='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(name) + "'", nil
}

// serverName is host:port of a connection string, for messages.
func serverName(connString string) string {
	c, err := pgconn.ParseConfig(connString)
	if err != nil {
		return "the server"
	}
	return fmt.Sprintf("%s:%d", c.Host, c.Port)
}

// ensureDatabase creates the restore target unless it exists, connecting
// to adminURL (the server's postgres database) to do so, and reports
// whether it did. The new database comes from template0, empty as
// pg_restore expects, in the encoding the dump was taken in.
//
// This is the CLI's one piece of SQL outside store and backup: store works
// inside the application database, and backup creates only its own scratch
// databases.
func ensureDatabase(ctx context.Context, targetURL, adminURL, name, encoding string) (bool, error) {
	conn, err := pgx.Connect(ctx, targetURL)
	if err == nil {
		conn.Close(ctx)
		return false, nil
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "3D000" { // invalid_catalog_name
		return false, fmt.Errorf("connect to target database %s: %w", name, err)
	}
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return false, fmt.Errorf("database %s does not exist, and connecting to database postgres on the same server to create it failed: %w (create it yourself, then run again)", name, err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	sql := "create database " + pgx.Identifier{name}.Sanitize() + " template template0"
	if encoding != "" {
		sql += " encoding '" + strings.ReplaceAll(encoding, "'", "''") + "'"
	}
	if _, err := admin.Exec(ctx, sql); err != nil {
		if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database: created meanwhile
			return false, nil
		}
		return false, fmt.Errorf("create database %s: %w (the role needs CREATEDB, or create the database yourself)", name, err)
	}
	return true, nil
}
