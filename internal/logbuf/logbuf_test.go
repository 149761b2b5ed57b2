package logbuf_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cepcomunicacion/cepjobs/internal/logbuf"
)

// sink records what reaches the underlying writer, write by write.
type sink struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (s *sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	return s.buf.Write(p)
}

func (s *sink) get() (string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String(), s.writes
}

func TestLinesWaitAtMostFlushDelay(t *testing.T) {
	s := &sink{}
	w := logbuf.New(s)
	defer w.Close()
	start := time.Now()
	for i := range 3 {
		fmt.Fprintf(w, "line %d\n", i)
	}
	if got, n := s.get(); n != 0 || got != "" {
		t.Fatalf("written at once: %q in %d writes, want nothing yet", got, n)
	}
	for {
		got, n := s.get()
		if got != "" {
			if got != "line 0\nline 1\nline 2\n" || n != 1 {
				t.Fatalf("got %q in %d writes, want the three lines in one", got, n)
			}
			if d := time.Since(start); d < logbuf.FlushDelay/2 {
				t.Fatalf("flushed after %v, want about %v", d, logbuf.FlushDelay)
			}
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("never flushed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The timer re-arms for the next batch.
	fmt.Fprintln(w, "again")
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got, n := s.get(); strings.HasSuffix(got, "again\n") && n == 2 {
			break
		}
		if time.Now().After(deadline) {
			got, n := s.get()
			t.Fatalf("second batch never flushed: %q in %d writes", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFullBufferFlushes(t *testing.T) {
	s := &sink{}
	w := logbuf.New(s)
	defer w.Close()
	line := strings.Repeat("x", 1023) + "\n"
	for range logbuf.MaxBuffered / len(line) {
		_, _ = w.Write([]byte(line))
	}
	if got, n := s.get(); n != 1 || len(got) != logbuf.MaxBuffered {
		t.Fatalf("after %d bytes: %d bytes in %d writes, want them all in one", logbuf.MaxBuffered, len(got), n)
	}
}

func TestWarningsFlushAtOnce(t *testing.T) {
	s := &sink{}
	w := logbuf.New(s)
	defer w.Close()
	log := slog.New(logbuf.FlushOn(slog.NewJSONHandler(w, nil), w, slog.LevelWarn)).With("process", "test")
	log.Info("first")
	if got, _ := s.get(); got != "" {
		t.Fatalf("an info line went out at once: %q", got)
	}
	log.WithGroup("g").Warn("second", "k", 1)
	got, n := s.get()
	if n != 1 || !strings.Contains(got, `"msg":"first"`) || !strings.Contains(got, `"msg":"second"`) ||
		strings.Index(got, "first") > strings.Index(got, "second") || !strings.Contains(got, `"process":"test"`) {
		t.Fatalf("after a warning: %q in %d writes, want both lines, in order, in one write", got, n)
	}
}

func TestCloseFlushesAndConcurrentLinesStayWhole(t *testing.T) {
	s := &sink{}
	w := logbuf.New(s)
	var wg sync.WaitGroup
	for g := range 50 {
		wg.Go(func() {
			for i := range 200 {
				fmt.Fprintf(w, "g%d-%d %s\n", g, i, strings.Repeat("y", g))
			}
		})
	}
	wg.Wait()
	w.Close()
	got, n := s.get()
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) != 50*200 {
		t.Fatalf("%d lines after Close, want %d", len(lines), 50*200)
	}
	seen := map[string]bool{}
	for _, l := range lines {
		var g, i int
		var pad string
		if _, err := fmt.Sscanf(l, "g%d-%d %s", &g, &i, &pad); err != nil && g != 0 || len(pad) != g || seen[l] {
			t.Fatalf("line %q torn or repeated", l)
		}
		seen[l] = true
	}
	if n > 50*200/10 {
		t.Errorf("%d writes for %d lines: not batched", n, len(lines))
	}
	// After Close, writes go straight through.
	fmt.Fprintln(w, "late")
	if got, _ := s.get(); !strings.HasSuffix(got, "late\n") {
		t.Fatal("a line after Close was held")
	}
}
