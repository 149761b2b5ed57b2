package devenv

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// The machine's own servers, running here and in CI.
const (
	machineRedisURL    = "redis://127.0.0.1:6379/0"
	machineDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
)

func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatalf("close listener: %v", err)
	}
	return addr
}

// stateDir returns a fresh state dir the postgres user can reach when the
// tests run as root: t.TempDir creates its directories 0700.
func stateDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatalf("chmod state dir: %v", err)
		}
	}
	return dir
}

func urlHost(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("parse %q: %v", rawURL, err)
	}
	return u.Host
}

func listening(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

func mustPingRedis(t *testing.T, rawURL string) {
	t.Helper()
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		t.Fatalf("parse redis url: %v", err)
	}
	client := redis.NewClient(opts)
	defer client.Close()
	if err := client.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("ping redis %s: %v", rawURL, err)
	}
}

// mustCurrentDatabase connects to rawURL and returns the database it lands in.
func mustCurrentDatabase(t *testing.T, rawURL string) string {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), rawURL)
	if err != nil {
		t.Fatalf("connect %s: %v", rawURL, err)
	}
	defer conn.Close(context.Background())
	var name string
	if err := conn.QueryRow(t.Context(), "SELECT current_database()").Scan(&name); err != nil {
		t.Fatalf("query current_database: %v", err)
	}
	return name
}

func mustClose(t *testing.T, env *Env) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := env.Close(ctx); err != nil {
		t.Errorf("close env: %v", err)
	}
}

func TestEnsureUsesConfiguredURLs(t *testing.T) {
	t.Parallel()
	env, err := Ensure(t.Context(), Params{
		Dir:         stateDir(t),
		RedisURL:    machineRedisURL,
		DatabaseURL: machineDatabaseURL,
		Logger:      testLogger(t),
	})
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	defer mustClose(t, env)

	if env.RedisURL != machineRedisURL || env.RedisOrigin != "REDIS_URL" {
		t.Errorf("redis: got %q from %q, want %q from REDIS_URL", env.RedisURL, env.RedisOrigin, machineRedisURL)
	}
	if env.DatabaseURL != machineDatabaseURL || env.DatabaseOrigin != "DATABASE_URL" {
		t.Errorf("postgres: got %q from %q, want %q from DATABASE_URL", env.DatabaseURL, env.DatabaseOrigin, machineDatabaseURL)
	}
}

func TestEnsureUsesLocalServers(t *testing.T) {
	t.Parallel()
	env, err := Ensure(t.Context(), Params{Dir: stateDir(t), Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	defer mustClose(t, env)

	if want := "redis://127.0.0.1:6379/0"; env.RedisURL != want {
		t.Errorf("redis url: got %q, want %q", env.RedisURL, want)
	}
	if want := "local server on 127.0.0.1:6379"; env.RedisOrigin != want {
		t.Errorf("redis origin: got %q, want %q", env.RedisOrigin, want)
	}
	if want := "postgres://postgres@127.0.0.1:5432/cepjobs_dev?sslmode=disable"; env.DatabaseURL != want {
		t.Errorf("database url: got %q, want %q", env.DatabaseURL, want)
	}
	if want := "local server on 127.0.0.1:5432"; env.DatabaseOrigin != want {
		t.Errorf("database origin: got %q, want %q", env.DatabaseOrigin, want)
	}
	if got := mustCurrentDatabase(t, env.DatabaseURL); got != "cepjobs_dev" {
		t.Errorf("current database: got %q, want cepjobs_dev", got)
	}
}

func TestEnsureRejectsUnansweringURL(t *testing.T) {
	t.Parallel()
	const password = "s3cretPW"
	addr := closedAddr(t)
	tests := []struct {
		name   string
		params Params
		envVar string
	}{
		{
			name:   "redis",
			params: Params{RedisURL: "redis://user:" + password + "@" + addr + "/0"},
			envVar: "REDIS_URL",
		},
		{
			name: "postgres",
			params: Params{
				RedisURL:    machineRedisURL,
				DatabaseURL: "postgres://postgres:" + password + "@" + addr + "/postgres?sslmode=disable",
			},
			envVar: "DATABASE_URL",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := tt.params
			p.Dir = stateDir(t)
			p.Logger = testLogger(t)
			env, err := Ensure(t.Context(), p)
			if err == nil {
				mustClose(t, env)
				t.Fatalf("Ensure: got no error, want one naming %s", tt.envVar)
			}
			msg := err.Error()
			t.Logf("error: %s", msg)
			if !strings.HasPrefix(msg, tt.envVar+" ") || !strings.Contains(msg, "does not answer") {
				t.Errorf("error: got %q, want it to start with %q and say it does not answer", msg, tt.envVar)
			}
			if strings.Contains(msg, password) {
				t.Errorf("error: got %q, want the password redacted", msg)
			}
			if !strings.Contains(msg, addr) {
				t.Errorf("error: got %q, want it to name %s", msg, addr)
			}
		})
	}
}

func TestEnsureStartsPrivateServers(t *testing.T) {
	t.Parallel()
	dir := stateDir(t)
	nowhere := localServers{redisAddr: closedAddr(t), postgresAddr: closedAddr(t)}
	p := Params{Dir: dir, Logger: testLogger(t)}

	start := time.Now()
	first, err := ensure(t.Context(), p, nowhere)
	if err != nil {
		t.Fatalf("ensure: %v", err)
	}
	t.Cleanup(func() { mustClose(t, first) })
	t.Logf("first start (with initdb) took %v", time.Since(start))

	for _, origin := range []string{first.RedisOrigin, first.DatabaseOrigin} {
		if !strings.HasPrefix(origin, "private server under "+dir) {
			t.Errorf("origin: got %q, want a private server under %s", origin, dir)
		}
	}
	mustPingRedis(t, first.RedisURL)
	if got := mustCurrentDatabase(t, first.DatabaseURL); got != "cepjobs_dev" {
		t.Errorf("current database: got %q, want cepjobs_dev", got)
	}

	// A second session on the same dir reuses the cluster, and takes over
	// the data dir from a server that was never closed (as after a crash).
	start = time.Now()
	second, err := ensure(t.Context(), p, nowhere)
	if err != nil {
		t.Fatalf("second ensure: %v", err)
	}
	t.Cleanup(func() { mustClose(t, second) })
	t.Logf("second start (existing cluster) took %v", time.Since(start))
	if addr := urlHost(t, first.DatabaseURL); listening(addr) {
		t.Errorf("leftover postgres on %s: still listening, want it stopped", addr)
	}
	if got := mustCurrentDatabase(t, second.DatabaseURL); got != "cepjobs_dev" {
		t.Errorf("current database: got %q, want cepjobs_dev", got)
	}

	// Closing the first session must stop only what it still owns.
	mustClose(t, first)
	if addr := urlHost(t, first.RedisURL); listening(addr) {
		t.Errorf("first redis on %s: still listening after Close", addr)
	}
	mustPingRedis(t, second.RedisURL)
	mustCurrentDatabase(t, second.DatabaseURL)

	start = time.Now()
	mustClose(t, second)
	t.Logf("close took %v", time.Since(start))
	for _, u := range []string{second.RedisURL, second.DatabaseURL} {
		if addr := urlHost(t, u); listening(addr) {
			t.Errorf("%s: still listening after Close", addr)
		}
	}
}

// If Postgres cannot start after a private Redis did, Ensure must not leave
// that Redis running with no Env to close it.
func TestEnsureStopsRedisWhenPostgresFails(t *testing.T) {
	t.Parallel()
	dir := stateDir(t)
	// A file where the postgres dir should be makes the start fail fast.
	if err := os.WriteFile(filepath.Join(dir, "postgres"), nil, 0o644); err != nil {
		t.Fatalf("write blocker: %v", err)
	}
	nowhere := localServers{redisAddr: closedAddr(t), postgresAddr: closedAddr(t)}
	env, err := ensure(t.Context(), Params{Dir: dir, Logger: testLogger(t)}, nowhere)
	if err == nil {
		mustClose(t, env)
		t.Fatal("ensure: got no error, want the postgres start to fail")
	}
	t.Logf("error: %v", err)

	log, err := os.ReadFile(filepath.Join(dir, "redis", "redis.log"))
	if err != nil {
		t.Fatalf("read redis log: %v", err)
	}
	m := regexp.MustCompile(`port=(\d+)`).FindSubmatch(log)
	if m == nil {
		t.Fatalf("redis log: got no port=N line, want one:\n%s", log)
	}
	if addr := "127.0.0.1:" + string(m[1]); listening(addr) {
		t.Errorf("private redis on %s: still listening, want it stopped", addr)
	}
}

// A state dir too deep for a Unix socket path gets its socket under
// os.TempDir instead, and that directory goes away with the server.
func TestPrivatePostgresLongDir(t *testing.T) {
	t.Parallel()
	dir := stateDir(t)
	for len(dir) < maxSocketPath {
		dir = filepath.Join(dir, "deep-enough-to-overflow-sun-path")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatalf("mkdir: %v", err)
		}
	}
	pg, err := startPostgres(t.Context(), filepath.Join(dir, "postgres"), testLogger(t))
	if err != nil {
		t.Fatalf("startPostgres: %v", err)
	}
	t.Cleanup(func() { _ = pg.stop(context.Background()) })
	if pg.tempSocketDir == "" {
		t.Fatal("tempSocketDir: got none, want one for a long state dir")
	}
	socket := filepath.Join(pg.tempSocketDir, fmt.Sprintf(".s.PGSQL.%d", pg.port))
	if _, err := os.Stat(socket); err != nil {
		t.Errorf("socket: %v", err)
	}
	if got := mustCurrentDatabase(t, devDatabaseURL(pg.addr())); got != "cepjobs_dev" {
		t.Errorf("current database: got %q, want cepjobs_dev", got)
	}
	if err := pg.stop(t.Context()); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := os.Stat(pg.tempSocketDir); !os.IsNotExist(err) {
		t.Errorf("socket dir after stop: got %v, want it removed", err)
	}
}

// Not parallel: it changes PATH for the whole process.
func TestStartRedisExplainsMissingBinary(t *testing.T) {
	t.Setenv("PATH", "")
	_, err := startRedis(t.Context(), t.TempDir(), testLogger(t))
	if err == nil {
		t.Fatal("startRedis: got no error, want redis-server not found")
	}
	for _, want := range []string{"redis-server not found on PATH", "apt-get install redis-server", "brew install redis", "REDIS_URL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error: got %q, want it to mention %q", err, want)
		}
	}
}

func TestSocketPathFits(t *testing.T) {
	t.Parallel()
	if !socketPathFits("/tmp/x/.dev/postgres") {
		t.Error("short dir: got too long, want fits")
	}
	long := "/home/someone/" + strings.Repeat("d", 100) + "/.dev/postgres"
	if socketPathFits(long) {
		t.Errorf("%d-byte dir: got fits, want too long", len(long))
	}
}

func TestSortNewestFirst(t *testing.T) {
	t.Parallel()
	got := []string{
		"/usr/lib/postgresql/9.6/bin",
		"/usr/lib/postgresql/16/bin",
		"/opt/homebrew/opt/postgresql@17/bin",
		"/usr/lib/postgresql/10/bin",
	}
	sortNewestFirst(got)
	want := []string{
		"/opt/homebrew/opt/postgresql@17/bin",
		"/usr/lib/postgresql/16/bin",
		"/usr/lib/postgresql/10/bin",
		"/usr/lib/postgresql/9.6/bin",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("order: got %v, want %v", got, want)
	}
}
