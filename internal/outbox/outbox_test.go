package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cepcomunicacion/cepjobs/internal/outbox"
	"github.com/cepcomunicacion/cepjobs/internal/redisconn"
	"github.com/cepcomunicacion/cepjobs/internal/testenv"
	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

var dbURL string

func TestMain(m *testing.M) {
	os.Exit(testenv.RunWithDatabase(m, "outbox", &dbURL, func(ctx context.Context, url string) error {
		s, err := store.Open(ctx, store.Config{URL: url})
		if err != nil {
			return err
		}
		defer s.Close()
		_, err = s.Migrate(ctx)
		return err
	}))
}

// flaky wraps the real asynq client and fails while down is set.
type flaky struct {
	real *asynq.Client
	down atomic.Bool
	n    atomic.Int32
}

func (f *flaky) EnqueueContext(ctx context.Context, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	f.n.Add(1)
	if f.down.Load() {
		return nil, errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")
	}
	return f.real.EnqueueContext(ctx, t, opts...)
}

func TestInlineFailureThenRelay(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	opt, _ := redisconn.Parse(testenv.RedisURL(t, testenv.RedisDBOutboxRelay))
	rc := redisconn.Client(opt)
	defer rc.Close()
	client := &flaky{real: asynq.NewClientFromRedisClient(rc)}
	inspector := asynq.NewInspectorFromRedisClient(rc)

	now := time.Now()
	clock := func() time.Time { return now }
	d := outbox.NewDispatcher(st, client, slog.New(slog.NewTextHandler(io.Discard, nil)), outbox.NewMetrics(prometheus.NewRegistry()), clock)
	var recovered atomic.Int32
	d.OnRecovery(func(context.Context) { recovered.Add(1) })
	relay := outbox.NewRelay(d, time.Second, 10)

	queue := func() string {
		res, err := st.SubmitLead(ctx, store.NewLead{FirstName: "A", Email: time.Now().Format("150405.000000") + "@example.com", Course: "c", Source: "s",
			ConsentPrivacy: true, ConsentTextVersion: "v", SubmittedBy: "t"}, now, nil, tasks.TypeLeadProcess,
			func(id string) ([]byte, error) { return json.Marshal(tasks.LeadProcess{LeadID: id}) })
		if err != nil {
			t.Fatal(err)
		}
		return res.OutboxID
	}

	client.down.Store(true)
	first := queue()
	payload := []byte(`{"lead_id":"00000000-0000-4000-8000-000000000000"}`)
	d.Now(ctx, first, tasks.TypeLeadProcess, payload)
	calls := client.n.Load()
	second := queue()
	d.Now(ctx, second, tasks.TypeLeadProcess, payload)
	if client.n.Load() != calls {
		t.Error("a request right after a failed enqueue tried Redis again instead of leaving the row to the relay")
	}
	if sent, err := relay.Once(ctx); err != nil || sent != 0 {
		t.Errorf("relay with redis down: sent %d, %v", sent, err)
	}
	if n, _, _ := st.OutboxBacklog(ctx, now); n != 2 {
		t.Errorf("backlog with redis down: got %d, want 2", n)
	}

	client.down.Store(false)
	now = now.Add(time.Minute) // past every backoff
	if sent, err := relay.Once(ctx); err != nil || sent != 2 {
		t.Fatalf("relay with redis back: sent %d, %v", sent, err)
	}
	if n, _, _ := st.OutboxBacklog(ctx, now); n != 0 {
		t.Errorf("backlog after the relay: got %d, want 0", n)
	}
	for _, id := range []string{first, second} {
		if _, err := inspector.GetTaskInfo(tasks.QueueCritical, id); err != nil {
			t.Errorf("task %s not in Redis: %v", id, err)
		}
	}
	if recovered.Load() != 1 {
		t.Errorf("recovery hook: called %d times, want once", recovered.Load())
	}
	// Sending a row again (a crash between enqueue and mark) is a TaskID
	// conflict, which counts as sent.
	d.Now(ctx, first, tasks.TypeLeadProcess, payload)
	if q, _ := inspector.GetQueueInfo(tasks.QueueCritical); q.Pending != 2 {
		t.Errorf("pending after a re-send: got %d, want 2", q.Pending)
	}
}

func TestAnnounceQueues(t *testing.T) {
	opt, _ := redisconn.Parse(testenv.RedisURL(t, testenv.RedisDBOutboxRelay))
	rc := redisconn.Client(opt)
	defer rc.Close()
	if err := outbox.AnnounceQueues(context.Background(), rc); err != nil {
		t.Fatal(err)
	}
	qs, err := asynq.NewInspectorFromRedisClient(rc).Queues()
	if err != nil || len(qs) != len(tasks.Queues) {
		t.Errorf("queues after announcing: got %v (%v), want %v", qs, err, tasks.Queues)
	}
}
