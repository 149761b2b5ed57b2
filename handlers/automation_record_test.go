package handlers_test

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cepcomunicacion/cepjobs/handlers"
	"github.com/cepcomunicacion/cepjobs/internal/ratelimit"
	"github.com/cepcomunicacion/cepjobs/internal/redisconn"
	"github.com/cepcomunicacion/cepjobs/internal/testenv"
	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// restartingStore fails the first RecordDelivery calls as a PostgreSQL
// being restarted does.
type restartingStore struct {
	*store.Store
	failures atomic.Int32
}

func (s *restartingStore) RecordDelivery(ctx context.Context, leadID, channel string, o store.DeliveryOutcome, now time.Time) (string, error) {
	if s.failures.Add(-1) >= 0 {
		return "", &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}
	}
	return s.Store.RecordDelivery(ctx, leadID, channel, o, now)
}

// TestRecordRidesOutPostgresRestart: the vendor answered, then PostgreSQL
// went away for a moment; the outcome is recorded once it is back, and the
// vendor is not called again.
func TestRecordRidesOutPostgresRestart(t *testing.T) {
	ch := &fakeChannel{name: tasks.ChannelWelcomeEmail}
	b := setup(t, ch)
	rs := &restartingStore{Store: b.store}
	b.mux = newAutomationWithStore(t, b, rs)
	id := b.newLead(t, true)
	if err := b.process(t, id); err != nil {
		t.Fatal(err)
	}
	rs.failures.Store(3)
	if err := b.deliver(t, id, tasks.ChannelWelcomeEmail); err != nil {
		t.Fatalf("deliver: %v", err)
	}
	if _, ds := b.status(t, id); ds["welcome_email"].Status != store.DeliveryDelivered || ch.calls != 1 {
		t.Errorf("got %+v after %d vendor calls, want delivered after 1", ds["welcome_email"], ch.calls)
	}
}

// newAutomationWithStore is setup's mux over another store.
func newAutomationWithStore(t *testing.T, b *bundle, st *restartingStore) *asynq.ServeMux {
	t.Helper()
	opt, _ := redisconn.Parse(testenv.RedisURL(t, testenv.RedisDBHandlers))
	rc := redisconn.Client(opt)
	t.Cleanup(func() { rc.Close() })
	var chs []handlers.Channel
	for _, c := range b.channels {
		chs = append(chs, c)
	}
	return handlers.NewAutomation(handlers.AutomationDeps{
		Store: st, Queue: asynq.NewClientFromRedisClient(rc), Throttle: ratelimit.New(rc, nil), Channels: chs,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: handlers.NewMetrics(prometheus.NewRegistry()),
	})
}
