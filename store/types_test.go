package store

import (
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/cepcomunicacion/cepjobs/internal/testenv"
)

// text[] parameters go in the binary format (registerBinaryTextArrays):
// every element comes back as sent, whatever quoting the text format would
// have needed, and arrays of another type still encode.
func TestBinaryTextArraysRoundTrip(t *testing.T) {
	ctx := context.Background()
	// Read-only: the admin database will do.
	c, err := pgx.Connect(ctx, testenv.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	registerBinaryTextArrays(c.TypeMap())
	in := []string{"", "plain", `a "quoted" b`, `back\slash`, "{braces}, comma", "NULL", "ñandú 🦤", "O'Neil; drop table leads; --", " spaces "}
	var out []string
	var n int
	if err := c.QueryRow(ctx, `select $1::text[], cardinality($1::text[])`, in).Scan(&out, &n); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(in, out) || n != len(in) {
		t.Errorf("got %q (%d), want %q", out, n, in)
	}
	var sum int64
	if err := c.QueryRow(ctx, `select sum(x) from unnest($1::int8[]) as x`, []int64{1, 2, 3}).Scan(&sum); err != nil || sum != 6 {
		t.Errorf("int8[]: got %d, %v", sum, err)
	}
}
