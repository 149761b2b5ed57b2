package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cepcomunicacion/cepjobs/internal/testenv"
	"github.com/cepcomunicacion/cepjobs/store"
)

func TestIsUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A server that is not there: the pool's connect fails.
	s, err := store.Open(ctx, store.Config{URL: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/x?sslmode=disable&connect_timeout=2", testenv.FreePort(t))})
	if err == nil {
		_, err = s.LeadStatus(ctx, "01a21f83-f54d-7489-8fae-08ea6ef64faa")
		s.Close()
	}
	if err == nil || !store.IsUnavailable(err) {
		t.Errorf("no server: got %v, IsUnavailable false", err)
	}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("submit lead: %w", &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}), true},
		{&pgconn.PgError{Code: "57P03", Message: "the database system is starting up"}, true},
		{&pgconn.PgError{Code: "08006"}, true},
		{&pgconn.PgError{Code: "23505", Message: "duplicate key"}, false},
		{&pgconn.PgError{Code: "22P02"}, false},
		{store.ErrNotFound, false},
		{errors.New("boom"), false},
		{nil, false},
	} {
		if got := store.IsUnavailable(c.err); got != c.want {
			t.Errorf("IsUnavailable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
