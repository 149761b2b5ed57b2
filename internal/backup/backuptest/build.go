package backuptest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// buildTimeout bounds the one-time build: about 5 minutes on 2 cores,
// mostly the AWS SDK.
const buildTimeout = 20 * time.Minute

// BinaryPath returns the cached versitygw binary, building it with `go
// install` from the module proxy if it is missing. The cache lives in
// os.UserCacheDir()/cepjobs/tools/versitygw@<version>/ (on Linux
// ~/.cache/cepjobs/tools/...), next to Go's own build cache, so it
// survives `go clean -testcache` and is shared by every checkout.
// TEST_VERSITYGW names a binary to use instead.
//
// Test binaries of several packages may call it at once; a lock file makes
// all but one wait for the build instead of repeating it.
func BinaryPath(ctx context.Context) (string, error) {
	if p := os.Getenv("TEST_VERSITYGW"); p != "" {
		return p, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find versitygw: %w", err)
	}
	dir := filepath.Join(cache, "cepjobs", "tools", "versitygw@"+VersitygwVersion)
	bin := filepath.Join(dir, "versitygw")
	if isFile(bin) {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("build versitygw: %w", err)
	}
	unlock, err := lock(filepath.Join(dir, ".lock"))
	if err != nil {
		return "", fmt.Errorf("build versitygw: %w", err)
	}
	defer unlock()
	if isFile(bin) {
		return bin, nil // built while we waited for the lock
	}
	return bin, build(ctx, dir, bin)
}

func build(ctx context.Context, dir, bin string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("build versitygw: %w (set TEST_S3_ENDPOINT to use an existing S3 server)", err)
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return fmt.Errorf("build versitygw: %w", err)
	}
	defer os.RemoveAll(tmp)
	pkg := "github.com/versity/versitygw/cmd/versitygw@" + VersitygwVersion
	fmt.Fprintf(os.Stderr, "backuptest: building %s into %s (first run only, about 5 minutes on 2 cores)\n", pkg, dir)
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "install", pkg)
	// Outside our module, with no workspace or -mod flag of ours leaking
	// into a build of someone else's module.
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOWORK=off", "GOFLAGS=")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w after %s", ctx.Err(), buildTimeout)
		}
		return fmt.Errorf("build versitygw: go install %s: %w: %s (it needs the Go module proxy; or set TEST_S3_ENDPOINT to an S3 server, or TEST_VERSITYGW to a binary)",
			pkg, err, lastBytes(out.Bytes(), 2000))
	}
	// Rename last, so a half-written binary is never taken for a cached one.
	if err := os.Rename(filepath.Join(tmp, "versitygw"), bin); err != nil {
		return fmt.Errorf("build versitygw: %w", err)
	}
	fmt.Fprintf(os.Stderr, "backuptest: built versitygw in %s\n", time.Since(start).Round(time.Second))
	return nil
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

func lastBytes(b []byte, n int) []byte {
	b = bytes.TrimSpace(b)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return b
}
