package doctor_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cepcomunicacion/cepjobs/internal/config"
	"github.com/cepcomunicacion/cepjobs/internal/doctor"
	"github.com/cepcomunicacion/cepjobs/internal/testenv"
	"github.com/cepcomunicacion/cepjobs/store"
)

var dbURL string

func TestMain(m *testing.M) {
	os.Exit(testenv.RunWithDatabase(m, "doctor", &dbURL, nil))
}

func load(t *testing.T, env ...string) config.Config {
	t.Helper()
	c, err := config.Load(env)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func find(r doctor.Report, name string) doctor.Check {
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	return doctor.Check{}
}

// privateRedis starts a redis-server with the given extra arguments.
func privateRedis(t *testing.T, args ...string) string {
	t.Helper()
	port := testenv.FreePort(t)
	cmd := exec.Command("redis-server", append([]string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--daemonize", "no"}, args...)...)
	cmd.Dir = t.TempDir()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	testenv.Eventually(t, 10*time.Second, "private redis", func() bool {
		r := doctor.Run(context.Background(), doctor.Params{Config: load(t, "REDIS_URL="+url, "DATABASE_URL="+dbURL)})
		return find(r, "redis").Status == doctor.OK
	})
	return url
}

func TestDoctorFailsOnEvictingRedis(t *testing.T) {
	url := privateRedis(t, "--maxmemory-policy", "allkeys-lru", "--appendonly", "no")
	r := doctor.Run(context.Background(), doctor.Params{Config: load(t, "REDIS_URL="+url, "DATABASE_URL="+dbURL)})
	c := find(r, "redis eviction policy")
	if c.Status != doctor.Fail || !strings.Contains(c.Detail, "allkeys-lru") || !strings.Contains(c.Detail, "silently") {
		t.Errorf("allkeys-lru: got %+v, want a failure that says tasks can be silently dropped", c)
	}
	if !r.Failed() {
		t.Error("report with an evicting Redis: Failed() = false")
	}
	if c := find(r, "redis persistence"); c.Status != doctor.Warn {
		t.Errorf("AOF off: got %+v, want a warning", c)
	}
}

func TestDoctorPassesOnSafeSetup(t *testing.T) {
	url := privateRedis(t, "--maxmemory-policy", "noeviction", "--appendonly", "yes", "--appendfsync", "everysec")
	s, err := store.Open(context.Background(), store.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	cfg := load(t, "REDIS_URL="+url, "DATABASE_URL="+dbURL)
	r := doctor.Run(context.Background(), doctor.Params{Config: cfg, Environ: []string{"MAILCHIMP_API_KEY=x", "META_PIXEL_ID=1"}})
	if c := find(r, "postgres schema"); c.Status != doctor.Fail || !strings.Contains(c.Detail, "cepjobs migrate") {
		t.Errorf("unmigrated database: got %+v, want a failure naming cepjobs migrate", c)
	}
	if _, err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	r = doctor.Run(context.Background(), doctor.Params{Config: cfg, Environ: []string{"MAILCHIMP_API_KEY=x", "META_PIXEL_ID=1"}})
	var out bytes.Buffer
	r.Print(&out)
	if r.Failed() {
		t.Fatalf("safe setup failed:\n%s", out.String())
	}
	for _, want := range []string{"AOF on", "noeviction", "schema cepjobs at version", "mailchimp: partly configured, missing MAILCHIMP_LIST_ID", "openai: not configured"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestDoctorReportsUnreachableServersAndMissingPgDump(t *testing.T) {
	closed := testenv.FreePort(t)
	cfg := load(t, fmt.Sprintf("REDIS_URL=redis://:hunter2@127.0.0.1:%d/0", closed),
		fmt.Sprintf("DATABASE_URL=postgres://postgres:hunter2@127.0.0.1:%d/x?connect_timeout=2", closed))
	r := doctor.Run(context.Background(), doctor.Params{Config: cfg, PgDump: "pg_dump-does-not-exist"})
	var out bytes.Buffer
	r.Print(&out)
	for _, name := range []string{"redis", "postgres", "pg_dump"} {
		if c := find(r, name); c.Status != doctor.Fail {
			t.Errorf("%s: got %+v, want a failure", name, c)
		}
	}
	if strings.Contains(out.String(), "hunter2") {
		t.Errorf("report shows a password:\n%s", out.String())
	}
}

func TestDoctorRefusesOldPgDump(t *testing.T) {
	fake := t.TempDir() + "/pg_dump"
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := doctor.Run(context.Background(), doctor.Params{Config: load(t, "DATABASE_URL="+dbURL), PgDump: fake})
	c := find(r, "pg_dump")
	if c.Status != doctor.Fail || !strings.Contains(c.Detail, "older than the server") {
		t.Errorf("pg_dump 9.6 against a newer server: got %+v", c)
	}
}
