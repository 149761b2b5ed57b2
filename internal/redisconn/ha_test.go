package redisconn_test

// These tests run asynq through the replicated REDIS_URL forms against real
// redis-server processes on free loopback ports: a Sentinel-managed master
// and replica that fail over while tasks flow, and a three-master Cluster.
// They measure rather than assume: the figures they log are the ones quoted
// in docs/redis-ha.md. They do not run in parallel with each other: the
// failover timing is the point, and five extra Redis processes on two cores
// would distort it.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/cepcomunicacion/cepjobs/internal/redisconn"
	"github.com/cepcomunicacion/cepjobs/internal/testenv"
)

const haTaskType = "ha:probe"

// TestSentinelFailover kills -9 the master half-way through 5,000 enqueues
// and checks that asynq, connected through redis-sentinel://, follows the
// promoted replica. Asynchronous replication may lose the last writes the
// dead master acknowledged: the loss is reported, and fails the test only
// above maxLossRatio.
func TestSentinelFailover(t *testing.T) {
	const (
		total        = 5000
		interval     = 2 * time.Millisecond // 500 enqueues/s: ~10 s of traffic
		maxLossRatio = 0.05
	)
	bin := lookBinary(t, "redis-server")
	ctx := context.Background()

	masterPort, replicaPort := testenv.FreePort(t), testenv.FreePort(t)
	master := startRedis(t, "master", bin, masterPort)
	startRedis(t, "replica", bin, replicaPort, "--replicaof", "127.0.0.1", strconv.Itoa(masterPort))
	replica := redis.NewClient(&redis.Options{Addr: addr(replicaPort)})
	t.Cleanup(func() { _ = replica.Close() })
	testenv.Eventually(t, 15*time.Second, "the replica to sync with the master", func() bool {
		info, err := replica.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	})

	var sentinelAddrs []string
	for i := range 3 {
		p := testenv.FreePort(t)
		dir := t.TempDir()
		conf := filepath.Join(dir, "sentinel.conf")
		// Sentinel rewrites its config file, so each gets its own.
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\n"+
			"sentinel monitor mymaster 127.0.0.1 %d 2\n"+
			"sentinel down-after-milliseconds mymaster 1000\n"+
			"sentinel failover-timeout mymaster 5000\n"+
			"sentinel parallel-syncs mymaster 1\n", p, dir, masterPort)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		startProc(t, fmt.Sprintf("sentinel-%d", i+1), bin, conf, "--sentinel")
		sentinelAddrs = append(sentinelAddrs, addr(p))
	}
	for _, a := range sentinelAddrs {
		s := redis.NewSentinelClient(&redis.Options{Addr: a})
		t.Cleanup(func() { _ = s.Close() })
		// Failover needs every sentinel to know the replica and enough
		// peers to authorise it; discovery runs on 2 s hello messages.
		testenv.Eventually(t, 30*time.Second, "sentinel "+a+" to see the replica and its two peers", func() bool {
			if _, err := s.CkQuorum(ctx, "mymaster").Result(); err != nil {
				return false
			}
			peers, err := s.Sentinels(ctx, "mymaster").Result()
			if err != nil || len(peers) != 2 {
				return false
			}
			replicas, err := s.Replicas(ctx, "mymaster").Result()
			return err == nil && len(replicas) == 1
		})
	}

	opt, err := redisconn.Parse("redis-sentinel://" + strings.Join(sentinelAddrs, ",") + "/0?master=mymaster")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := opt.(asynq.RedisFailoverClientOpt); !ok {
		t.Fatalf("Parse: got %T, want asynq.RedisFailoverClientOpt", opt)
	}
	rec := newRecorder()
	srv := startServer(t, opt, map[string]int{"default": 1}, rec)
	client := asynq.NewClient(opt)
	t.Cleanup(func() { _ = client.Close() })

	enqueue := func(id string) error {
		ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		_, err := client.EnqueueContext(ctx, asynq.NewTask(haTaskType, nil), asynq.TaskID(id), asynq.Queue("default"))
		if errors.Is(err, asynq.ErrTaskIDConflict) {
			// An attempt reported as failed had reached Redis after all.
			return nil
		}
		return err
	}

	// Steady traffic; the master dies half-way.
	var (
		enqueued   = make(map[string]bool, total)
		failed     []string
		enqErrors  int
		killedAt   time.Time
		firstOKAft time.Time
	)
	promoted := make(chan time.Time, 1)
	tick := time.NewTicker(interval)
	for i := range total {
		<-tick.C
		if i == total/2 {
			master.kill()
			killedAt = time.Now()
			go watchPromotion(ctx, replica, promoted)
		}
		id := fmt.Sprintf("ha-%05d", i)
		if err := enqueue(id); err != nil {
			enqErrors++
			failed = append(failed, id)
			continue
		}
		enqueued[id] = true
		if !killedAt.IsZero() && firstOKAft.IsZero() {
			firstOKAft = time.Now()
		}
	}
	tick.Stop()

	// Retry what failed, as the outbox relay would: after a pause, until
	// Redis takes it.
	retryDeadline := time.Now().Add(20 * time.Second)
	for len(failed) > 0 && time.Now().Before(retryDeadline) {
		time.Sleep(500 * time.Millisecond)
		var still []string
		for _, id := range failed {
			if err := enqueue(id); err != nil {
				still = append(still, id)
				continue
			}
			enqueued[id] = true
		}
		failed = still
	}
	if len(failed) > 0 {
		t.Errorf("%d enqueues still failing 20 s after the traffic ended: asynq never reached the promoted master", len(failed))
	}

	var promotedAt time.Time
	select {
	case promotedAt = <-promoted:
	case <-time.After(10 * time.Second):
		t.Fatal("sentinels never promoted the replica")
	}

	// Wait for the queue to drain: everything enqueued, or no progress for
	// 5 s (what is left then is lost, or stranded in the dead master's
	// active list until asynq's lease recovery, 60-120 s later).
	drainDeadline := time.Now().Add(30 * time.Second)
	lastCount, lastChange := -1, time.Now()
	for time.Now().Before(drainDeadline) {
		n := rec.countOf(enqueued)
		if n == len(enqueued) {
			break
		}
		if n != lastCount {
			lastCount, lastChange = n, time.Now()
		} else if time.Since(lastChange) > 5*time.Second {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	srv.Shutdown()

	completions := rec.times()
	resumed := firstAfter(completions, killedAt)
	if resumed.IsZero() {
		t.Fatalf("processing never resumed after the master was killed (enqueue errors: %d)", enqErrors)
	}
	gap, gapEnd := longestGap(completions, killedAt.Add(-time.Second))

	var lost []string
	for id := range enqueued {
		if !rec.has(id) {
			lost = append(lost, id)
		}
	}
	slices.Sort(lost)
	stranded, gone := classifyLost(ctx, opt, lost)

	t.Logf("sentinel failover: master killed after %d of %d enqueues", total/2, total)
	t.Logf("  replica promoted %s after the kill", promotedAt.Sub(killedAt).Round(time.Millisecond))
	if !firstOKAft.IsZero() {
		t.Logf("  enqueue outage: first successful enqueue %s after the kill; %d enqueue errors, all retried", firstOKAft.Sub(killedAt).Round(time.Millisecond), enqErrors)
	}
	t.Logf("  processing paused %s (longest gap between completions; resumed %s after the kill)",
		gap.Round(time.Millisecond), gapEnd.Sub(killedAt).Round(time.Millisecond))
	t.Logf("  processed %d distinct tasks of %d enqueued successfully (%d handler runs)", rec.distinct(), len(enqueued), len(completions))
	t.Logf("  lost: %d of %d (%.2f %%): %d gone from Redis, %d stranded in the active list until lease recovery %v",
		len(lost), total, 100*float64(len(lost))/total, gone, stranded, head(lost, 10))
	if float64(len(lost)) > maxLossRatio*total {
		t.Errorf("lost %d of %d tasks, more than %.0f %%", len(lost), total, 100*maxLossRatio)
	}
}

// TestClusterQueues runs asynq through redis-cluster:// on three masters and
// checks every task of every queue is processed.
func TestClusterQueues(t *testing.T) {
	const perQueue = 300
	bin := lookBinary(t, "redis-server")
	cli := lookBinary(t, "redis-cli")
	ctx := context.Background()

	var addrs []string
	for i := range 3 {
		p := testenv.FreePort(t)
		dir := t.TempDir()
		startRedis(t, fmt.Sprintf("cluster-%d", i+1), bin, p, "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"), "--cluster-node-timeout", "2000")
		addrs = append(addrs, addr(p))
	}
	create := exec.Command(cli, append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")...)
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		t.Cleanup(func() { _ = c.Close() })
		testenv.Eventually(t, 20*time.Second, "cluster_state:ok on "+a, func() bool {
			info, err := c.ClusterInfo(ctx).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok")
		})
	}

	opt, err := redisconn.Parse("redis-cluster://" + strings.Join(addrs, ","))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := opt.(asynq.RedisClusterClientOpt); !ok {
		t.Fatalf("Parse: got %T, want asynq.RedisClusterClientOpt", opt)
	}
	queues := map[string]int{"critical": 6, "default": 3, "low": 1}
	logQueueSlots(t, ctx, addrs[0], queues)

	rec := newRecorder()
	srv := startServer(t, opt, queues, rec)
	client := asynq.NewClient(opt)
	t.Cleanup(func() { _ = client.Close() })
	want := map[string]string{} // task id → queue
	for q := range queues {
		for i := range perQueue {
			id := fmt.Sprintf("%s-%04d", q, i)
			if _, err := client.EnqueueContext(ctx, asynq.NewTask(haTaskType, nil), asynq.TaskID(id), asynq.Queue(q)); err != nil {
				t.Fatalf("enqueue %s: %v", id, err)
			}
			want[id] = q
		}
	}
	start := time.Now()
	testenv.Eventually(t, 30*time.Second, "every task to be processed", func() bool {
		return rec.distinct() >= len(want)
	})
	srv.Shutdown()
	t.Logf("cluster: %d tasks over %d queues processed in %s", len(want), len(queues), time.Since(start).Round(time.Millisecond))
	for id, q := range want {
		got, ok := rec.queueOf(id)
		if !ok {
			t.Errorf("task %s: never processed", id)
			continue
		}
		if got != q {
			t.Errorf("task %s: processed from queue %q, want %q", id, got, q)
		}
	}
}

// recorder remembers which task ids the handler completed, from which
// queue, and when each run ended.
type recorder struct {
	mu    sync.Mutex
	ids   map[string]string
	ended []time.Time
}

func newRecorder() *recorder { return &recorder{ids: map[string]string{}} }

func (r *recorder) ProcessTask(ctx context.Context, _ *asynq.Task) error {
	id, _ := asynq.GetTaskID(ctx)
	q, _ := asynq.GetQueueName(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids[id] = q
	r.ended = append(r.ended, time.Now())
	return nil
}

func (r *recorder) has(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.ids[id]
	return ok
}

func (r *recorder) queueOf(id string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	q, ok := r.ids[id]
	return q, ok
}

func (r *recorder) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ids)
}

func (r *recorder) countOf(set map[string]bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for id := range set {
		if _, ok := r.ids[id]; ok {
			n++
		}
	}
	return n
}

func (r *recorder) times() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.ended)
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out
}

// startServer starts an asynq server with the worker settings the fleet
// uses (concurrency 20, 100 ms task check) and a quiet logger.
func startServer(t *testing.T, opt asynq.RedisConnOpt, queues map[string]int, h asynq.Handler) *asynq.Server {
	t.Helper()
	srv := asynq.NewServer(opt, asynq.Config{
		Concurrency:       20,
		Queues:            queues,
		TaskCheckInterval: 100 * time.Millisecond,
		ShutdownTimeout:   2 * time.Second,
		LogLevel:          asynq.FatalLevel,
	})
	mux := asynq.NewServeMux()
	mux.Handle(haTaskType, h)
	if err := srv.Start(mux); err != nil {
		t.Fatalf("start asynq server: %v", err)
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(srv.Shutdown) })
	return srv
}

// watchPromotion reports when the replica starts answering ROLE as master.
func watchPromotion(ctx context.Context, replica *redis.Client, promoted chan<- time.Time) {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		role, err := replica.Do(ctx, "ROLE").Slice()
		if err == nil && len(role) > 0 && role[0] == "master" {
			promoted <- time.Now()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// classifyLost tells tasks still in Redis (stranded in the active list,
// or pending) from tasks Redis no longer has at all.
func classifyLost(ctx context.Context, opt asynq.RedisConnOpt, ids []string) (stranded, gone int) {
	if len(ids) == 0 {
		return 0, 0
	}
	insp := asynq.NewInspector(opt)
	defer insp.Close()
	for _, id := range ids {
		if _, err := insp.GetTaskInfo("default", id); err != nil {
			gone++
		} else {
			stranded++
		}
	}
	return stranded, gone
}

func logQueueSlots(t *testing.T, ctx context.Context, seed string, queues map[string]int) {
	t.Helper()
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{seed}})
	defer c.Close()
	slots, err := c.ClusterSlots(ctx).Result()
	if err != nil {
		t.Logf("cluster slots: %v", err)
		return
	}
	for _, q := range slices.Sorted(maps.Keys(queues)) {
		key := "asynq:{" + q + "}:pending"
		slot, err := c.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			t.Logf("keyslot %s: %v", key, err)
			continue
		}
		for _, s := range slots {
			if int64(s.Start) <= slot && slot <= int64(s.End) && len(s.Nodes) > 0 {
				t.Logf("queue %-8s slot %5d on %s", q, slot, s.Nodes[0].Addr)
			}
		}
	}
}

func firstAfter(ts []time.Time, t0 time.Time) time.Time {
	for _, t := range ts {
		if t.After(t0) {
			return t
		}
	}
	return time.Time{}
}

// longestGap is the longest pause between consecutive completions from
// `from` on, and when it ended.
func longestGap(ts []time.Time, from time.Time) (time.Duration, time.Time) {
	var gap time.Duration
	var end time.Time
	prev := from
	for _, t := range ts {
		if t.Before(from) {
			continue
		}
		if d := t.Sub(prev); d > gap {
			gap, end = d, t
		}
		prev = t
	}
	return gap, end
}

func head(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

func lookBinary(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found on PATH: install Redis (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)", name)
	}
	return p
}

// proc is a child process the test owns: killed and reaped at cleanup,
// its output shown if the test failed.
type proc struct {
	name string
	cmd  *exec.Cmd
	logs *testenv.SyncBuffer
	done chan struct{}
	once sync.Once
}

func startProc(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(bin, args...), logs: &testenv.SyncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.logs.String())
		}
	})
	return p
}

// kill sends SIGKILL (no shutdown, no final write) and waits for the exit.
func (p *proc) kill() {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	})
}

// startRedis starts a throwaway redis-server (no persistence, own
// directory) on port and waits until it answers.
func startRedis(t *testing.T, name, bin string, port int, extra ...string) *proc {
	t.Helper()
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir()}, extra...)
	p := startProc(t, name, bin, args...)
	c := redis.NewClient(&redis.Options{Addr: addr(port)})
	defer c.Close()
	testenv.Eventually(t, 10*time.Second, name+" to answer PING", func() bool {
		return c.Ping(context.Background()).Err() == nil
	})
	return p
}
