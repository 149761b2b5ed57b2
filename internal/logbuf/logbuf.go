// Package logbuf writes a process's log lines in batches. Each line used to
// be its own write(2) on stderr: at the intake's request rates, ~3 % of its
// CPU went to those writes (its profile under the intake benchmark). A
// Writer holds lines for at most FlushDelay or MaxBuffered bytes, whichever
// comes first; FlushOn makes a logger flush at once after a record at or
// above a level, so warnings and errors are never held back, and Close
// flushes what is left when the process ends. A process killed outright
// loses at most the last FlushDelay of lines below that level.
package logbuf

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

const (
	// FlushDelay bounds how long a line waits.
	FlushDelay = 100 * time.Millisecond
	// MaxBuffered bounds the bytes waiting: a write that reaches it flushes.
	MaxBuffered = 32 << 10
)

// Writer batches writes to an underlying writer. Safe for concurrent use.
type Writer struct {
	mu     sync.Mutex
	w      io.Writer
	buf    []byte
	timer  *time.Timer // pending while buf holds lines
	closed bool
}

// New returns a Writer in front of w.
func New(w io.Writer) *Writer { return &Writer{w: w} }

// Write queues p (slog writes one whole record per call); it never fails:
// an error of the underlying writer is the one a flush meets, and a log
// line has nowhere better to go.
func (b *Writer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return b.w.Write(p)
	}
	first := len(b.buf) == 0
	b.buf = append(b.buf, p...)
	switch {
	case len(b.buf) >= MaxBuffered:
		b.flushLocked()
	case first && b.timer == nil:
		b.timer = time.AfterFunc(FlushDelay, b.Flush)
	case first:
		b.timer.Reset(FlushDelay)
	}
	return len(p), nil
}

// Flush writes out what is waiting.
func (b *Writer) Flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
}

func (b *Writer) flushLocked() {
	if len(b.buf) > 0 {
		_, _ = b.w.Write(b.buf)
		if cap(b.buf) > 4*MaxBuffered {
			b.buf = nil // one huge line does not pin its buffer
		} else {
			b.buf = b.buf[:0]
		}
	}
	if b.timer != nil {
		b.timer.Stop()
	}
}

// Close flushes and makes later writes go straight through.
func (b *Writer) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	b.closed = true
}

// FlushOn wraps h so that a record at level or above is flushed out of w
// at once, with whatever waited before it.
func FlushOn(h slog.Handler, w *Writer, level slog.Level) slog.Handler {
	return flushHandler{Handler: h, w: w, level: level}
}

type flushHandler struct {
	slog.Handler
	w     *Writer
	level slog.Level
}

func (h flushHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= h.level {
		h.w.Flush()
	}
	return err
}

func (h flushHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return flushHandler{Handler: h.Handler.WithAttrs(as), w: h.w, level: h.level}
}

func (h flushHandler) WithGroup(name string) slog.Handler {
	return flushHandler{Handler: h.Handler.WithGroup(name), w: h.w, level: h.level}
}
