package redisconn

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cepcomunicacion/cepjobs/internal/gather"
)

// Auto-pipelining. Each asynq enqueue is one EVALSHA: one write and one
// read on each side of the connection, and on a virtual machine every
// write into a loopback socket also pays for waking the process at the
// other end. Under load that, not the script, is most of what an enqueue
// costs Redis and the intake. An AutoPipeline makes the commands that
// concurrent callers issue at the same moment travel as one pipeline:
// one write and one read for all of them, and Redis runs them back to back
// in one pass of its event loop (one AOF write for the lot).
//
// Nothing waits for a batch to fill. A sender takes the command in front of
// it and every other one already waiting, up to maxAutoBatch, and sends
// them; commands only gather while all senders are busy. A lone command is
// sent exactly as without the hook, with its caller's context.
//
// Each command keeps its own reply and error: one failing script does not
// fail the others. Only for clients that send no blocking commands (BLPOP
// and the like would hold up the pipeline); asynq's Client sends none.

// maxAutoBatch bounds the commands one pipeline carries.
const maxAutoBatch = 256

// AutoPipeline is a go-redis hook; see NewAutoPipeline.
type AutoPipeline struct {
	c       redis.UniversalClient
	senders int
	reqs    chan *autoCmd
	once    sync.Once
	stop    chan struct{}
	stopped sync.Once
	wg      sync.WaitGroup
}

// sending marks the context a sender sends under. go-redis runs its
// connection set-up commands (HELLO, CLIENT SETINFO) through the client's
// hooks with that context: they must go straight out, not wait in line for
// the sender that is dialling.
type sending struct{}

type autoCmd struct {
	ctx  context.Context
	cmd  redis.Cmder
	next redis.ProcessHook
	err  error
	done chan struct{}
}

// NewAutoPipeline adds auto-pipelining to c with the given number of
// concurrent senders (each holds one connection while it sends). Close
// stops it; commands issued after Close are sent one by one.
func NewAutoPipeline(c redis.UniversalClient, senders int) *AutoPipeline {
	a := &AutoPipeline{c: c, senders: max(senders, 1), reqs: make(chan *autoCmd), stop: make(chan struct{})}
	c.AddHook(a)
	return a
}

// Close stops the senders once the commands they hold are answered.
func (a *AutoPipeline) Close() {
	a.stopped.Do(func() { close(a.stop) })
	a.wg.Wait()
}

// DialHook implements redis.Hook.
func (a *AutoPipeline) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessPipelineHook implements redis.Hook: pipelines (ours included) go
// through unchanged.
func (a *AutoPipeline) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// ProcessHook implements redis.Hook: it hands the command to a sender and
// waits for its answer.
func (a *AutoPipeline) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if ctx.Value(sending{}) != nil {
			return next(ctx, cmd)
		}
		a.once.Do(func() {
			for range a.senders {
				a.wg.Go(a.run)
			}
		})
		q := &autoCmd{ctx: ctx, cmd: cmd, next: next, done: make(chan struct{})}
		select {
		case a.reqs <- q:
		case <-ctx.Done():
			return ctx.Err()
		case <-a.stop:
			return next(ctx, cmd)
		}
		// No early return on ctx: the sender writes the command's reply,
		// and go-redis sets the command's error after this returns. The
		// pipeline runs under the latest deadline of its callers (and the
		// client's read and write timeouts), so the wait is bounded.
		<-q.done
		return q.err
	}
}

func (a *AutoPipeline) run() {
	batch := make([]*autoCmd, 0, maxAutoBatch)
	for {
		var ok bool
		if batch, ok = gather.Next(a.reqs, a.stop, batch); !ok {
			return
		}
		a.send(batch)
		clear(batch)
	}
}

func (a *AutoPipeline) send(batch []*autoCmd) {
	live := make([]*autoCmd, 0, len(batch))
	var deadline time.Time
	unbounded := false
	for _, q := range batch {
		if err := q.ctx.Err(); err != nil {
			q.err = err
			close(q.done)
			continue
		}
		live = append(live, q)
		if d, ok := q.ctx.Deadline(); !ok {
			unbounded = true
		} else if d.After(deadline) {
			deadline = d
		}
	}
	switch len(live) {
	case 0:
		return
	case 1:
		q := live[0]
		q.err = q.next(context.WithValue(q.ctx, sending{}, true), q.cmd)
		close(q.done)
		return
	}
	ctx, cancel := context.WithValue(context.Background(), sending{}, true), context.CancelFunc(func() {})
	if !unbounded {
		ctx, cancel = context.WithDeadline(ctx, deadline)
	}
	defer cancel()
	pipe := a.c.Pipeline()
	for _, q := range live {
		// Reading a reply sets the command's error (nil on success); one
		// that still has errUnanswered afterwards got none. go-redis leaves
		// the commands' errors unset when its last attempt to get a
		// connection fails, so without the mark such a command would look
		// like a success.
		q.cmd.SetErr(errUnanswered)
		_ = pipe.Process(ctx, q.cmd) // only queues it
	}
	_, err := pipe.Exec(ctx)
	for _, q := range live {
		q.err = q.cmd.Err()
		if q.err == errUnanswered && err != nil && err != errUnanswered {
			q.err = err
		}
		close(q.done)
	}
}

// errUnanswered marks a pipelined command no reply has reached.
var errUnanswered = errors.New("redis: no reply to a pipelined command")
