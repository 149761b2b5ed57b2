package devenv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisStartTimeout bounds how long a private redis-server may take to
// answer PING; it normally needs a few milliseconds.
const redisStartTimeout = 10 * time.Second

// redisInstallHint tells the user how to get Redis when nothing is found.
const redisInstallHint = "install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis) " +
	"or run: docker compose up -d redis postgres, or set REDIS_URL"

// ensureRedis fills e.RedisURL from, in order, p.RedisURL, the local server
// at localAddr, or a private server under dir/redis.
func (e *Env) ensureRedis(ctx context.Context, p Params, dir, localAddr string) error {
	if p.RedisURL != "" {
		if err := pingRedis(ctx, p.RedisURL); err != nil {
			return fmt.Errorf("REDIS_URL %s does not answer: %w; unset it to use a local or private server",
				redact(p.RedisURL), scrubError(err, p.RedisURL))
		}
		e.RedisURL, e.RedisOrigin = p.RedisURL, "REDIS_URL"
		p.Logger.InfoContext(ctx, "using redis", "origin", e.RedisOrigin, "url", redact(e.RedisURL))
		return nil
	}

	localURL := "redis://" + localAddr + "/0"
	err := pingRedis(ctx, localURL)
	if err == nil {
		e.RedisURL, e.RedisOrigin = localURL, "local server on "+localAddr
		p.Logger.InfoContext(ctx, "using redis", "origin", e.RedisOrigin, "url", e.RedisURL)
		return nil
	}
	p.Logger.DebugContext(ctx, "no local redis", "addr", localAddr, "err", err)

	r, err := startRedis(ctx, filepath.Join(dir, "redis"), p.Logger)
	if err != nil {
		return err
	}
	e.redis = r
	e.RedisURL = r.url
	e.RedisOrigin = fmt.Sprintf("private server under %s on port %d", filepath.Join(p.Dir, "redis"), r.port)
	p.Logger.InfoContext(ctx, "using redis", "origin", e.RedisOrigin, "url", e.RedisURL)
	return nil
}

// pingRedis reports whether the server at rawURL answers PING.
func pingRedis(ctx context.Context, rawURL string) error {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return fmt.Errorf("parse redis url: %w", err)
	}
	opts.DialTimeout = redisProbeTimeout
	opts.ReadTimeout = redisProbeTimeout
	opts.WriteTimeout = redisProbeTimeout
	// A probe should fail fast; retries only delay the fallback.
	opts.MaxRetries = -1
	client := redis.NewClient(opts)
	defer client.Close()

	ctx, cancel := context.WithTimeout(ctx, redisProbeTimeout)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping redis: %w", err)
	}
	return nil
}

// privateRedis is a redis-server child process started by this package.
type privateRedis struct {
	cmd  *exec.Cmd
	port int
	url  string
	// done is closed once the process has exited and been reaped.
	done chan struct{}
}

// startRedis runs redis-server in the foreground as our child on a free
// port, with persistence off, and waits until it answers PING. Running it
// undaemonized keeps it in our process group, so Ctrl-C in the terminal
// stops it even if we die before Close.
func startRedis(ctx context.Context, dir string, logger *slog.Logger) (*privateRedis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found on PATH: %s", redisInstallHint)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create redis dir: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "redis.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open redis log: %w", err)
	}
	// Not CommandContext: the server must outlive Ensure's ctx.
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--daemonize", "no",
	)
	cmd.Dir = dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	startErr := cmd.Start()
	// The child holds its own copy of the descriptor.
	logFile.Close()
	if startErr != nil {
		return nil, fmt.Errorf("start redis-server: %w", startErr)
	}
	r := &privateRedis{
		cmd:  cmd,
		port: port,
		url:  fmt.Sprintf("redis://127.0.0.1:%d/0", port),
		done: make(chan struct{}),
	}
	go func() {
		// Reap the child so it never lingers as a zombie; stop waits on done.
		_ = cmd.Wait()
		close(r.done)
	}()
	logger.DebugContext(ctx, "started redis-server", "pid", cmd.Process.Pid, "port", port, "log", logPath)

	if err := r.waitReady(ctx, logPath); err != nil {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return nil, errors.Join(err, r.stop(stopCtx))
	}
	return r, nil
}

// waitReady polls PING until it answers, the process exits, or the start
// timeout passes.
func (r *privateRedis) waitReady(ctx context.Context, logPath string) error {
	ctx, cancel := context.WithTimeout(ctx, redisStartTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := pingRedis(ctx, r.url)
		if err == nil {
			return nil
		}
		select {
		case <-r.done:
			return fmt.Errorf("start redis-server: exited early (%s); log %s:\n%s",
				r.cmd.ProcessState, logPath, logTail(logPath))
		case <-ctx.Done():
			return fmt.Errorf("start redis-server: no answer on port %d: %w; log %s:\n%s",
				r.port, err, logPath, logTail(logPath))
		case <-tick.C:
		}
	}
}

// stop asks the server to exit without saving, and kills it if it has not
// exited when ctx is done or after a grace period. The data is throwaway, so
// killing loses nothing.
func (r *privateRedis) stop(ctx context.Context) error {
	select {
	case <-r.done:
		return nil
	default:
	}
	if ctx.Err() == nil {
		opts, err := redis.ParseURL(r.url)
		if err == nil {
			opts.MaxRetries = -1
			client := redis.NewClient(opts)
			shutCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
			// SHUTDOWN never replies on success: the connection just
			// closes, so its error says nothing useful.
			_ = client.ShutdownNoSave(shutCtx).Err()
			cancel()
			client.Close()
		}
	}

	grace := time.NewTimer(5 * time.Second)
	defer grace.Stop()
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
	case <-grace.C:
	}
	if err := r.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill redis-server: %w", err)
	}
	// SIGKILL cannot be ignored, so this wait is short.
	<-r.done
	return nil
}
