// Package devenv finds or starts the Redis and PostgreSQL servers that
// `cepjobs dev` needs, so a developer can run everything in one process
// without setting anything up by hand.
//
// For each server it prefers, in order: the URL the user configured, the
// standard local server on its default port, and finally a private
// throwaway server it starts under a state directory and stops on Close.
package devenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Params says where to look for servers and where private ones may live.
type Params struct {
	// Dir is the state directory for private servers, e.g. "<repo>/.dev".
	// Empty means ".dev" in the working directory.
	Dir string
	// RedisURL comes from REDIS_URL and may be empty.
	RedisURL string
	// DatabaseURL comes from DATABASE_URL and may be empty.
	DatabaseURL string
	// Logger receives one line per server chosen; nil discards.
	Logger *slog.Logger
}

// Env holds the servers Ensure settled on. Call Close when done so that any
// private server it started is stopped.
type Env struct {
	// RedisURL is in redis://host:port/db form.
	RedisURL string
	// DatabaseURL is in postgres://… form.
	DatabaseURL string
	// RedisOrigin and DatabaseOrigin say, for humans, where each server came
	// from: the env var name, the local server, or the private one.
	RedisOrigin, DatabaseOrigin string

	redis    *privateRedis    // nil unless this Env started it
	postgres *privatePostgres // nil unless this Env started it
}

// Standard addresses of a developer's own servers.
const (
	localRedisAddr    = "127.0.0.1:6379"
	localPostgresAddr = "127.0.0.1:5432"
)

// Probe timeouts: long enough for a loaded machine, short enough that a
// wrong URL fails the dev command quickly.
const (
	redisProbeTimeout    = 2 * time.Second
	postgresProbeTimeout = 3 * time.Second
)

// localServers names the addresses probed before starting private servers;
// it exists so tests can point the probe at closed ports.
type localServers struct {
	redisAddr    string
	postgresAddr string
}

// Ensure returns a Redis and a PostgreSQL server to use, starting private
// ones under p.Dir when neither a configured URL nor a local server is
// available. ctx bounds only the search and start-up: private servers keep
// running after Ensure returns, until Env.Close.
func Ensure(ctx context.Context, p Params) (*Env, error) {
	return ensure(ctx, p, localServers{redisAddr: localRedisAddr, postgresAddr: localPostgresAddr})
}

func ensure(ctx context.Context, p Params, local localServers) (*Env, error) {
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	if p.Dir == "" {
		p.Dir = ".dev"
	}
	// Absolute because pg_ctl and friends run with another working
	// directory, and the path ends up in the servers' own settings.
	absDir, err := filepath.Abs(p.Dir)
	if err != nil {
		return nil, fmt.Errorf("resolve state dir: %w", err)
	}

	env := &Env{}
	if err := env.ensureRedis(ctx, p, absDir, local.redisAddr); err != nil {
		return nil, err
	}
	if err := env.ensurePostgres(ctx, p, absDir, local.postgresAddr); err != nil {
		// Don't leave a private Redis behind when the caller gets no Env
		// to Close.
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if cerr := env.Close(closeCtx); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, err
	}
	return env, nil
}

// Close stops the private servers this Env started and waits for them to
// exit; servers it merely found are left alone. The stop requests are sent
// even if ctx is already done; ctx bounds only the waiting. Close may be
// called more than once, but not concurrently.
func (e *Env) Close(ctx context.Context) error {
	var errs []error
	if e.postgres != nil {
		if err := e.postgres.stop(ctx); err != nil {
			errs = append(errs, err)
		}
		e.postgres = nil
	}
	if e.redis != nil {
		if err := e.redis.stop(ctx); err != nil {
			errs = append(errs, err)
		}
		e.redis = nil
	}
	return errors.Join(errs...)
}

// freePort asks the kernel for an unused loopback port. Another process
// could take it before our server binds it; the server then fails to start
// with a clear message, which is rare enough to accept.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	return port, nil
}

// logTail returns the last few lines of a server log, so that a failed
// start explains itself without the user hunting for the file.
func logTail(path string) string {
	const maxBytes = 2048
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	if len(b) > maxBytes {
		b = b[len(b)-maxBytes:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return strings.TrimRight(string(b), "\n")
}
