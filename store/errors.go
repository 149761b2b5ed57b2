package store

import (
	"errors"

	"github.com/jackc/pgx/v5"
)

// Sentinel errors callers test with errors.Is.
var (
	// ErrNotFound: no row with that identifier.
	ErrNotFound = errors.New("not found")
	// ErrIdempotencyConflict: an Idempotency-Key was reused with a different
	// request.
	ErrIdempotencyConflict = errors.New("idempotency key reused with a different request")
)

// mapErr turns driver errors into the package's sentinels.
func mapErr(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	return err
}
