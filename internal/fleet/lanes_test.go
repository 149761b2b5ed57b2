package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/cepcomunicacion/cepjobs/internal/config"
	"github.com/cepcomunicacion/cepjobs/internal/redisconn"
	"github.com/cepcomunicacion/cepjobs/internal/testenv"
)

func TestLaneSizes(t *testing.T) {
	for _, tc := range []struct {
		conc, lanes int
		want        []int
	}{
		{20, 1, []int{20}},
		{20, 2, []int{10, 10}},
		{20, 3, []int{7, 7, 6}},
		{50, 4, []int{13, 13, 12, 12}},
		{2, 4, []int{1, 1}},
		{5, 0, []int{5}},
	} {
		got := laneSizes(tc.conc, tc.lanes)
		if !slices.Equal(got, tc.want) {
			t.Errorf("laneSizes(%d, %d) = %v, want %v", tc.conc, tc.lanes, got, tc.want)
		}
	}
}

// privateRedis starts a redis-server of the test's own on a free port: the
// lane tests count servers and queues, which other packages' tests sharing
// the test Redis would disturb.
func privateRedis(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server is not on the PATH (see README: make test)")
	}
	port := testenv.FreePort(t)
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	testenv.Eventually(t, 10*time.Second, "the private redis-server", func() bool {
		return c.Ping(context.Background()).Err() == nil
	})
	return "redis://" + addr + "/0"
}

type laneFixture struct {
	w      *Worker
	client *asynq.Client
	insp   *asynq.Inspector
	reg    *prometheus.Registry
	cancel context.CancelFunc
	runErr chan error
}

func startLaneWorker(t *testing.T, wc WorkerConfig, mux *asynq.ServeMux) *laneFixture {
	t.Helper()
	opt, err := redisconn.Parse(privateRedis(t))
	if err != nil {
		t.Fatal(err)
	}
	if wc.Queues == nil {
		wc.Queues = map[string]int{"critical": 6, "default": 3}
	}
	if wc.TaskCheckInterval == 0 {
		wc.TaskCheckInterval = 10 * time.Millisecond
	}
	if wc.ShutdownTimeout == 0 {
		wc.ShutdownTimeout = 10 * time.Second
	}
	wc.MetricsAddr = "127.0.0.1:0"
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	f := &laneFixture{reg: prometheus.NewRegistry(), runErr: make(chan error, 1)}
	f.w, err = newWorker("test-worker", wc, opt, log, f.reg)
	if err != nil {
		t.Fatal(err)
	}
	f.w.mux = mux
	f.client = asynq.NewClient(opt)
	f.insp = asynq.NewInspector(opt)
	t.Cleanup(func() { _ = f.client.Close(); _ = f.insp.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() { f.runErr <- f.w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-f.runErr:
		case <-time.After(30 * time.Second):
			t.Error("worker did not stop")
		}
	})
	return f
}

func (f *laneFixture) enqueue(t *testing.T, typ string, n int, queue string) {
	t.Helper()
	for i := range n {
		if _, err := f.client.Enqueue(asynq.NewTask(typ, []byte(strconv.Itoa(i))), asynq.Queue(queue), asynq.MaxRetry(0)); err != nil {
			t.Fatal(err)
		}
	}
}

// stop cancels Run and waits for it to return.
func (f *laneFixture) stop(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	f.cancel()
	select {
	case err := <-f.runErr:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		f.runErr <- nil // for the cleanup
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	return time.Since(start)
}

// blocker is a handler whose tasks run until released.
type blocker struct {
	running  atomic.Int64
	finished atomic.Int64
	release  chan struct{}
}

func newBlocker() *blocker { return &blocker{release: make(chan struct{})} }

func (b *blocker) handle(ctx context.Context, _ *asynq.Task) error {
	b.running.Add(1)
	select {
	case <-b.release:
		b.finished.Add(1)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestLanesAllProcess: with 3 lanes of 2 slots, 6 blocked tasks can only all
// run at once if every lane fetched; the dashboard's view (the Inspector)
// shows three servers of 2 with 2 active workers each.
func TestLanesAllProcess(t *testing.T) {
	b := newBlocker()
	mux := asynq.NewServeMux()
	mux.HandleFunc("t:block", b.handle)
	f := startLaneWorker(t, WorkerConfig{Concurrency: 6, FetchLanes: 3}, mux)
	if len(f.w.lanes) != 3 {
		t.Fatalf("lanes: got %d, want 3", len(f.w.lanes))
	}
	f.enqueue(t, "t:block", 6, "critical")
	testenv.Eventually(t, 10*time.Second, "6 tasks running at once", func() bool { return b.running.Load() == 6 })
	var servers []*asynq.ServerInfo
	testenv.Eventually(t, 15*time.Second, "3 servers, each with 2 active workers", func() bool {
		var err error
		servers, err = f.insp.Servers()
		if err != nil || len(servers) != 3 {
			return false
		}
		for _, s := range servers {
			if s.Concurrency != 2 || len(s.ActiveWorkers) != 2 {
				return false
			}
		}
		return true
	})
	close(b.release)
	testenv.Eventually(t, 10*time.Second, "every task done", func() bool { return b.finished.Load() == 6 })

	// Then a stream of short tasks on both queues is all processed.
	var done atomic.Int64
	mux.HandleFunc("t:quick", func(context.Context, *asynq.Task) error { done.Add(1); return nil })
	f.enqueue(t, "t:quick", 300, "critical")
	f.enqueue(t, "t:quick", 100, "default")
	testenv.Eventually(t, 20*time.Second, "400 quick tasks", func() bool { return done.Load() == 400 })

	// The health endpoint and the task metrics answer for the whole worker.
	resp, err := http.Get("http://" + f.w.MetricsAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"ok"`) {
		t.Errorf("healthz: %d %s", resp.StatusCode, body)
	}
	if got := metricValue(t, f.reg, "cepjobs_tasks_total", "succeeded", "t:quick"); got != 400 {
		t.Errorf("cepjobs_tasks_total{t:quick,succeeded} = %v, want 400", got)
	}
	f.stop(t)
	if s, err := f.insp.Servers(); err != nil || len(s) != 0 {
		t.Errorf("after shutdown: servers %d (%v), want 0", len(s), err)
	}
}

// TestLanesShutdownDrains: on cancel every lane stops fetching and waits for
// its in-flight tasks; the queued ones stay queued for another worker.
func TestLanesShutdownDrains(t *testing.T) {
	b := newBlocker()
	mux := asynq.NewServeMux()
	mux.HandleFunc("t:block", b.handle)
	f := startLaneWorker(t, WorkerConfig{Concurrency: 4, FetchLanes: 2}, mux)
	f.enqueue(t, "t:block", 10, "critical")
	testenv.Eventually(t, 10*time.Second, "4 tasks running", func() bool { return b.running.Load() == 4 })
	go func() {
		time.Sleep(300 * time.Millisecond)
		close(b.release)
	}()
	took := f.stop(t)
	if got := b.finished.Load(); got != 4 {
		t.Errorf("finished before Run returned: %d, want the 4 in flight", got)
	}
	if b.running.Load() != 4 {
		t.Errorf("tasks started: %d; a lane fetched during shutdown", b.running.Load())
	}
	if took < 250*time.Millisecond {
		t.Errorf("Run returned after %v, before the in-flight tasks finished", took)
	}
	q, err := f.insp.GetQueueInfo("critical")
	if err != nil {
		t.Fatal(err)
	}
	if q.Pending != 6 || q.Active != 0 {
		t.Errorf("after shutdown: pending %d active %d, want 6 and 0", q.Pending, q.Active)
	}
}

// TestLanesShutdownTimeout: tasks still running when ShutdownTimeout ends
// go back to pending from every lane, and the process waits the timeout
// once, not once per lane.
func TestLanesShutdownTimeout(t *testing.T) {
	b := newBlocker()
	mux := asynq.NewServeMux()
	mux.HandleFunc("t:block", b.handle)
	f := startLaneWorker(t, WorkerConfig{Concurrency: 6, FetchLanes: 3, ShutdownTimeout: time.Second}, mux)
	f.enqueue(t, "t:block", 6, "critical")
	testenv.Eventually(t, 10*time.Second, "6 tasks running", func() bool { return b.running.Load() == 6 })
	took := f.stop(t)
	if took > 2500*time.Millisecond {
		t.Errorf("shutdown took %v with a 1 s timeout and 3 lanes: lanes shut down one after the other", took)
	}
	q, err := f.insp.GetQueueInfo("critical")
	if err != nil {
		t.Fatal(err)
	}
	if q.Pending != 6 || q.Active != 0 {
		t.Errorf("after shutdown: pending %d active %d, want the 6 handed back", q.Pending, q.Active)
	}
}

// TestTaskMiddleware: outcomes are counted per type, a panic becomes an
// error (and the task is retried or archived as for any failure), and the
// duration is observed whatever the outcome.
func TestTaskMiddleware(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newTaskMetrics(reg)
	var logs strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	boom := errors.New("boom")
	h := m.wrap(asynq.HandlerFunc(func(_ context.Context, t *asynq.Task) error {
		switch string(t.Payload()) {
		case "ok":
			return nil
		case "fail":
			return boom
		}
		panic("kaboom")
	}), log)
	ctx := context.Background()
	for _, p := range []string{"ok", "ok", "fail", "panic"} {
		err := h.ProcessTask(ctx, asynq.NewTask("t:x", []byte(p)))
		switch p {
		case "ok":
			if err != nil {
				t.Errorf("ok: %v", err)
			}
		case "fail":
			if !errors.Is(err, boom) {
				t.Errorf("fail: got %v", err)
			}
		case "panic":
			if err == nil || !strings.Contains(err.Error(), "panic: kaboom") {
				t.Errorf("panic: got %v", err)
			}
		}
	}
	for outcome, want := range map[string]float64{"succeeded": 2, "failed": 1, "panicked": 1, "throttled": 0} {
		if got := metricValue(t, reg, "cepjobs_tasks_total", outcome, "t:x"); got != want {
			t.Errorf("%s: got %v, want %v", outcome, got, want)
		}
	}
	if got := metricValue(t, reg, "cepjobs_task_duration_seconds", "t:x"); got != 4 {
		t.Errorf("durations observed: %v, want 4", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "task panicked") || !strings.Contains(logs.String(), "kaboom") || strings.Count(logs.String(), "\n") != 1 {
		t.Errorf("want one log line, for the panic; got:\n%s", logs.String())
	}
}

// metricValue is the counter's value, or the histogram's sample count, of
// the series of name whose label values are labels, in the order of the
// label names (Gather sorts them: outcome before task_type).
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var vals []string
			for _, l := range m.GetLabel() {
				vals = append(vals, l.GetValue())
			}
			if slices.Equal(vals, labels) {
				if h := m.GetHistogram(); h != nil {
					return float64(h.GetSampleCount())
				}
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// BenchmarkTaskMiddleware is the middleware's cost on the success path.
func BenchmarkTaskMiddleware(b *testing.B) {
	m := newTaskMetrics(prometheus.NewRegistry())
	h := m.wrap(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil }), slog.New(slog.DiscardHandler))
	task := asynq.NewTask("t:x", nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = h.ProcessTask(ctx, task)
	}
}

// TestAutomationFetchSettings: worker-automation takes its lanes and poll
// interval from CEPJOBS_FETCH_*, the other workers' interval stays
// CEPJOBS_TASK_CHECK_INTERVAL, and bad values are refused by name.
func TestAutomationFetchSettings(t *testing.T) {
	cfg, err := config.Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	wc := automationWorkerConfig(cfg)
	if wc.FetchLanes != cfg.Fetch.Lanes || wc.TaskCheckInterval != cfg.Fetch.PollInterval || wc.FetchLanes < 1 {
		t.Errorf("defaults: lanes %d interval %v, config %+v", wc.FetchLanes, wc.TaskCheckInterval, cfg.Fetch)
	}
	cfg, err = config.Load([]string{"CEPJOBS_FETCH_LANES=3", "CEPJOBS_FETCH_POLL_INTERVAL=7ms", "CEPJOBS_TASK_CHECK_INTERVAL=250ms"})
	if err != nil {
		t.Fatal(err)
	}
	wc = automationWorkerConfig(cfg)
	if wc.FetchLanes != 3 || wc.TaskCheckInterval != 7*time.Millisecond || cfg.Automation.TaskCheckInterval != 250*time.Millisecond {
		t.Errorf("set: lanes %d interval %v, other workers %v", wc.FetchLanes, wc.TaskCheckInterval, cfg.Automation.TaskCheckInterval)
	}
	_, err = config.Load([]string{"CEPJOBS_FETCH_LANES=0", "CEPJOBS_FETCH_POLL_INTERVAL=0s"})
	for _, name := range []string{"CEPJOBS_FETCH_LANES", "CEPJOBS_FETCH_POLL_INTERVAL"} {
		if err == nil || !strings.Contains(err.Error(), name+":") {
			t.Errorf("want an error naming %s, got %v", name, err)
		}
	}
}
