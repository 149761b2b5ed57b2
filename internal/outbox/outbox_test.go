package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
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

// A task that Redis refuses reaches it through the relay once Redis is
// back, whether it has an outbox row of its own (Now) or not (SendLead, a new
// lead's: the row is written on the refusal); a task Redis takes at once
// leaves no row behind for a lead.
func TestInlineFailureThenRelay(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	db, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	opt, _ := redisconn.Parse(testenv.RedisURL(t, testenv.RedisDBOutboxRelay))
	rc := redisconn.Client(opt)
	defer rc.Close()

	type pending struct {
		id, queue string
		payload   []byte
	}
	leadTask := func(t *testing.T, now time.Time) pending {
		res, err := st.SubmitLead(ctx, store.NewLead{FirstName: "A", Email: fmt.Sprintf("relay.%d@example.com", time.Now().UnixNano()), Course: "c", Source: "s",
			ConsentPrivacy: true, ConsentTextVersion: "v", SubmittedBy: "t"}, now, nil)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := json.Marshal(tasks.LeadProcess{LeadID: res.LeadID})
		return pending{res.LeadID, tasks.QueueCritical, p}
	}
	rowTask := func(t *testing.T, now time.Time) pending {
		p := []byte(`{"to_email":"a@example.com"}`)
		id, err := st.QueueTask(ctx, tasks.TypeEmailSend, p, now)
		if err != nil {
			t.Fatal(err)
		}
		return pending{id, tasks.QueueDefault, p}
	}
	rowCount := func(t *testing.T, id string) (n int) {
		t.Helper()
		if err := db.QueryRow(ctx, `select count(*) from cepjobs.outbox where id = $1`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	for _, tc := range []struct {
		name     string
		taskType string
		make     func(*testing.T, time.Time) pending
		send     func(d *outbox.Dispatcher) func(context.Context, string, string, []byte)
		// rows is how many outbox rows a task Redis took at once leaves.
		rows int
	}{
		{"lead (SendLead)", tasks.TypeLeadProcess, leadTask, func(d *outbox.Dispatcher) func(context.Context, string, string, []byte) {
			return func(ctx context.Context, id, _ string, _ []byte) { d.SendLead(ctx, id) }
		}, 0},
		{"outbox row (Now)", tasks.TypeEmailSend, rowTask, func(d *outbox.Dispatcher) func(context.Context, string, string, []byte) { return d.Now }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := rc.FlushDB(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			client := &flaky{real: asynq.NewClientFromRedisClient(rc)}
			inspector := asynq.NewInspectorFromRedisClient(rc)
			now := time.Now()
			clock := func() time.Time { return now }
			d := outbox.NewDispatcher(st, client, slog.New(slog.NewTextHandler(io.Discard, nil)), outbox.NewMetrics(prometheus.NewRegistry()), clock)
			defer d.Close()
			var recovered atomic.Int32
			d.OnRecovery(func(context.Context) { recovered.Add(1) })
			relay := outbox.NewRelay(d, time.Second, 10)
			send := tc.send(d)
			backlog0, _, err := st.OutboxBacklog(ctx, now)
			if err != nil {
				t.Fatal(err)
			}

			client.down.Store(true)
			first := tc.make(t, now)
			send(ctx, first.id, tc.taskType, first.payload)
			calls := client.n.Load()
			second := tc.make(t, now)
			send(ctx, second.id, tc.taskType, second.payload)
			if client.n.Load() != calls {
				t.Error("a request right after a failed enqueue tried Redis again instead of leaving the task to the relay")
			}
			if sent, err := relay.Once(ctx); err != nil || sent != 0 {
				t.Errorf("relay with redis down: sent %d, %v", sent, err)
			}
			if n, _, _ := st.OutboxBacklog(ctx, now); n != backlog0+2 {
				t.Errorf("backlog with redis down: got %d, want %d", n, backlog0+2)
			}

			client.down.Store(false)
			now = now.Add(time.Minute) // past every backoff
			if sent, err := relay.Once(ctx); err != nil || sent != backlog0+2 {
				t.Fatalf("relay with redis back: sent %d, %v; want %d", sent, err, backlog0+2)
			}
			if n, _, _ := st.OutboxBacklog(ctx, now); n != 0 {
				t.Errorf("backlog after the relay: got %d, want 0", n)
			}
			for _, p := range []pending{first, second} {
				if _, err := inspector.GetTaskInfo(p.queue, p.id); err != nil {
					t.Errorf("task %s not in Redis: %v", p.id, err)
				}
			}
			if recovered.Load() != 1 {
				t.Errorf("recovery hook: called %d times, want once", recovered.Load())
			}
			// Sending a task again (a crash between enqueue and mark, the
			// sweep racing the relay) is a TaskID conflict, which counts
			// as sent.
			send(ctx, first.id, tc.taskType, first.payload)
			if q, _ := inspector.GetQueueInfo(first.queue); q.Pending != 2 {
				t.Errorf("pending after a re-send: got %d, want 2", q.Pending)
			}

			third := tc.make(t, now)
			send(ctx, third.id, tc.taskType, third.payload)
			if _, err := inspector.GetTaskInfo(third.queue, third.id); err != nil {
				t.Errorf("task %s sent with redis up is not in Redis: %v", third.id, err)
			}
			if n := rowCount(t, third.id); n != tc.rows {
				t.Errorf("task sent with redis up: %d outbox rows, want %d", n, tc.rows)
			}
		})
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
