package testenv

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// BuildBinaries builds the named commands of this module (e.g. "intake",
// "worker-automation") with the race detector into dir and returns their
// paths by name. Meant for TestMain of end-to-end tests.
func BuildBinaries(dir string, names ...string) (map[string]string, error) {
	return BuildBinariesRace(dir, true, names...)
}

// BuildBinariesRace is BuildBinaries with the race detector only if race
// is set: tests that measure timings or memory build without it.
func BuildBinariesRace(dir string, race bool, names ...string) (map[string]string, error) {
	out := map[string]string{}
	for _, n := range names {
		path := filepath.Join(dir, n)
		args := []string{"build", "-o", path}
		if race {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "github.com/cepcomunicacion/cepjobs/cmd/"+n)...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("build %s: %w", n, err)
		}
		out[n] = path
	}
	return out, nil
}

// Main is a TestMain body for tests that need a scratch directory: setup
// prepares what the tests use in dir, then m runs, then cleanup (when not
// nil, even after a setup error) and the removal of dir; it exits the
// process with the tests' code, or 1 after printing a setup error.
func Main(m *testing.M, prefix string, setup func(dir string) (cleanup func(), err error)) {
	os.Exit(runMain(m, prefix, setup))
}

func runMain(m *testing.M, prefix string, setup func(dir string) (func(), error)) int {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	cleanup, err := setup(dir)
	if cleanup != nil {
		defer cleanup()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// SyncBuffer is a bytes.Buffer safe for a process's output and a test
// reading it at once.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Proc is a process a test started.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	Logs *SyncBuffer
	done chan struct{}
	err  error
}

// StartProc starts bin with exactly env (plus PATH), kills it when the test
// ends, and prints its output if the test failed.
func StartProc(t testing.TB, name, bin string, env []string) *Proc {
	t.Helper()
	p := &Proc{Name: name, Cmd: exec.Command(bin), Logs: &SyncBuffer{}, done: make(chan struct{})}
	p.Cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	p.Cmd.Stdout, p.Cmd.Stderr = p.Logs, p.Logs
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.Cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.Cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s output:\n%s", name, tail(p.Logs.String(), 20000))
		}
	})
	return p
}

// Exited returns the exit error once the process has ended.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Wait waits up to timeout for the process to end.
func (p *Proc) Wait(timeout time.Duration) (error, bool) {
	select {
	case <-p.done:
		return p.err, true
	case <-time.After(timeout):
		return nil, false
	}
}

// WaitHTTP polls url until it answers 200, failing the test if the process
// exits or the timeout passes first.
func (p *Proc) WaitHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	WaitHTTP(t, p.Name, url, timeout, p.Exited, p.Logs.String)
}

// WaitHTTP polls url until it answers 200, failing the test if the process
// called name exits first (exited reports that, with its exit error) or the
// timeout passes; either failure shows the tail of logs.
func WaitHTTP(t testing.TB, name, url string, timeout time.Duration, exited func() (bool, error), logs func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if done, err := exited(); done {
			t.Fatalf("%s exited before answering %s: %v\n%s", name, url, err, tail(logs(), 5000))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer %s within %s\n%s", name, url, timeout, tail(logs(), 5000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
