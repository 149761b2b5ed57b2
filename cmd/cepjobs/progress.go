package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/cepcomunicacion/cepjobs/internal/backup"
)

// How often the progress display writes. On a terminal one line is redrawn
// in place, so a few times a second reads as live; elsewhere (a CI log, a
// deploy script's output) every write is a new line, so only step changes
// and a heartbeat during a long step are worth one.
const (
	ttyRedrawEvery   = 200 * time.Millisecond
	plainHeartbeatAt = 10 * time.Second
)

// progressPrinter shows backup.Progress reports on w (stderr). Times come
// from the reports themselves (Progress.Elapsed), not the wall clock, so
// throttling is the same in tests as in use.
type progressPrinter struct {
	mu  sync.Mutex
	w   io.Writer
	tty bool

	step      string
	stepStart time.Duration // Elapsed when step began, for the rate
	last      time.Duration // Elapsed of the last write
	drawn     int           // tty: width of the line on screen, 0 if none
}

// newProgressPrinter draws on w, in place if w is a terminal.
func newProgressPrinter(w io.Writer) *progressPrinter {
	return &progressPrinter{w: w, tty: isTerminal(w)}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Report is a backup progress callback.
func (p *progressPrinter) Report(pr backup.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	changed := pr.Step != p.step
	if changed {
		p.step, p.stepStart = pr.Step, pr.Elapsed
	}
	every := plainHeartbeatAt
	if p.tty {
		every = ttyRedrawEvery
	}
	if !changed && pr.Elapsed-p.last < every {
		return
	}
	p.last = pr.Elapsed
	line := formatProgress(pr, pr.Elapsed-p.stepStart)
	if !p.tty {
		fmt.Fprintln(p.w, line)
		return
	}
	// Pad over the rest of a longer previous line rather than send an
	// escape sequence: a dumb terminal would print it literally.
	pad := max(p.drawn-len(line), 0)
	fmt.Fprint(p.w, "\r"+line+strings.Repeat(" ", pad))
	p.drawn = len(line)
}

// Done ends the line being redrawn, so what follows starts on its own.
func (p *progressPrinter) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn > 0 {
		fmt.Fprintln(p.w)
		p.drawn = 0
	}
}

// Write lets a logger share the display: on a terminal it blanks the line
// being redrawn first, and the next report draws it again below.
func (p *progressPrinter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn > 0 {
		fmt.Fprint(p.w, "\r"+strings.Repeat(" ", p.drawn)+"\r")
		p.drawn = 0
		p.last = 0
	}
	return p.w.Write(b)
}

// formatProgress is "dump 123.4 MiB  45.6 MiB/s  00:12": the step, the
// bytes it has streamed and their rate over stepElapsed, and the time since
// the operation began. Steps that stream nothing show the step and time.
func formatProgress(pr backup.Progress, stepElapsed time.Duration) string {
	if pr.Bytes <= 0 {
		return fmt.Sprintf("%s  %s", pr.Step, formatClock(pr.Elapsed))
	}
	rate := "-"
	if stepElapsed > 0 {
		rate = humanBytes(int64(float64(pr.Bytes)/stepElapsed.Seconds())) + "/s"
	}
	return fmt.Sprintf("%s %s  %s  %s", pr.Step, humanBytes(pr.Bytes), rate, formatClock(pr.Elapsed))
}

// formatClock is mm:ss, or h:mm:ss from an hour on.
func formatClock(d time.Duration) string {
	s := int64(max(d, 0) / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%02d:%02d", s/60, s%60)
}

// humanBytes is a size in binary units with one decimal: 512 B, 1.2 MiB.
func humanBytes(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB"}
	v, i := float64(n)/1024, 0
	// 1023.95 would print as "1024.0 KiB": move up a unit first.
	for v >= 1023.95 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

// humanAge is how long ago something was, coarser as it gets older: 45s,
// 12m, 3h12m, 2d.
func humanAge(d time.Duration) string {
	d = max(d, 0)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d/time.Hour), int(d/time.Minute)%60)
	default:
		return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
	}
}
