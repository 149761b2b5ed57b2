package chaos_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cepcomunicacion/cepjobs/internal/testenv"
)

// proc is one fleet process. Its output goes to a file (a soak writes more
// than a test should hold in memory), whose tail is printed if the test
// fails.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	metrics string // base URL of its /metrics, "" if none
	started time.Time
	done    chan struct{}
	err     error
}

func startProc(t *testing.T, dir, name, bin string, env []string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, fmt.Sprintf("%s-%d.log", name, time.Now().UnixNano()))
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, cmd: exec.Command(bin), logPath: logPath, done: make(chan struct{}), started: time.Now()}
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s output (tail):\n%s", name, p.tail(6000))
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// term sends SIGTERM and waits up to timeout for the exit; it returns the
// exit error and whether the process exited in time.
func (p *proc) term(timeout time.Duration) (error, bool) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err, true
	case <-time.After(timeout):
		return nil, false
	}
}

func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func (p *proc) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// waitHTTP polls url until it answers 200.
func (p *proc) waitHTTP(t *testing.T, url string, timeout time.Duration) {
	t.Helper()
	exited := func() (bool, error) {
		if p.exited() {
			return true, p.err // set before done closed
		}
		return false, nil
	}
	testenv.WaitHTTP(t, p.name, url, timeout, exited, p.log)
}
