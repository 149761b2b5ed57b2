package outbox_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
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

// TestDispatchedMarksAreRecordedByClose: rows enqueued inline by many
// requests at once are all recorded dispatched by the time Close returns,
// and a dispatch after Close still records its own mark.
func TestDispatchedMarksAreRecordedByClose(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	opt, _ := redisconn.Parse(testenv.RedisURL(t, testenv.RedisDBOutboxRelay))
	rc := redisconn.Client(opt)
	defer rc.Close()
	d := outbox.NewDispatcher(st, asynq.NewClientFromRedisClient(rc), slog.New(slog.NewTextHandler(io.Discard, nil)), outbox.NewMetrics(prometheus.NewRegistry()), nil)

	now := time.Now()
	submit := func(i int) (string, []byte) {
		payload := fmt.Appendf(nil, `{"to_email":"mark%d@example.com"}`, i)
		id, err := st.QueueTask(ctx, tasks.TypeEmailSend, payload, now)
		if err != nil {
			t.Error(err)
		}
		return id, payload
	}
	before, _, err := st.OutboxBacklog(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			id, payload := submit(i)
			d.Now(ctx, id, tasks.TypeEmailSend, payload)
		})
	}
	wg.Wait()
	d.Close()
	if n, _, _ := st.OutboxBacklog(ctx, now); n != before {
		t.Errorf("backlog after Close: got %d rows not marked dispatched, want %d", n, before)
	}

	late, payload := submit(1000)
	d.Now(ctx, late, tasks.TypeEmailSend, payload)
	if n, _, _ := st.OutboxBacklog(ctx, now); n != before {
		t.Errorf("a dispatch after Close left its row unmarked (backlog %d, want %d)", n, before)
	}
	d.Close() // twice is fine
}
