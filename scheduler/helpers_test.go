package scheduler_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/cepcomunicacion/cepjobs/internal/redisconn"
	"github.com/cepcomunicacion/cepjobs/internal/testenv"
	"github.com/cepcomunicacion/cepjobs/scheduler"
)

// bundle is what a Redis test needs: a flushed DB, a way to make one asynq
// client per simulated replica, and an inspector to read the queues.
type bundle struct {
	opt       asynq.RedisConnOpt
	inspector *asynq.Inspector
}

func setup(t *testing.T) bundle {
	t.Helper()
	opt, err := redisconn.Parse(testenv.RedisURL(t, testenv.RedisDBSched))
	if err != nil {
		t.Fatal(err)
	}
	in := asynq.NewInspector(opt)
	t.Cleanup(func() { _ = in.Close() })
	return bundle{opt: opt, inspector: in}
}

// replica returns a fresh client, as a separate process would have, wrapped
// to record what it tried.
func (b bundle) replica(t *testing.T) *recorder {
	t.Helper()
	c := asynq.NewClient(b.opt)
	t.Cleanup(func() { _ = c.Close() })
	return &recorder{next: c}
}

// pending lists the IDs and payloads waiting in queue; a queue asynq has
// never seen is empty.
func (b bundle) pending(t *testing.T, queue string) map[string]string {
	t.Helper()
	infos, err := b.inspector.ListPendingTasks(queue, asynq.PageSize(1000))
	if errors.Is(err, asynq.ErrQueueNotFound) {
		return map[string]string{}
	}
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, in := range infos {
		if _, dup := out[in.ID]; dup {
			t.Errorf("task id %s listed twice", in.ID)
		}
		out[in.ID] = string(in.Payload)
	}
	return out
}

// call is one enqueue attempt: the slot's TaskID and asynq's answer.
type call struct {
	id  string
	err error
}

// recorder wraps a real client (Redis still decides) and records each
// attempt, so a test can tell which replica won a slot and which was told
// "already enqueued".
type recorder struct {
	next  scheduler.Enqueuer
	mu    sync.Mutex
	calls []call
}

func (r *recorder) EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	info, err := r.next.EnqueueContext(ctx, task, opts...)
	// *asynq.Task does not expose its TaskID. Entries whose calls a test
	// inspects use the {"slot":…} payload, from which the ID follows.
	var p struct {
		Slot time.Time `json:"slot"`
	}
	_ = json.Unmarshal(task.Payload(), &p)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call{id: scheduler.SlotTaskID(task.Type(), p.Slot), err: err})
	return info, err
}

func (r *recorder) snapshot() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// slotPayload is the backup shape, {"slot":…}, used by test entries so the
// recorder can name the slot.
func slotPayload(slot time.Time) ([]byte, error) {
	return json.Marshal(map[string]time.Time{"slot": slot})
}

// start runs s until the test ends or stop is called; stop waits for Run to
// return and fails the test on an error.
func start(t *testing.T, s *scheduler.Scheduler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("run: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Error("run did not return within 15s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// catchUpPass runs s with an already cancelled ctx. Run always makes its
// catch-up pass and waits for the enqueues it started, so this is one
// deterministic catch-up with nothing to poll for; cron itself never fires.
func catchUpPass(t *testing.T, s *scheduler.Scheduler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Run(ctx); err != nil {
		t.Fatalf("run: %v", err)
	}
}

func fixed(rfc3339 string) func() time.Time {
	tm, err := time.Parse(time.RFC3339, rfc3339)
	if err != nil {
		panic(err)
	}
	return func() time.Time { return tm }
}

func mustNew(t *testing.T, p scheduler.Params) *scheduler.Scheduler {
	t.Helper()
	s, err := scheduler.New(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
