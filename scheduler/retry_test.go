package scheduler

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/cepcomunicacion/cepjobs/internal/redisconn"
	"github.com/cepcomunicacion/cepjobs/internal/testenv"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// flaky fails the first n enqueues with a transient error, then passes to
// the real client: Redis blipping at 03:00 must not cost the night's backup.
type flaky struct {
	next Enqueuer
	mu   sync.Mutex
	n    int
	seen int
}

var errBlip = errors.New("dial tcp: connection refused")

func (f *flaky) EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	f.mu.Lock()
	f.seen++
	fail := f.seen <= f.n
	f.mu.Unlock()
	if fail || f.next == nil {
		return nil, errBlip
	}
	return f.next.EnqueueContext(ctx, task, opts...)
}

func (f *flaky) attempts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen
}

func backupEntry() Entry {
	return Entry{Name: "backup", Spec: "0 3 * * *", TaskType: tasks.TypeBackupDatabase,
		Payload: func(time.Time) ([]byte, error) { return []byte(`{}`), nil }}
}

func newFast(t *testing.T, enq Enqueuer, grace time.Duration) *Scheduler {
	t.Helper()
	now := time.Date(2026, 11, 28, 3, 10, 0, 0, time.UTC)
	s, err := New(Params{Entries: []Entry{backupEntry()}, Enqueuer: enq, Now: func() time.Time { return now }, Grace: grace})
	if err != nil {
		t.Fatal(err)
	}
	s.retryMin, s.retryMax = 10*time.Millisecond, 40*time.Millisecond
	return s
}

func TestFailedEnqueueIsRetriedWithinGrace(t *testing.T) {
	opt, err := redisconn.Parse(testenv.RedisURL(t, testenv.RedisDBSched))
	if err != nil {
		t.Fatal(err)
	}
	client := asynq.NewClient(opt)
	t.Cleanup(func() { _ = client.Close() })
	in := asynq.NewInspector(opt)
	t.Cleanup(func() { _ = in.Close() })

	f := &flaky{next: client, n: 2}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- newFast(t, f, 6*time.Hour).Run(ctx) }()
	const id = "backup:database:2026-11-28T03:00:00Z"
	testenv.Eventually(t, 5*time.Second, "the backup slot after two failures", func() bool {
		_, err := in.GetTaskInfo(tasks.QueueBackup, id)
		return err == nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, want := f.attempts(), 3; got != want {
		t.Errorf("attempts: got %d, want %d", got, want)
	}
}

// Retries end at shutdown: a dead Redis must not hold the process.
func TestRetriesStopAtShutdown(t *testing.T) {
	t.Parallel()
	f := &flaky{n: 1 << 30}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- newFast(t, f, 6*time.Hour).Run(ctx) }()
	testenv.Eventually(t, 5*time.Second, "three attempts", func() bool { return f.attempts() >= 3 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run still retrying 5s after cancel")
	}
}

// Without grace a failure is final: retrying would fire the slot late, which
// grace 0 forbids.
func TestNoRetryWithoutGrace(t *testing.T) {
	t.Parallel()
	f := &flaky{n: 1 << 30}
	s := newFast(t, f, 0)
	e := &s.entries[0]
	s.fire(t.Context(), e, time.Date(2026, 11, 28, 3, 0, 0, 0, time.UTC), false)
	if got := f.attempts(); got != 1 {
		t.Errorf("attempts: got %d, want 1", got)
	}
}
