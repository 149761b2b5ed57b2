package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/jackc/tern/v2/migrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

const (
	versionTable = "cepjobs.schema_version"
	// migrateLock serialises migrations across every process that starts at
	// once (intake replicas, the CLI): the first applies, the others wait and
	// then find nothing to do. tern takes a lock of its own as well, but only
	// after it has created its version table, which needs our schema.
	migrateLock = int64(0x6365706a6f6273) // "cepjobs"
)

// Migrate applies the embedded migrations that have not run yet and returns
// the schema version reached.
func (s *Store) Migrate(ctx context.Context) (int32, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("migrate: acquire connection: %w", err)
	}
	defer conn.Release()
	c := conn.Conn()

	if _, err := c.Exec(ctx, "select pg_advisory_lock($1)", migrateLock); err != nil {
		return 0, fmt.Errorf("migrate: take lock: %w", err)
	}
	// Unlock on a fresh context: the caller's may be cancelled already, and a
	// lock left behind on a pooled connection would block every later start.
	defer c.Exec(context.WithoutCancel(ctx), "select pg_advisory_unlock($1)", migrateLock) //nolint:errcheck // the session ends the lock anyway

	if _, err := c.Exec(ctx, "create schema if not exists cepjobs"); err != nil {
		return 0, fmt.Errorf("migrate: create schema: %w", err)
	}
	m, err := migrate.NewMigrator(ctx, c, versionTable)
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	if err := m.LoadMigrations(sub); err != nil {
		return 0, fmt.Errorf("migrate: load migrations: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	v, err := m.GetCurrentVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("migrate: read version: %w", err)
	}
	return v, nil
}

// SchemaVersion returns the version the database is at and the version this
// binary would migrate it to.
func (s *Store) SchemaVersion(ctx context.Context) (current, latest int32, err error) {
	names, err := migrate.FindMigrations(mustSub())
	if err != nil {
		return 0, 0, fmt.Errorf("schema version: %w", err)
	}
	latest = int32(len(names))
	err = s.pool.QueryRow(ctx, "select version from "+versionTable).Scan(&current)
	if err != nil {
		// No version table yet: nothing has been applied.
		var exists bool
		if qerr := s.pool.QueryRow(ctx, "select to_regclass($1) is not null", versionTable).Scan(&exists); qerr == nil && !exists {
			return 0, latest, nil
		}
		return 0, latest, fmt.Errorf("schema version: %w", err)
	}
	return current, latest, nil
}

func mustSub() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}
