// Package store owns the Postgres side of cepjobs: the pgx pool, the embedded
// migrations and every SQL statement, one file per aggregate. It imports none
// of the project's packages and returns concrete types; driver errors are
// mapped once, in errors.go.
package store
