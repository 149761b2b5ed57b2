package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Config is the database part of the configuration.
type Config struct {
	// URL is a libpq-style connection string or postgres:// URL.
	URL string `env:"DATABASE_URL" default:"postgres://postgres@127.0.0.1:5432/cepjobs?sslmode=disable" secret:"url"`
	// MaxConns bounds the pool; zero means pgx's default (max(4, NumCPU)).
	MaxConns int32 `env:"CEPJOBS_DB_MAX_CONNS"`
	// LeadCommitters is how many lead batches may commit at once; zero
	// means one. One is the fastest here: a batch gathers every submission
	// that arrives while the one before commits, and the fewer and larger
	// the batches, the less PostgreSQL and the intake spend per lead (see
	// bench/RESULTS.md). More help only when one commit takes long enough
	// (a distant server, a slow disk) that batches reach maxLeadBatch.
	LeadCommitters int `env:"CEPJOBS_LEAD_COMMITTERS"`
}

// Validate reports what is wrong with c.
func (c Config) Validate() error {
	var errs []error
	if c.MaxConns < 0 {
		errs = append(errs, errors.New("CEPJOBS_DB_MAX_CONNS: must not be negative"))
	}
	if c.LeadCommitters < 0 {
		errs = append(errs, errors.New("CEPJOBS_LEAD_COMMITTERS: must not be negative (0 means 1)"))
	}
	if c.URL == "" {
		errs = append(errs, errors.New("DATABASE_URL: required"))
	} else if pc, err := c.poolConfig(); err != nil {
		errs = append(errs, fmt.Errorf("DATABASE_URL: %s", redactParseError(err)))
	} else if c.LeadCommitters > 1 && c.LeadCommitters >= int(pc.MaxConns) {
		errs = append(errs, fmt.Errorf("CEPJOBS_LEAD_COMMITTERS: must be below the pool size, %d (CEPJOBS_DB_MAX_CONNS, or pool_max_conns in DATABASE_URL), so other work still gets a connection", pc.MaxConns))
	}
	return errors.Join(errs...)
}

// poolConfig is the pool Open connects: the URL's settings (pgx's defaults,
// pool_max_conns) with CEPJOBS_DB_MAX_CONNS over them.
func (c Config) poolConfig() (*pgxpool.Config, error) {
	pc, err := pgxpool.ParseConfig(c.URL)
	if err != nil {
		return nil, err
	}
	if c.MaxConns > 0 {
		pc.MaxConns = c.MaxConns
	}
	return pc, nil
}

// redactParseError never repeats the connection string: pgx masks
// passwords only on a best-effort basis, and a URL parse error quotes the
// whole URL.
func redactParseError(error) string {
	return "cannot parse the connection string (want postgres://user:password@host:port/dbname?sslmode=disable or key=value pairs)"
}

// Store is the handle on the database.
type Store struct {
	pool  *pgxpool.Pool
	leads *leadBatcher
}

// Open connects a pool. It does not wait for the server: Ping does.
func Open(ctx context.Context, c Config) (*Store, error) {
	pc, err := c.poolConfig()
	if err != nil {
		return nil, fmt.Errorf("open store: %s", redactParseError(err))
	}
	pc.ConnConfig.RuntimeParams["application_name"] = "cepjobs"
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	st := &Store{pool: pool}
	st.leads = newLeadBatcher(st, max(c.LeadCommitters, 1))
	return st, nil
}

// Close stops the lead committers and closes the pool, waiting for borrowed
// connections.
func (s *Store) Close() {
	s.leads.close()
	s.pool.Close()
}

// Ping checks that the server answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping postgres: %w", err)
	}
	return nil
}

// ServerVersion returns the server's version number (e.g. 150004).
func (s *Store) ServerVersion(ctx context.Context) (int, error) {
	var v string
	if err := s.pool.QueryRow(ctx, "show server_version_num").Scan(&v); err != nil {
		return 0, fmt.Errorf("server version: %w", err)
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("server version: %q is not a number", v)
	}
	return n, nil
}
