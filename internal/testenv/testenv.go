// Package testenv gives each test package its own database on the real
// PostgreSQL and its own Redis DB index on the real Redis, and cleans both up.
// Tests never mock either.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// Redis DB indexes, one per test package, so packages tested in parallel
// never see each other's queues.
const (
	RedisDBOutbox      = 1
	RedisDBAPI         = 2
	RedisDBIntake      = 3
	RedisDBCLI         = 4
	RedisDBDoctor      = 5
	RedisDBDevenv      = 6
	RedisDBHandlers    = 7
	RedisDBSched       = 8
	RedisDBRateLim     = 9
	RedisDBWorkers     = 10
	RedisDBBackup      = 11
	RedisDBOutboxRelay = 12
	RedisDBLLM         = 13
	RedisDBCampaigns   = 14
	RedisDBMeta        = 15
)

// AdminURL is the server tests create their databases on.
func AdminURL() string {
	if v := os.Getenv("TEST_DATABASE_URL"); v != "" {
		return v
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// RedisAddr is the Redis server tests use.
func RedisAddr() string {
	if v := os.Getenv("TEST_REDIS_ADDR"); v != "" {
		return v
	}
	return "127.0.0.1:6379"
}

// CreateDatabase makes a fresh database named after prefix and returns its
// URL and a function that drops it. Meant for TestMain.
func CreateDatabase(ctx context.Context, prefix string) (string, func(), error) {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := fmt.Sprintf("cepjobs_test_%s_%s", prefix, hex.EncodeToString(b[:]))
	admin, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		return "", nil, fmt.Errorf("connect to test postgres %s: %w (is PostgreSQL running? see README)", redactURL(AdminURL()), err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "create database "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", nil, fmt.Errorf("create database %s: %w", name, err)
	}
	u, err := url.Parse(AdminURL())
	if err != nil {
		return "", nil, err
	}
	u.Path = "/" + name
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, AdminURL())
		if err != nil {
			fmt.Fprintf(os.Stderr, "testenv: drop %s: %v\n", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "drop database if exists "+pgx.Identifier{name}.Sanitize()+" with (force)"); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: drop %s: %v\n", name, err)
		}
	}
	return u.String(), drop, nil
}

// RedisURL returns the URL of DB index db on the test Redis, flushed now and
// again when the test ends.
func RedisURL(t testing.TB, db int) string {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: RedisAddr(), DB: db})
	t.Cleanup(func() {
		_ = c.FlushDB(context.Background()).Err()
		_ = c.Close()
	})
	if err := c.FlushDB(context.Background()).Err(); err != nil {
		t.Fatalf("flush test redis %s db %d: %v (is Redis running? see README)", RedisAddr(), db, err)
	}
	return fmt.Sprintf("redis://%s/%d", RedisAddr(), db)
}

// sharedFlushed records the DB indexes SharedRedisURL has flushed.
var sharedFlushed sync.Map

// SharedRedisURL is RedisURL for tests that run in parallel on one DB
// index: the DB is flushed the first time a test of this process asks for
// it, never at a test's end (that flush would take the tasks of the tests
// still running). The package's TestMain empties it at the end with
// FlushRedisDB.
func SharedRedisURL(t testing.TB, db int) string {
	t.Helper()
	once, _ := sharedFlushed.LoadOrStore(db, &sync.Once{})
	var err error
	once.(*sync.Once).Do(func() { err = FlushRedisDB(db) })
	if err != nil {
		t.Fatalf("flush test redis %s db %d: %v (is Redis running? see README)", RedisAddr(), db, err)
	}
	return fmt.Sprintf("redis://%s/%d", RedisAddr(), db)
}

// FlushRedisDB empties DB index db of the test Redis.
func FlushRedisDB(db int) error {
	c := redis.NewClient(&redis.Options{Addr: RedisAddr(), DB: db})
	defer c.Close()
	return c.FlushDB(context.Background()).Err()
}

// FreePort returns a loopback port nothing listens on right now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Eventually polls cond until it holds or the timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable url)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return strings.TrimSpace(u.String())
}

// RunWithDatabase is a TestMain body: it creates a database named after
// prefix (migrated when migrate is non-nil), stores its URL in *url, runs the
// tests and drops the database. It returns the exit code.
func RunWithDatabase(m *testing.M, prefix string, url *string, migrate func(ctx context.Context, url string) error) int {
	ctx := context.Background()
	u, drop, err := CreateDatabase(ctx, prefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer drop()
	if migrate != nil {
		if err := migrate(ctx, u); err != nil {
			fmt.Fprintln(os.Stderr, "migrate test database:", err)
			return 1
		}
	}
	*url = u
	return m.Run()
}
