package backup

import (
	"context"
	"sync"
)

// Upload tuning. A dump streams through partBuffers buffers of partSize
// bytes: one fills from pg_dump's stdout while the others upload, so
// pg_dump only waits on the network when uploading falls more than
// partBuffers-1 parts behind (it never did on the 1 GB benchmark). The
// buffers are the whole memory cost of a backup (3 × 8 MiB = 24 MiB,
// shared by concurrent backups), whatever the database size. 8 MiB parts
// allow 10,000 × 8 MiB = 78 GiB per dump; S3 wants at least 5 MiB for
// every part but the last.
const (
	partSize    = 8 << 20
	partBuffers = 3
	maxParts    = 10000
)

// parts is the process's pool of part buffers.
var parts = &partPool{}

// partPool hands out the part buffers every backup in the process shares.
// The buffers live outside the Go heap where the platform allows it
// (allocArena): 24 MiB of live heap would let the garbage collector leave
// another 24 MiB of garbage before collecting, and would linger after the
// backup until the runtime returned it. When the last backup running
// returns them, their pages go back to the kernel, so an
// idle worker is back to its idle size.
type partPool struct {
	mu      sync.Mutex
	users   int
	release func()
	free    chan []byte
}

// enter registers a backup that will take buffers, allocating them on
// first use.
func (p *partPool) enter() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.free == nil {
		var arena []byte
		arena, p.release = allocArena(partBuffers * partSize)
		p.free = make(chan []byte, partBuffers)
		for i := range partBuffers {
			p.free <- arena[i*partSize : (i+1)*partSize : (i+1)*partSize]
		}
	}
	p.users++
}

// leave unregisters a backup that has returned every buffer it took.
func (p *partPool) leave() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.users--
	if p.users == 0 {
		p.release()
	}
}

// get waits for a free buffer.
func (p *partPool) get(ctx context.Context) ([]byte, error) {
	select {
	case b := <-p.free:
		return b, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// put returns a buffer taken with get.
func (p *partPool) put(b []byte) { p.free <- b[:cap(b)] }
