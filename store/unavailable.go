package store

import (
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// IsUnavailable reports whether err says PostgreSQL could not be reached or
// went away mid-request: down, restarting, shutting down, failing over, out
// of connections. Nothing half-done stays behind (a transaction that did not
// commit is rolled back by the server), and the same request may succeed
// later, so callers answer "unavailable, retry" rather than "internal
// error". A commit whose answer was lost is the one ambiguous case; a retry
// then finds the lead as a duplicate or replays its Idempotency-Key.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"): // connection_exception
			return true
		case pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03": // admin_shutdown, crash_shutdown, cannot_connect_now
			return true
		case pe.Code == "53300": // too_many_connections
			return true
		}
		return false
	}
	if pgconn.SafeToRetry(err) {
		return true // failed before anything was sent
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	// The connection dropped while the server was working (pgx reports
	// the socket's EOF).
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || strings.Contains(err.Error(), "conn closed")
}
