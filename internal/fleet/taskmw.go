package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cepcomunicacion/cepjobs/handlers"
)

// taskMetrics is the middleware around every worker's handlers: a count of
// tasks by type and outcome, their duration, and panics turned into logged
// errors. It is on every task's path, so the success path takes no lock,
// allocates nothing and logs nothing: the metric children of a task type are
// resolved once and kept. Failures are logged by the server's ErrorHandler
// (WorkerServerConfig), not here.
type taskMetrics struct {
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	byType   sync.Map // task type -> *typeMetrics
}

type typeMetrics struct {
	succeeded, failed, throttled, panicked prometheus.Counter
	duration                               prometheus.Observer
}

func newTaskMetrics(reg prometheus.Registerer) *taskMetrics {
	m := &taskMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cepjobs_tasks_total",
			Help: "Tasks run by this worker, by type and outcome: succeeded, failed, throttled (handed back to wait for a rate limit), panicked.",
		}, []string{"task_type", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cepjobs_task_duration_seconds",
			Help:    "Handler run time per task, by type, whatever the outcome.",
			Buckets: []float64{.001, .005, .025, .1, .25, 1, 2.5, 10, 30, 120, 600},
		}, []string{"task_type"}),
	}
	reg.MustRegister(m.total, m.duration)
	return m
}

func (m *taskMetrics) forType(typ string) *typeMetrics {
	if v, ok := m.byType.Load(typ); ok {
		return v.(*typeMetrics)
	}
	tm := &typeMetrics{
		succeeded: m.total.WithLabelValues(typ, "succeeded"),
		failed:    m.total.WithLabelValues(typ, "failed"),
		throttled: m.total.WithLabelValues(typ, "throttled"),
		panicked:  m.total.WithLabelValues(typ, "panicked"),
		duration:  m.duration.WithLabelValues(typ),
	}
	v, _ := m.byType.LoadOrStore(typ, tm)
	return v.(*typeMetrics)
}

// wrap returns h with the metrics and panic recovery around it. A panic
// becomes an ordinary error (the task is retried as for any failure), logged
// here once with the task's type, id and stack.
func (m *taskMetrics) wrap(h asynq.Handler, log *slog.Logger) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) (err error) {
		tm := m.forType(t.Type())
		start := time.Now()
		defer func() {
			if v := recover(); v != nil {
				tm.panicked.Inc()
				id, _ := asynq.GetTaskID(ctx)
				log.Error("task panicked", "task_type", t.Type(), "task_id", id, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				err = fmt.Errorf("%s %s: panic: %v", t.Type(), id, v)
			}
			tm.duration.Observe(time.Since(start).Seconds())
		}()
		err = h.ProcessTask(ctx, t)
		switch {
		case err == nil:
			tm.succeeded.Inc()
		case handlers.IsThrottled(err):
			tm.throttled.Inc()
		default:
			tm.failed.Inc()
		}
		return err
	})
}
