package backup

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// This file holds the package's SQL. It stays here rather than in store
// because it works on databases named by URL (restore targets, scratch
// databases) and needs one connection holding an exported snapshot, which
// the application's pool cannot offer. All of it reads the catalog or
// counts rows; none of it touches application data otherwise.

// userObjects excludes the catalogs, TOAST and temporary schemas, and
// objects that belong to an extension (CREATE EXTENSION makes those, and
// pg_dump does not dump their rows).
const userObjects = `
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
where n.nspname not in ('pg_catalog', 'information_schema')
  and n.nspname not like 'pg\_toast%'
  and n.nspname not like 'pg\_temp\_%'
  and c.relpersistence <> 't'
  and not exists (
    select 1 from pg_depend d
    where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype = 'e')`

// querier is what countRows needs: a connection, or the transaction that
// holds the dump's snapshot.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func serverVersion(ctx context.Context, conn *pgx.Conn) (pgVersion, error) {
	var s string
	if err := conn.QueryRow(ctx, "show server_version_num").Scan(&s); err != nil {
		return 0, fmt.Errorf("query server version: %w", err)
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("query server version: %q is not a number", s)
	}
	return pgVersion(n), nil
}

func databaseInfo(ctx context.Context, conn *pgx.Conn) (name, encoding string, err error) {
	err = conn.QueryRow(ctx, `select current_database(), pg_encoding_to_char(encoding)
		from pg_database where datname = current_database()`).Scan(&name, &encoding)
	if err != nil {
		return "", "", fmt.Errorf("query database name: %w", err)
	}
	return name, encoding, nil
}

// countRows counts the rows of every user table as q sees them. Only plain
// tables (relkind 'r', partitions included) are counted: a partitioned
// parent holds no rows of its own and counting it would scan its
// partitions twice.
func countRows(ctx context.Context, q querier) (map[string]int64, error) {
	rows, err := q.Query(ctx, "select n.nspname, c.relname "+userObjects+" and c.relkind = 'r' order by 1, 2")
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	type table struct{ schema, name string }
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (table, error) {
		var t table
		return t, r.Scan(&t.schema, &t.name)
	})
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	counts := make(map[string]int64, len(tables))
	for _, t := range tables {
		var n int64
		if err := q.QueryRow(ctx, "select count(*) from "+pgx.Identifier{t.schema, t.name}.Sanitize()).Scan(&n); err != nil {
			return nil, fmt.Errorf("count rows of %s.%s: %w", t.schema, t.name, err)
		}
		counts[t.schema+"."+t.name] = n
	}
	return counts, nil
}

// userRelations names up to limit tables, views, sequences and foreign
// tables outside the system schemas: a restore target with any is not
// empty.
func userRelations(ctx context.Context, conn *pgx.Conn, limit int) ([]string, error) {
	rows, err := conn.Query(ctx, "select n.nspname || '.' || c.relname "+userObjects+
		" and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f') order by 1 limit $1", limit)
	if err != nil {
		return nil, fmt.Errorf("list relations: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list relations: %w", err)
	}
	return names, nil
}

func createDatabase(ctx context.Context, conn *pgx.Conn, name, encoding string) error {
	// template0 gives a database with nothing in it, as pg_restore expects;
	// template1 may carry objects that would collide with the dump's.
	sql := "create database " + pgx.Identifier{name}.Sanitize() + " template template0"
	if encoding != "" {
		sql += " encoding " + quoteLiteral(encoding)
	}
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

func dropDatabase(ctx context.Context, conn *pgx.Conn, name string, server pgVersion) error {
	sql := "drop database if exists " + pgx.Identifier{name}.Sanitize()
	if server >= 130000 {
		// A pg_restore killed half-way may leave a backend behind for a
		// moment; force ends it instead of failing the drop.
		sql += " with (force)"
	}
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

func quoteLiteral(s string) string {
	out := []byte{'\''}
	for i := range len(s) {
		if s[i] == '\'' {
			out = append(out, '\'')
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}
