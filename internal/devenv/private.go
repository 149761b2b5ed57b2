package devenv

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
)

// PrivatePostgres is a throwaway PostgreSQL cluster under a directory of its
// own, on a free loopback port, for tests that must stop and restart the
// server (the chaos tests) without touching a shared one. It holds one
// database, cepjobs_dev.
type PrivatePostgres struct {
	pg  *privatePostgres
	dir string
}

// StartPrivatePostgres initialises a cluster under dir (initdb, as the
// postgres user when root) and starts it.
func StartPrivatePostgres(ctx context.Context, dir string, logger *slog.Logger) (*PrivatePostgres, error) {
	pg, err := startPostgres(ctx, dir, logger)
	if err != nil {
		return nil, err
	}
	return &PrivatePostgres{pg: pg, dir: dir}, nil
}

// URL is the cepjobs_dev database's URL.
func (p *PrivatePostgres) URL() string { return devDatabaseURL(p.pg.addr()) }

// Stop asks for a fast shutdown (open connections are terminated, as in a
// restart by an operator or a failover) and waits until the server is gone.
func (p *PrivatePostgres) Stop(ctx context.Context) error {
	if p.pg.pid == 0 || postmasterPID(p.pg.dataDir) != p.pg.pid {
		return nil
	}
	return p.pg.shutdown(ctx)
}

// Start starts the stopped server again on the same port and data.
func (p *PrivatePostgres) Start(ctx context.Context) error {
	socketDir := p.dir
	if p.pg.tempSocketDir != "" {
		socketDir = p.pg.tempSocketDir
	}
	logPath := filepath.Join(p.dir, "postgres.log")
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1", p.pg.port, shellQuote(socketDir))
	out, err := p.pg.tools.run(ctx, p.dir, p.pg.tools.pgCtl, "-D", p.pg.dataDir, "-l", logPath, "-w", "-t", "30", "-o", opts, "start")
	if err != nil {
		return fmt.Errorf("restart postgres: %w: %s; log:\n%s", err, out, logTail(logPath))
	}
	p.pg.pid = postmasterPID(p.pg.dataDir)
	return nil
}

// Close stops the server for good.
func (p *PrivatePostgres) Close(ctx context.Context) error { return p.pg.stop(ctx) }
