package backup

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Unit tests of the parsing helpers; everything else is tested from
// backup_test against real servers.

func TestConnInfo(t *testing.T) {
	for _, tc := range []struct {
		in, shown, password, scratch string
	}{
		{
			in:       "postgres://app:pw%40x@db:5432/shop?sslmode=disable",
			shown:    "postgres://app@db:5432/shop?sslmode=disable",
			password: "pw@x",
			scratch:  "postgres://app@db:5432/scratch?sslmode=disable",
		},
		{
			in:       "postgresql://app@db/shop?password=qp&sslmode=require",
			shown:    "postgresql://app@db/shop?sslmode=require",
			password: "qp",
			scratch:  "postgresql://app@db/scratch?sslmode=require",
		},
		{
			in:       `host=db user=app password='it\'s \'x\'' dbname=shop`,
			shown:    `host='db' user='app' dbname='shop'`,
			password: `it's 'x'`,
			scratch:  `host='db' user='app' dbname='scratch'`,
		},
	} {
		ci, err := parseConnInfo(tc.in)
		if err != nil {
			t.Errorf("parseConnInfo(%q): %v", tc.in, err)
			continue
		}
		if got := ci.String(); got != tc.shown {
			t.Errorf("shown %q, want %q", got, tc.shown)
		}
		if ci.password != tc.password {
			t.Errorf("password %q, want %q", ci.password, tc.password)
		}
		if got := ci.withDatabase("scratch").String(); got != tc.scratch {
			t.Errorf("scratch %q, want %q", got, tc.scratch)
		}
		if strings.Contains(ci.String(), tc.password) {
			t.Errorf("shown %q holds the password", ci.String())
		}
		back, err := parseConnInfo(ci.full())
		if err != nil || back.password != tc.password {
			t.Errorf("round trip of %q: password %q, %v; want %q", ci.full(), back.password, err, tc.password)
		}
	}
	if _, err := parseConnInfo("postgres://u:hunter2@h:notaport/x"); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("got %v, want an error without the password", err)
	}
}

func TestVersions(t *testing.T) {
	for out, want := range map[string]string{
		"pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)\n": "15.20 major 15",
		"pg_dump (PostgreSQL) 9.6.24":                           "9.6.24 major 9.6",
		"pg_restore (PostgreSQL) 17beta1":                       "17.0 major 17",
	} {
		v, err := parseToolVersion(out)
		if err != nil {
			t.Errorf("parseToolVersion(%q): %v", out, err)
			continue
		}
		if got := v.String() + " major " + v.major().majorString(); got != want {
			t.Errorf("parseToolVersion(%q) = %s, want %s", out, got, want)
		}
	}
	if err := checkPgDump(150020, 160004); err == nil || err.Error() != "pg_dump 15 cannot dump a PostgreSQL 16 server: install postgresql-client-16 or set CEPJOBS_PG_DUMP" {
		t.Errorf("got %v", err)
	}
	if err := checkPgDump(160000, 150020); err != nil {
		t.Errorf("newer pg_dump refused: %v", err)
	}
	if err := checkPgRestore(150020, 160004); err == nil || !strings.Contains(err.Error(), "postgresql-client-16 or set CEPJOBS_PG_RESTORE") {
		t.Errorf("got %v", err)
	}
}

func TestParseKey(t *testing.T) {
	at := time.Date(2026, 11, 28, 3, 0, 0, 0, time.UTC)
	k := dumpKey("shop", at)
	if k != "postgres/shop/2026/11/28/shop-20261128T030000Z.dump" {
		t.Fatalf("dumpKey = %s", k)
	}
	for key, want := range map[string]keyKind{
		k:              kindDump,
		manifestKey(k): kindManifest,
		"postgres/shop/.incomplete/shop-20261128T030000Z-0123abcd.dump": kindIncomplete,
		dumpKey("shop2", at):                kindOther,
		"postgres/shop/x.txt":               kindOther,
		"postgres/shop/" + k[14:30]:         kindOther,
		strings.Replace(k, "28/", "27/", 1): kindOther,
	} {
		kind, tm := parseKey("shop", key)
		if kind != want || (kind != kindOther && !tm.Equal(at)) {
			t.Errorf("parseKey(%s) = %v %v, want %v %v", key, kind, tm, want, at)
		}
	}
	if got := keyDB("we/ird db"); got != "we_ird_db" {
		t.Errorf("keyDB = %s", got)
	}
}

// bufferedCommand uses stdbuf only when it runs the tool and the tool
// answers with the version it gave on its own.
func TestBufferedCommand(t *testing.T) {
	dir := t.TempDir()
	tool := filepath.Join(dir, "pg_dump")
	if err := os.WriteFile(tool, []byte("#!/bin/sh\necho 'pg_dump (PostgreSQL) 15.20'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	stdbuf, err := exec.LookPath("stdbuf")
	if err != nil {
		t.Fatalf("stdbuf not found (coreutils): %v", err)
	}
	if got := bufferedCommand(ctx, tool, 150020); !slices.Equal(got, []string{stdbuf, "-o", "1M"}) {
		t.Errorf("got %q, want stdbuf -o 1M", got)
	}
	if got := bufferedCommand(ctx, tool, 160004); got != nil {
		t.Errorf("another version under stdbuf: got %q, want nil", got)
	}
	noisy := filepath.Join(dir, "noisy")
	if err := os.WriteFile(noisy, []byte("#!/bin/sh\necho 'pg_dump (PostgreSQL) 15.20'\necho 'ERROR: ld.so: object cannot be preloaded: ignored.' >&2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := bufferedCommand(ctx, noisy, 150020); got != nil {
		t.Errorf("a warning on stderr under stdbuf: got %q, want nil", got)
	}
	if got := bufferedCommand(ctx, filepath.Join(dir, "missing"), 150020); got != nil {
		t.Errorf("a tool stdbuf cannot run: got %q, want nil", got)
	}
	t.Setenv("PATH", dir) // no stdbuf here
	if got := bufferedCommand(ctx, tool, 150020); got != nil {
		t.Errorf("no stdbuf on PATH: got %q, want nil", got)
	}
}
