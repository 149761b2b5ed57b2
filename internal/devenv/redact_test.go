package devenv

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"},
		{"redis://:pw@host:6379/0", "redis://:xxxxx@host:6379/0"},
		{"postgres://u:p%40ss@host/db?sslmode=disable", "postgres://u:xxxxx@host/db?sslmode=disable"},
		{"postgres://u:p@ss@host/db", "postgres://u:xxxxx@host/db"},
		{"postgres://u@host/db?x=a:b@c", "postgres://u@host/db?x=a:b@c"},
		{"host=h user=u password=secret dbname=d", "host=h user=u password=xxxxx dbname=d"},
		{"host=h password='se cret' dbname=d", "host=h password=xxxxx dbname=d"},
	}
	for _, tt := range tests {
		if got := redact(tt.in); got != tt.want {
			t.Errorf("redact(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestScrubError(t *testing.T) {
	t.Parallel()
	const conn = "postgres://postgres:hunter2@db:5432/postgres"
	base := errors.New("dial failed")
	err := fmt.Errorf("parse %q: user postgres:hunter2@db: %w", conn, base)
	got := scrubError(err, conn)
	if strings.Contains(got.Error(), "hunter2") {
		t.Errorf("scrubbed: got %q, want no password", got)
	}
	if !strings.Contains(got.Error(), "postgres://postgres:xxxxx@db:5432/postgres") {
		t.Errorf("scrubbed: got %q, want the redacted URL kept", got)
	}
	if !errors.Is(got, base) {
		t.Errorf("errors.Is(scrubbed, base): got false, want true")
	}
}
