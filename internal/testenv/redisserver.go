package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisServer is a private redis-server on a free loopback port, for tests
// that stop, kill or restart Redis (the shared one on 6379 is never touched).
// With AOF it persists to its own temporary directory as production does
// (appendonly yes, appendfsync everysec), so a restart reloads what the AOF
// holds.
type RedisServer struct {
	Port int
	Dir  string
	AOF  bool

	t    testing.TB
	cmd  *exec.Cmd
	done chan struct{}
	logs *SyncBuffer
}

// StartRedisServer starts a private redis-server that is stopped when the
// test ends.
func StartRedisServer(t testing.TB, aof bool) *RedisServer {
	t.Helper()
	r := &RedisServer{Port: FreePort(t), Dir: t.TempDir(), AOF: aof, t: t}
	r.Start()
	t.Cleanup(func() {
		r.Kill()
		if t.Failed() {
			t.Logf("redis-server :%d output:\n%s", r.Port, tail(r.logs.String(), 4000))
		}
	})
	return r
}

// URL is the server's DB 0.
func (r *RedisServer) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.Port) }

// Addr is host:port.
func (r *RedisServer) Addr() string { return fmt.Sprintf("127.0.0.1:%d", r.Port) }

// Start (re)starts the server on its port and directory and waits until it
// answers PING (with AOF: until it has loaded the AOF).
func (r *RedisServer) Start() {
	r.t.Helper()
	args := []string{"--port", fmt.Sprint(r.Port), "--bind", "127.0.0.1", "--dir", r.Dir, "--save", "",
		"--daemonize", "no", "--maxmemory-policy", "noeviction"}
	if r.AOF {
		args = append(args, "--appendonly", "yes", "--appendfsync", "everysec", "--aof-load-truncated", "yes")
	} else {
		args = append(args, "--appendonly", "no")
	}
	cmd := exec.Command("redis-server", args...)
	r.logs = &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = r.logs, r.logs
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server (install redis-server): %v", err)
	}
	r.cmd, r.done = cmd, make(chan struct{})
	done := r.done
	go func() { _ = cmd.Wait(); close(done) }()
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := c.Ping(context.Background()).Err()
		if err == nil {
			return
		}
		select {
		case <-done:
			r.t.Fatalf("redis-server :%d exited at start: %s", r.Port, r.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server :%d does not answer: %v", r.Port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Running reports whether the server process is alive.
func (r *RedisServer) Running() bool {
	if r.done == nil {
		return false
	}
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// Stop shuts the server down as an operator would (SIGTERM: with AOF, the
// file is flushed and fsynced before exit) and waits for it to exit.
func (r *RedisServer) Stop() { r.signal(syscall.SIGTERM) }

// Kill ends the server with SIGKILL: what the kernel had of the AOF stays,
// nothing else is flushed.
func (r *RedisServer) Kill() { r.signal(syscall.SIGKILL) }

func (r *RedisServer) signal(sig syscall.Signal) {
	if !r.Running() {
		return
	}
	_ = r.cmd.Process.Signal(sig)
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
}

// AOFIncrement returns the path of the AOF file Redis appends to (Redis 7
// keeps a manifest, a base file and incremental files under appendonlydir;
// older versions one appendonly.aof).
func (r *RedisServer) AOFIncrement() (string, error) {
	m, _ := filepath.Glob(filepath.Join(r.Dir, "appendonlydir", "*.incr.aof"))
	if len(m) > 0 {
		// The highest sequence number is the one being written.
		newest, newestMod := m[0], time.Time{}
		for _, p := range m {
			if fi, err := os.Stat(p); err == nil && fi.ModTime().After(newestMod) {
				newest, newestMod = p, fi.ModTime()
			}
		}
		return newest, nil
	}
	p := filepath.Join(r.Dir, "appendonly.aof")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no AOF under %s: %w", r.Dir, err)
	}
	return p, nil
}
