package devenv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// databaseName is the database the dev command works in, on a local or
// private server; it keeps dev data apart from anything else on that server.
const databaseName = "cepjobs_dev"

// pgDuplicateDatabase is SQLSTATE duplicate_database: another process
// created the database between our check and our CREATE.
const pgDuplicateDatabase = "42P04"

// ensurePostgres fills e.DatabaseURL from, in order, p.DatabaseURL, the
// local server at localAddr, or a private server under dir/postgres.
func (e *Env) ensurePostgres(ctx context.Context, p Params, dir, localAddr string) error {
	if p.DatabaseURL != "" {
		cfg, err := pgx.ParseConfig(p.DatabaseURL)
		if err == nil {
			err = pingPostgres(ctx, cfg)
		}
		if err != nil {
			return fmt.Errorf("DATABASE_URL %s does not answer: %w; unset it to use a local or private server",
				redact(p.DatabaseURL), scrubError(err, p.DatabaseURL))
		}
		e.DatabaseURL, e.DatabaseOrigin = p.DatabaseURL, "DATABASE_URL"
		p.Logger.InfoContext(ctx, "using postgres", "origin", e.DatabaseOrigin, "url", redact(e.DatabaseURL))
		return nil
	}

	admin, err := adminConfig(localAddr)
	if err != nil {
		return err
	}
	err = pingPostgres(ctx, admin)
	if err == nil {
		if err := createDatabase(ctx, admin, databaseName); err != nil {
			return fmt.Errorf("prepare local postgres on %s: %w", localAddr, err)
		}
		e.DatabaseURL = devDatabaseURL(localAddr)
		e.DatabaseOrigin = "local server on " + localAddr
		p.Logger.InfoContext(ctx, "using postgres", "origin", e.DatabaseOrigin, "url", e.DatabaseURL)
		return nil
	}
	// Also reached when a local server exists but wants a password: a
	// private server is then the way to run without configuration.
	p.Logger.DebugContext(ctx, "no usable local postgres", "addr", localAddr, "err", err)

	pg, err := startPostgres(ctx, filepath.Join(dir, "postgres"), p.Logger)
	if err != nil {
		return err
	}
	e.postgres = pg
	e.DatabaseURL = devDatabaseURL(pg.addr())
	e.DatabaseOrigin = fmt.Sprintf("private server under %s on port %d", filepath.Join(p.Dir, "postgres"), pg.port)
	p.Logger.InfoContext(ctx, "using postgres", "origin", e.DatabaseOrigin, "url", e.DatabaseURL)
	return nil
}

// devDatabaseURL is the URL handed to the app for a local or private server.
func devDatabaseURL(addr string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", addr, databaseName)
}

// adminConfig is how we connect to a local or private server to probe it
// and create the dev database: as postgres, to the always-present postgres
// database.
func adminConfig(addr string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", addr))
	if err != nil {
		return nil, fmt.Errorf("parse postgres config: %w", err)
	}
	// pgx would otherwise fill in PGPASSWORD or ~/.pgpass, and the URL we
	// hand out carries no password: succeed only if that URL will work.
	cfg.Password = ""
	return cfg, nil
}

// pingPostgres reports whether the server in cfg accepts a connection.
func pingPostgres(ctx context.Context, cfg *pgx.ConnConfig) error {
	ctx, cancel := context.WithTimeout(ctx, postgresProbeTimeout)
	defer cancel()
	cfg = cfg.Copy()
	cfg.ConnectTimeout = postgresProbeTimeout
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := conn.Ping(ctx); err != nil {
		return fmt.Errorf("ping postgres: %w", err)
	}
	return nil
}

// createDatabase creates database name unless it exists. Several dev
// processes may start at once, so losing the race to create it is fine.
func createDatabase(ctx context.Context, admin *pgx.ConnConfig, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, admin)
	if err != nil {
		return fmt.Errorf("connect postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	var exists bool
	err = conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists)
	if err != nil {
		return fmt.Errorf("check database %s: %w", name, err)
	}
	if exists {
		return nil
	}
	// CREATE DATABASE takes no parameters, hence the quoted identifier.
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == pgDuplicateDatabase {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// privatePostgres is a server started by this package with pg_ctl. pg_ctl
// detaches it from us, so unlike Redis it survives if we crash; the next
// start finds and stops it.
type privatePostgres struct {
	tools   pgTools
	dataDir string
	port    int
	// pid identifies our server, so that stop never shuts down one that
	// another dev process started later in the same data dir.
	pid int
	// tempSocketDir is set when the socket lives under os.TempDir because
	// the state dir's path is too long; it is removed on stop.
	tempSocketDir string
}

func (pg *privatePostgres) addr() string { return fmt.Sprintf("127.0.0.1:%d", pg.port) }

// startPostgres initialises a cluster under dir the first time, starts it on
// a free loopback port and creates the dev database in it.
func startPostgres(ctx context.Context, dir string, logger *slog.Logger) (*privatePostgres, error) {
	tools, err := findPGTools()
	if err != nil {
		return nil, err
	}
	if err := tools.prepareDir(ctx, dir); err != nil {
		return nil, err
	}
	dataDir := filepath.Join(dir, "data")
	if err := tools.initCluster(ctx, dir, dataDir, logger); err != nil {
		return nil, err
	}

	// A server left over from a session that crashed would hold the data
	// dir; it is ours and throwaway, so stop it rather than fail.
	if pid := postmasterPID(dataDir); pid != 0 {
		logger.InfoContext(ctx, "stopping leftover private postgres", "data", dataDir, "pid", pid)
		stale := &privatePostgres{tools: tools, dataDir: dataDir, pid: pid}
		if err := stale.stop(ctx); err != nil {
			return nil, fmt.Errorf("stop leftover postgres: %w", err)
		}
	}

	port, err := freePort()
	if err != nil {
		return nil, err
	}
	pg := &privatePostgres{tools: tools, dataDir: dataDir, port: port}
	socketDir := dir
	if !socketPathFits(dir) {
		// Unix socket paths are limited to about 100 bytes.
		socketDir, err = tools.tempSocketDir()
		if err != nil {
			return nil, err
		}
		pg.tempSocketDir = socketDir
	}

	// Whatever fails from here on, don't leave a server running.
	cleanup := func(err error) (*privatePostgres, error) {
		if pg.pid == 0 {
			// pg_ctl may have given up waiting on a server that did
			// start; we just stopped any leftover, so it is ours.
			pg.pid = postmasterPID(dataDir)
		}
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		return nil, errors.Join(err, pg.stop(stopCtx))
	}

	logPath := filepath.Join(dir, "postgres.log")
	serverOpts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1", port, shellQuote(socketDir))
	out, err := tools.run(ctx, dir, tools.pgCtl,
		"-D", dataDir, "-l", logPath, "-w", "-t", "30", "-o", serverOpts, "start")
	if err != nil {
		return cleanup(fmt.Errorf("start postgres: %w: %s; log %s:\n%s\n(if the data is from another PostgreSQL version or damaged, remove %s to start afresh)",
			err, out, logPath, logTail(logPath), dir))
	}
	if pg.pid = postmasterPID(dataDir); pg.pid == 0 {
		return cleanup(fmt.Errorf("start postgres: server exited right after starting; log %s:\n%s", logPath, logTail(logPath)))
	}
	logger.DebugContext(ctx, "started postgres", "pid", pg.pid, "port", port, "data", dataDir, "log", logPath)

	admin, err := adminConfig(pg.addr())
	if err != nil {
		return cleanup(err)
	}
	if err := createDatabase(ctx, admin, databaseName); err != nil {
		return cleanup(fmt.Errorf("prepare private postgres: %w", err))
	}
	return pg, nil
}

// stop asks the server for a fast shutdown (disconnect clients, no waiting
// for them) and waits until it has exited. The request is sent even if ctx
// is done; ctx bounds only the wait.
func (pg *privatePostgres) stop(ctx context.Context) error {
	var err error
	if pg.pid != 0 && postmasterPID(pg.dataDir) == pg.pid {
		err = pg.shutdown(ctx)
	}
	if pg.tempSocketDir != "" {
		if rmErr := os.RemoveAll(pg.tempSocketDir); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("remove socket dir: %w", rmErr))
		}
	}
	return err
}

func (pg *privatePostgres) shutdown(ctx context.Context) error {
	// --no-wait plus our own polling, rather than pg_ctl -w, so that a done
	// ctx cannot stop us from sending the request.
	reqCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	out, err := pg.tools.run(reqCtx, filepath.Dir(pg.dataDir), pg.tools.pgCtl,
		"-D", pg.dataDir, "-m", "fast", "--no-wait", "stop")
	// The server may have exited between our check and pg_ctl's.
	if err != nil && postmasterPID(pg.dataDir) == pg.pid {
		return fmt.Errorf("stop postgres: %w: %s", err, out)
	}

	waitCtx, cancelWait := context.WithTimeout(ctx, 60*time.Second)
	defer cancelWait()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for postmasterPID(pg.dataDir) == pg.pid {
		select {
		case <-waitCtx.Done():
			return fmt.Errorf("stop postgres: still running after fast shutdown request: %w", waitCtx.Err())
		case <-tick.C:
		}
	}
	return nil
}
