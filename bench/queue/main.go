// Command queue benchmarks no-op task throughput, enqueue-to-start latency
// and idle cost of our worker (worker-automation's real construction:
// fleet.BenchAutomationWorker with the configuration's defaults — fetch
// lanes, server config, task middleware), bare asynq (asynq.Config
// defaults) and BullMQ (bench/peers), each consumer in its own child process
// against private redis-servers started here, one without persistence and
// one with AOF (appendfsync everysec). Issue 8 items 1 and 2.
//
//	go run ./bench/queue [-n 20000] [-rounds 3] [-conc 50] [-rate 1000] [-secs 10] [-out bench/RESULTS.md]
//
// or `make bench`. Needs redis-server, node and npm on the PATH. CEPJOBS_*
// variables in the environment reach "ours" as they would the worker.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cepcomunicacion/cepjobs/bench/internal/benchstat"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/cepcomunicacion/cepjobs/internal/config"
	"github.com/cepcomunicacion/cepjobs/internal/fleet"
	"github.com/cepcomunicacion/cepjobs/internal/redisconn"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

const noopType = "bench:noop"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "consume-asynq" {
		if err := consumeAsynq(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if err := orchestrate(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// ---------------------------------------------------------------- consumers

type consumerOpts struct {
	kind    string // ours | bare | rest (the fleet's other workers, idle only)
	port    int
	n       int
	conc    int
	tci     time.Duration
	lanes   int
	latency bool
	prof    string
	idle    bool
}

func consumeAsynq(args []string) error {
	var o consumerOpts
	fs := flag.NewFlagSet("consume-asynq", flag.ExitOnError)
	fs.StringVar(&o.kind, "kind", "ours", "ours | bare | rest")
	fs.IntVar(&o.port, "port", 6379, "")
	fs.IntVar(&o.n, "n", 20000, "")
	fs.IntVar(&o.conc, "conc", 50, "")
	fs.DurationVar(&o.tci, "tci", 0, "ours: CEPJOBS_FETCH_POLL_INTERVAL (0: the configured default)")
	fs.IntVar(&o.lanes, "lanes", 0, "ours: CEPJOBS_FETCH_LANES (0: the configured default)")
	fs.BoolVar(&o.latency, "latency", false, "")
	fs.StringVar(&o.prof, "cpuprofile", "", "")
	fs.BoolVar(&o.idle, "idle", false, "idle mode: run until stdin closes")
	_ = fs.Parse(args)

	var (
		count atomic.Int64
		t0    time.Time
		done  = make(chan time.Duration, 1)
		lats  []int64
		mu    sync.Mutex
	)
	if o.latency {
		lats = make([]int64, 0, o.n)
	}
	mux := asynq.NewServeMux()
	mux.HandleFunc(noopType, func(_ context.Context, t *asynq.Task) error {
		if o.latency {
			start := time.Now().UnixNano()
			ts, _ := strconv.ParseInt(string(t.Payload()), 10, 64)
			mu.Lock()
			lats = append(lats, (start-ts)/1000)
			mu.Unlock()
		}
		if count.Add(1) == int64(o.n) {
			done <- time.Since(t0)
		}
		return nil
	})
	start, stop, err := prepareConsumer(o, mux)
	if err != nil {
		return err
	}
	in := bufio.NewScanner(os.Stdin)
	fmt.Println("ready")
	in.Scan() // "go"
	if o.prof != "" {
		f, err := os.Create(o.prof)
		if err != nil {
			return err
		}
		_ = pprof.StartCPUProfile(f)
	}
	t0 = time.Now()
	if err := start(); err != nil {
		return err
	}
	if o.idle {
		in.Scan() // "stop"
	} else {
		wall := <-done
		fmt.Printf("done %d\n", wall.Nanoseconds())
	}
	if o.prof != "" {
		pprof.StopCPUProfile()
	}
	if o.latency {
		mu.Lock()
		b, _ := json.Marshal(lats)
		mu.Unlock()
		fmt.Printf("lat %s\n", b)
	}
	in.Scan() // "quit" or EOF
	return stop()
}

// prepareConsumer builds the asynq side of the consumer. "ours" is the real
// worker-automation construction (fleet.BenchAutomationWorker), "bare" a
// plain asynq.Server with asynq's defaults, "rest" the asynq servers of the
// fleet's two other workers (worker-stats, worker-llm: their queues,
// concurrency and CEPJOBS_TASK_CHECK_INTERVAL) for the idle-fleet
// measurement.
func prepareConsumer(o consumerOpts, mux *asynq.ServeMux) (start, stop func() error, err error) {
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", o.port)
	opt, err := redisconn.Parse(url)
	if err != nil {
		return nil, nil, err
	}
	switch o.kind {
	case "bare":
		srv := asynq.NewServer(asynq.RedisClientOpt{Addr: fmt.Sprintf("127.0.0.1:%d", o.port)}, asynq.Config{Concurrency: o.conc})
		return func() error { return srv.Start(mux) }, func() error { srv.Shutdown(); return nil }, nil
	case "rest":
		cfg, err := oursConfig(o)
		if err != nil {
			return nil, nil, err
		}
		log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.Log.SlogLevel()}))
		// As internal/fleet/stats.go and llm.go build them (one lane each).
		var srvs []*asynq.Server
		for _, wc := range []fleet.WorkerConfig{
			{Concurrency: cfg.Stats.Concurrency, Queues: map[string]int{tasks.QueueBackup: 3, tasks.QueueStats: 2, tasks.QueueLow: 1}},
			{Concurrency: cfg.LLMWorker.Concurrency, Queues: map[string]int{tasks.QueueLLM: 1}},
		} {
			wc.ShutdownTimeout, wc.TaskCheckInterval = cfg.Automation.ShutdownTimeout, cfg.Automation.TaskCheckInterval
			srvs = append(srvs, asynq.NewServer(opt, fleet.WorkerServerConfig(wc, log)))
		}
		return func() error {
				for _, s := range srvs {
					if err := s.Start(mux); err != nil {
						return err
					}
				}
				return nil
			}, func() error {
				for _, s := range srvs {
					s.Shutdown()
				}
				return nil
			}, nil
	}
	cfg, err := oursConfig(o)
	if err != nil {
		return nil, nil, err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.Log.SlogLevel()}))
	w, err := fleet.BenchAutomationWorker(cfg, opt, log, mux)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	return func() error {
			go func() { errc <- w.Run(ctx) }()
			return nil
		}, func() error {
			cancel()
			return <-errc
		}, nil
}

// oursConfig is the configuration worker-automation would load from this
// environment (CEPJOBS_* variables pass through; defaults otherwise), with
// the benchmark's concurrency and any lane or interval override.
func oursConfig(o consumerOpts) (config.Config, error) {
	env := cepjobsEnv()
	if o.conc > 0 {
		env = append(env, "CEPJOBS_AUTOMATION_CONCURRENCY="+strconv.Itoa(o.conc))
	}
	if o.lanes > 0 {
		env = append(env, "CEPJOBS_FETCH_LANES="+strconv.Itoa(o.lanes))
	}
	if o.tci > 0 {
		env = append(env, "CEPJOBS_FETCH_POLL_INTERVAL="+o.tci.String())
	}
	return config.Load(env)
}

func cepjobsEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "CEPJOBS_") {
			env = append(env, kv)
		}
	}
	return env
}

// -------------------------------------------------------------- orchestrator

type cfg struct {
	n, rounds, conc, rate, secs int
	latTCIs                     []time.Duration
	experiments                 bool
	out, profOut, idleProfOut   string
	root, bin, logs             string
	// The defaults "ours" runs with, as worker-automation loads them.
	lanes   int
	tci     time.Duration
	restTCI time.Duration // CEPJOBS_TASK_CHECK_INTERVAL, the other workers'
}

// variant is one consumer configuration.
type variant struct {
	kind  string        // ours | bare | bullmq
	lanes int           // ours: CEPJOBS_FETCH_LANES override (0: default)
	tci   time.Duration // ours: CEPJOBS_FETCH_POLL_INTERVAL override (0: default)
	gogc  string        // ours: GOGC for the child
}

func (v variant) key() string {
	k := v.kind
	if v.lanes > 0 {
		k += fmt.Sprintf("-lanes%d", v.lanes)
	}
	if v.tci > 0 {
		k += "-tci" + v.tci.String()
	}
	if v.gogc != "" {
		k += "-gogc" + v.gogc
	}
	return k
}

func (v variant) label(c cfg) string {
	switch v.kind {
	case "bare":
		return "bare asynq (asynq.Config defaults)"
	case "bullmq":
		return "BullMQ " + bullmqVersion(c)
	}
	if v == (variant{kind: "ours"}) {
		return fmt.Sprintf("**ours** (worker-automation defaults: %d lanes, poll interval %v)", c.lanes, c.tci)
	}
	var parts []string
	if v.lanes > 0 {
		parts = append(parts, fmt.Sprintf("%d lane(s)", v.lanes))
	}
	if v.tci > 0 {
		parts = append(parts, fmt.Sprintf("poll interval %v", v.tci))
	}
	if v.gogc != "" {
		parts = append(parts, "GOGC="+v.gogc)
	}
	return "ours, " + strings.Join(parts, ", ")
}

type redisSrv struct {
	name string
	port int
	cmd  *exec.Cmd
	rdb  *redis.Client
}

type sample struct {
	wall          time.Duration
	cpu, redisCPU float64 // seconds
	others        float64 // seconds of CPU other processes used during the sample
	cmds          int64
	cmdBreakdown  map[string]int64
	lat           []int64
}

func orchestrate() error {
	var c cfg
	flag.IntVar(&c.n, "n", 20000, "tasks per throughput round")
	flag.IntVar(&c.rounds, "rounds", 5, "rounds per consumer and Redis")
	flag.IntVar(&c.conc, "conc", 50, "consumer concurrency")
	flag.IntVar(&c.rate, "rate", 1000, "latency test: tasks per second")
	flag.IntVar(&c.secs, "secs", 10, "latency test: seconds")
	latTCIs := flag.String("lat-tcis", "1ms,5ms,10ms,100ms", "other CEPJOBS_FETCH_POLL_INTERVALs to run the latency and idle tests of ours at")
	skipTP := flag.Bool("skip-throughput", false, "only the latency and idle tests (exploring; the results file keeps no throughput table)")
	flag.BoolVar(&c.experiments, "experiments", true, "also run the throughput experiments (-exp-lanes, GOGC=400)")
	expLanes := flag.String("exp-lanes", "1,4", "throughput experiments: other CEPJOBS_FETCH_LANES to run ours with")
	skipLat := flag.Bool("skip-latency", false, "only the throughput test (exploring; the results file keeps no latency or idle table)")
	flag.StringVar(&c.out, "out", "bench/RESULTS.md", "results file")
	flag.StringVar(&c.profOut, "profile-out", "bench/queue/profile-ours.txt", "pprof top of our worker under load")
	flag.StringVar(&c.idleProfOut, "idle-profile-out", "bench/queue/profile-ours-idle.txt", "pprof top of our worker idle")
	flag.Parse()
	for _, s := range strings.Split(*latTCIs, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("-lat-tcis: %w", err)
		}
		c.latTCIs = append(c.latTCIs, d)
	}
	def, err := oursConfig(consumerOpts{})
	if err != nil {
		return err
	}
	c.lanes, c.tci = def.Fetch.Lanes, def.Fetch.PollInterval
	c.restTCI = def.Automation.TaskCheckInterval

	wd, _ := os.Getwd()
	c.root = wd
	tmp, err := os.MkdirTemp("", "cepjobs-bench-queue-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	c.logs = tmp
	c.bin = filepath.Join(tmp, "queue")
	step("building harness binary")
	if out, err := exec.Command("go", "build", "-o", c.bin, "./bench/queue").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	step("installing bench/peers (npm ci)")
	npm := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	npm.Dir = filepath.Join(c.root, "bench/peers")
	if out, err := npm.CombinedOutput(); err != nil {
		return fmt.Errorf("npm ci: %v\n%s", err, out)
	}

	servers := []*redisSrv{}
	defer func() {
		for _, s := range servers {
			_ = s.rdb.Close()
			_ = s.cmd.Process.Kill()
			_ = s.cmd.Wait()
		}
	}()
	for _, spec := range []struct {
		name string
		args []string
	}{
		{"none", []string{"--save", "", "--appendonly", "no"}},
		{"aof", []string{"--save", "", "--appendonly", "yes", "--appendfsync", "everysec"}},
	} {
		s, err := startRedis(tmp, spec.name, spec.args)
		if err != nil {
			return err
		}
		servers = append(servers, s)
	}

	ours := variant{kind: "ours"}
	consumers := []variant{ours, {kind: "bare"}, {kind: "bullmq"}}
	if c.experiments {
		for _, f := range strings.Split(*expLanes, ",") {
			if l, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && l != c.lanes {
				consumers = append(consumers, variant{kind: "ours", lanes: l})
			}
		}
		consumers = append(consumers, variant{kind: "ours", gogc: "400"})
	}
	results := map[string]map[string][]sample{} // backend -> variant key -> rounds
	profiled := false
	for _, s := range servers {
		results[s.name] = map[string][]sample{}
		if *skipTP {
			continue
		}
		for r := 0; r < c.rounds; r++ {
			for i := range consumers {
				v := consumers[(i+r)%len(consumers)] // rotate the order each round
				prof := ""
				if v == ours && s.name == "none" && !profiled {
					prof = filepath.Join(tmp, "ours.pprof")
					profiled = true
				}
				smp, err := throughputRound(c, s, v, prof)
				if err != nil {
					return fmt.Errorf("%s/%s round %d: %w", s.name, v.key(), r+1, err)
				}
				results[s.name][v.key()] = append(results[s.name][v.key()], smp)
				step(fmt.Sprintf("redis=%s round %d %-16s %6.0f tasks/s  %.2f cmds/task  %.1f µs consumer + %.1f µs redis CPU/task",
					s.name, r+1, v.key(), float64(c.n)/smp.wall.Seconds(),
					float64(smp.cmds)/float64(c.n), smp.cpu/float64(c.n)*1e6, smp.redisCPU/float64(c.n)*1e6))
				if prof != "" {
					if err := pprofTop(c, prof, c.profOut); err != nil {
						return err
					}
				}
			}
		}
	}

	// Latency: each Redis, steady rate; ours at its default and at the
	// other intervals, BullMQ in the same run.
	latOrder := []variant{ours, {kind: "bullmq"}}
	for _, d := range c.latTCIs {
		if d != c.tci {
			latOrder = append(latOrder, variant{kind: "ours", tci: d})
		}
	}
	lat := map[string]map[string]sample{}
	if *skipLat {
		return writeThroughputOnly(c, servers, consumers, results)
	}
	for _, s := range servers {
		lat[s.name] = map[string]sample{}
		for _, v := range latOrder {
			smp, err := latencyRun(c, s, v)
			if err != nil {
				return fmt.Errorf("latency %s/%s: %w", s.name, v.key(), err)
			}
			slices.Sort(smp.lat)
			lat[s.name][v.key()] = smp
			step(fmt.Sprintf("latency redis=%s %-16s p50 %s p90 %s p99 %s (n=%d)", s.name, v.key(), ms(benchstat.Pct(smp.lat, 50)), ms(benchstat.Pct(smp.lat, 90)), ms(benchstat.Pct(smp.lat, 99)), len(smp.lat)))
		}
	}
	// Idle cost: empty queues, AOF Redis.
	idleSrv := servers[1]
	idle := map[string]sample{}
	for _, v := range latOrder {
		prof := ""
		if v == ours {
			prof = filepath.Join(tmp, "ours-idle.pprof")
		}
		smp, err := idleRun(c, idleSrv, []variant{v}, prof)
		if err != nil {
			return fmt.Errorf("idle %s: %w", v.key(), err)
		}
		idle[v.key()] = smp
		step(fmt.Sprintf("idle %-16s %.0f Redis cmds/s, consumer %.2f%%, redis-server %.2f%% of a core", v.key(),
			float64(smp.cmds)/smp.wall.Seconds(), smp.cpu/smp.wall.Seconds()*100, smp.redisCPU/smp.wall.Seconds()*100))
		if prof != "" {
			if err := pprofTop(c, prof, c.idleProfOut); err != nil {
				return err
			}
		}
	}
	fleetIdle, err := idleRun(c, idleSrv, []variant{ours, {kind: "rest"}}, "")
	if err != nil {
		return fmt.Errorf("idle fleet: %w", err)
	}
	step(fmt.Sprintf("idle fleet: %.0f Redis cmds/s, workers %.2f%%, redis-server %.2f%% of a core",
		float64(fleetIdle.cmds)/fleetIdle.wall.Seconds(), fleetIdle.cpu/fleetIdle.wall.Seconds()*100, fleetIdle.redisCPU/fleetIdle.wall.Seconds()*100))
	if *skipTP {
		consumers = nil
	}
	return writeResults(c, servers, consumers, results, latOrder, lat, idle, fleetIdle)
}

func step(s string) { fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), s) }

func pprofTop(c cfg, prof, out string) error {
	top, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=40", c.bin, prof).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pprof: %v\n%s", err, top)
	}
	return os.WriteFile(out, top, 0o644)
}

func startRedis(tmp, name string, extra []string) (*redisSrv, error) {
	port, err := benchstat.FreePort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(tmp, "redis-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir, "--daemonize", "no"}, extra...)
	cmd := exec.Command("redis-server", args...)
	lf, _ := os.Create(filepath.Join(dir, "log"))
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("redis-server: %w", err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	for i := 0; ; i++ {
		if rdb.Ping(context.Background()).Err() == nil {
			break
		}
		if i > 100 {
			return nil, fmt.Errorf("redis-server %s did not answer", name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	step(fmt.Sprintf("redis-server (%s) on port %d, pid %d", name, port, cmd.Process.Pid))
	return &redisSrv{name: name, port: port, cmd: cmd, rdb: rdb}, nil
}

func queueFor(kind string) string {
	switch kind {
	case "bare":
		return "default"
	case "bullmq":
		return "bench"
	}
	return tasks.QueueCritical
}

// produceAsynq enqueues n tasks with 16 concurrent clients.
func produceAsynq(port, n int, queue string) error {
	cl := asynq.NewClient(asynq.RedisClientOpt{Addr: fmt.Sprintf("127.0.0.1:%d", port), PoolSize: 32})
	defer cl.Close()
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if _, err := cl.Enqueue(asynq.NewTask(noopType, nil), asynq.Queue(queue)); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

type childMode int

const (
	modeThroughput childMode = iota
	modeLatency
	modeIdle
)

func consumerCmd(c cfg, s *redisSrv, v variant, n int, mode childMode, prof string) *exec.Cmd {
	if v.kind == "bullmq" {
		args := []string{"bullmq-driver.js", "consume", strconv.Itoa(s.port), "bench", strconv.Itoa(n), strconv.Itoa(c.conc)}
		if mode == modeLatency {
			args = append(args, "latency")
		}
		cmd := exec.Command("node", args...)
		cmd.Dir = filepath.Join(c.root, "bench/peers")
		return cmd
	}
	args := []string{"consume-asynq", "-kind", v.kind, "-port", strconv.Itoa(s.port), "-n", strconv.Itoa(n), "-conc", strconv.Itoa(c.conc)}
	if v.lanes > 0 {
		args = append(args, "-lanes", strconv.Itoa(v.lanes))
	}
	if v.tci > 0 {
		args = append(args, "-tci", v.tci.String())
	}
	switch mode {
	case modeLatency:
		args = append(args, "-latency")
	case modeIdle:
		args = append(args, "-idle")
	}
	if prof != "" {
		args = append(args, "-cpuprofile", prof)
	}
	cmd := exec.Command(c.bin, args...)
	if v.gogc != "" {
		cmd.Env = append(os.Environ(), "GOGC="+v.gogc)
	}
	return cmd
}

// child is a running consumer speaking the ready/go/done protocol.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

func startChild(c cfg, cmd *exec.Cmd, logName string) (*child, error) {
	lf, err := os.Create(filepath.Join(c.logs, logName))
	if err != nil {
		return nil, err
	}
	cmd.Stderr = lf
	in, _ := cmd.StdinPipe()
	outp, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ch := &child{cmd: cmd, stdin: in, out: bufio.NewReaderSize(outp, 1<<20)}
	line, err := ch.out.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		b, _ := os.ReadFile(lf.Name())
		return nil, fmt.Errorf("consumer did not get ready (%q, %v): %s", line, err, b)
	}
	return ch, nil
}

func (ch *child) finish() error {
	_ = ch.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- ch.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		_ = ch.cmd.Process.Kill()
		return fmt.Errorf("consumer did not exit")
	}
}

// readDone reads "done <ns>" (and "lat [...]") with a timeout.
func (ch *child) readDone(timeout time.Duration, wantLat bool) (time.Duration, []int64, error) {
	type res struct {
		wall time.Duration
		lat  []int64
		err  error
	}
	rc := make(chan res, 1)
	go func() {
		var r res
		line, err := ch.out.ReadString('\n')
		if err != nil {
			rc <- res{err: err}
			return
		}
		f := strings.Fields(line)
		if len(f) != 2 || f[0] != "done" {
			rc <- res{err: fmt.Errorf("unexpected %q", line)}
			return
		}
		ns, _ := strconv.ParseInt(f[1], 10, 64)
		r.wall = time.Duration(ns)
		if wantLat {
			line, err := ch.out.ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "lat ") {
				rc <- res{err: fmt.Errorf("no latencies: %v", err)}
				return
			}
			r.err = json.Unmarshal([]byte(line[4:]), &r.lat)
		}
		rc <- r
	}()
	select {
	case r := <-rc:
		return r.wall, r.lat, r.err
	case <-time.After(timeout):
		_ = ch.cmd.Process.Kill()
		return 0, nil, fmt.Errorf("timed out after %v", timeout)
	}
}

func commandStats(rdb *redis.Client) (int64, map[string]int64, error) {
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		return 0, nil, err
	}
	var total int64
	m := map[string]int64{}
	for _, l := range strings.Split(info, "\n") {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "cmdstat_") {
			continue
		}
		name, rest, _ := strings.Cut(strings.TrimPrefix(l, "cmdstat_"), ":")
		calls, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
		v, _ := strconv.ParseInt(calls, 10, 64)
		if name == "info" || name == "config|resetstat" {
			continue
		}
		m[name] = v
		total += v
	}
	return total, m, nil
}

func flush(s *redisSrv) error { return s.rdb.FlushAll(context.Background()).Err() }

func throughputRound(c cfg, s *redisSrv, v variant, prof string) (sample, error) {
	ctx := context.Background()
	if err := flush(s); err != nil {
		return sample{}, err
	}
	if v.kind == "bullmq" {
		p := exec.Command("node", "bullmq-driver.js", "produce", strconv.Itoa(s.port), "bench", strconv.Itoa(c.n))
		p.Dir = filepath.Join(c.root, "bench/peers")
		if out, err := p.CombinedOutput(); err != nil {
			return sample{}, fmt.Errorf("bullmq produce: %v: %s", err, out)
		}
	} else if err := produceAsynq(s.port, c.n, queueFor(v.kind)); err != nil {
		return sample{}, fmt.Errorf("enqueue: %w", err)
	}
	ch, err := startChild(c, consumerCmd(c, s, v, c.n, modeThroughput, prof), fmt.Sprintf("%s-%s.log", s.name, v.key()))
	if err != nil {
		return sample{}, err
	}
	if err := s.rdb.ConfigResetStat(ctx).Err(); err != nil {
		return sample{}, err
	}
	pid, rpid := ch.cmd.Process.Pid, s.cmd.Process.Pid
	cpu0, rcpu0, all0 := benchstat.ProcCPU(pid), benchstat.ProcCPU(rpid), machineBusy()
	if _, err := io.WriteString(ch.stdin, "go\n"); err != nil {
		return sample{}, err
	}
	wall, _, err := ch.readDone(2*time.Minute, false)
	if err != nil {
		return sample{}, err
	}
	all1 := machineBusy()
	time.Sleep(100 * time.Millisecond) // let the last acknowledgements land
	cpu1, rcpu1 := benchstat.ProcCPU(pid), benchstat.ProcCPU(rpid)
	cmds, bd, err := commandStats(s.rdb)
	if err != nil {
		return sample{}, err
	}
	if err := ch.finish(); err != nil {
		return sample{}, fmt.Errorf("consumer exit: %w", err)
	}
	return sample{wall: wall, cpu: cpu1 - cpu0, redisCPU: rcpu1 - rcpu0, cmds: cmds, cmdBreakdown: bd,
		others: max(0, (all1-all0)-(cpu1-cpu0)-(rcpu1-rcpu0))}, nil
}

// machineBusy is the CPU time, in seconds, all CPUs spent not idle since
// boot (/proc/stat): with the consumer's and redis-server's subtracted, how
// busy the rest of the machine was.
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
	var busy float64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		x, _ := strconv.ParseFloat(v, 64)
		busy += x
	}
	return busy / 100
}

func latencyRun(c cfg, s *redisSrv, v variant) (sample, error) {
	if err := flush(s); err != nil {
		return sample{}, err
	}
	total := c.rate * c.secs
	ch, err := startChild(c, consumerCmd(c, s, v, total, modeLatency, ""), fmt.Sprintf("lat-%s-%s.log", s.name, v.key()))
	if err != nil {
		return sample{}, err
	}
	if _, err := io.WriteString(ch.stdin, "go\n"); err != nil {
		return sample{}, err
	}
	time.Sleep(500 * time.Millisecond) // consumer up and idle before the first task
	pid, rpid := ch.cmd.Process.Pid, s.cmd.Process.Pid
	cpu0, rcpu0, all0, t0 := benchstat.ProcCPU(pid), benchstat.ProcCPU(rpid), machineBusy(), time.Now()
	var perr error
	if v.kind == "bullmq" {
		p := exec.Command("node", "bullmq-driver.js", "pace", strconv.Itoa(s.port), "bench", strconv.Itoa(c.rate), strconv.Itoa(c.secs))
		p.Dir = filepath.Join(c.root, "bench/peers")
		if out, err := p.CombinedOutput(); err != nil {
			perr = fmt.Errorf("bullmq pace: %v: %s", err, out)
		}
	} else {
		perr = paceAsynq(s.port, c.rate, total, queueFor(v.kind))
	}
	if perr != nil {
		_ = ch.cmd.Process.Kill()
		return sample{}, perr
	}
	_, lats, err := ch.readDone(time.Minute, true)
	if err != nil {
		return sample{}, err
	}
	cpu1, rcpu1, all1 := benchstat.ProcCPU(pid), benchstat.ProcCPU(rpid), machineBusy()
	if err := ch.finish(); err != nil {
		return sample{}, err
	}
	return sample{lat: lats, cpu: cpu1 - cpu0, redisCPU: rcpu1 - rcpu0, wall: time.Since(t0),
		others: max(0, (all1-all0)-(cpu1-cpu0)-(rcpu1-rcpu0))}, nil
}

// paceAsynq enqueues total tasks at rate/s, each carrying its enqueue time.
func paceAsynq(port, rate, total int, queue string) error {
	cl := asynq.NewClient(asynq.RedisClientOpt{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	defer cl.Close()
	interval := time.Second / time.Duration(rate)
	t0 := time.Now()
	for i := 0; i < total; i++ {
		if d := time.Until(t0.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		ts := strconv.FormatInt(time.Now().UnixNano(), 10)
		if _, err := cl.Enqueue(asynq.NewTask(noopType, []byte(ts)), asynq.Queue(queue)); err != nil {
			return err
		}
	}
	return nil
}

const idleFor = 10 * time.Second

// idleRun measures consumers on empty queues for idleFor: Redis commands,
// their CPU (summed) and redis-server's.
func idleRun(c cfg, s *redisSrv, vs []variant, prof string) (sample, error) {
	ctx := context.Background()
	if err := flush(s); err != nil {
		return sample{}, err
	}
	var chs []*child
	defer func() {
		// "stop" has them write their profiles; BullMQ's driver only
		// ends when killed.
		for _, ch := range chs {
			_, _ = io.WriteString(ch.stdin, "stop\n")
		}
		time.Sleep(500 * time.Millisecond)
		for _, ch := range chs {
			_ = ch.cmd.Process.Kill()
			_ = ch.cmd.Wait()
		}
	}()
	for _, v := range vs {
		ch, err := startChild(c, consumerCmd(c, s, v, 1<<30, modeIdle, prof), fmt.Sprintf("idle-%s.log", v.key()))
		if err != nil {
			return sample{}, err
		}
		chs = append(chs, ch)
		if _, err := io.WriteString(ch.stdin, "go\n"); err != nil {
			return sample{}, err
		}
	}
	time.Sleep(2 * time.Second) // past start-up
	if err := s.rdb.ConfigResetStat(ctx).Err(); err != nil {
		return sample{}, err
	}
	cpu := func() (sum float64) {
		for _, ch := range chs {
			sum += benchstat.ProcCPU(ch.cmd.Process.Pid)
		}
		return sum
	}
	rpid := s.cmd.Process.Pid
	cpu0, rcpu0, t0 := cpu(), benchstat.ProcCPU(rpid), time.Now()
	time.Sleep(idleFor)
	cpu1, rcpu1, wall := cpu(), benchstat.ProcCPU(rpid), time.Since(t0)
	cmds, bd, err := commandStats(s.rdb)
	if err != nil {
		return sample{}, err
	}
	return sample{wall: wall, cpu: cpu1 - cpu0, redisCPU: rcpu1 - rcpu0, cmds: cmds, cmdBreakdown: bd}, nil
}

// ------------------------------------------------------------------ report

func ms(us int64) string { return fmt.Sprintf("%.2f ms", float64(us)/1000) }

func bullmqVersion(c cfg) string {
	b, err := os.ReadFile(filepath.Join(c.root, "bench/peers/node_modules/bullmq/package.json"))
	if err != nil {
		return "?"
	}
	var p struct{ Version string }
	_ = json.Unmarshal(b, &p)
	return p.Version
}

func breakdown(bd map[string]int64, per float64) string {
	type kv struct {
		k string
		v int64
	}
	var kvs []kv
	for name, v := range bd {
		kvs = append(kvs, kv{name, v})
	}
	slices.SortFunc(kvs, func(a, b kv) int {
		if a.v != b.v {
			return int(b.v - a.v)
		}
		return strings.Compare(a.k, b.k)
	})
	var parts []string
	for i, e := range kvs {
		if i == 7 {
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.2f", e.k, float64(e.v)/per))
	}
	return strings.Join(parts, ", ")
}

func writeResults(c cfg, servers []*redisSrv, consumers []variant, res map[string]map[string][]sample,
	latOrder []variant, lat map[string]map[string]sample, idle map[string]sample, fleetIdle sample) error {
	var b strings.Builder
	nodeV, _ := exec.Command("node", "-v").Output()
	redisV, _ := servers[0].rdb.Info(context.Background(), "server").Result()
	rv := "?"
	for _, l := range strings.Split(redisV, "\n") {
		if strings.HasPrefix(l, "redis_version:") {
			rv = strings.TrimSpace(strings.TrimPrefix(l, "redis_version:"))
		}
	}
	cpuModel := "?"
	if ci, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(ci), "\n") {
			if strings.HasPrefix(l, "model name") {
				_, cpuModel, _ = strings.Cut(l, ": ")
				break
			}
		}
	}
	memKB := "?"
	if mi, err := os.ReadFile("/proc/meminfo"); err == nil {
		f := strings.Fields(strings.SplitN(string(mi), "\n", 2)[0])
		if len(f) > 1 {
			kb, _ := strconv.ParseFloat(f[1], 64)
			memKB = fmt.Sprintf("%.1f GiB", kb/1024/1024)
		}
	}
	goV, _ := exec.Command("go", "env", "GOVERSION").Output()
	nproc, _ := exec.Command("nproc").Output()
	var tcis []string
	for _, d := range c.latTCIs {
		tcis = append(tcis, d.String())
	}
	fmt.Fprintf(&b, "# Queue benchmarks (issue 8, items 1 and 2)\n\n")
	fmt.Fprintf(&b, "Generated by `make bench` (= `go run ./bench/queue -n %d -rounds %d -conc %d -rate %d -secs %d -lat-tcis %s -experiments=%v`) on %s.\n\n",
		c.n, c.rounds, c.conc, c.rate, c.secs, strings.Join(tcis, ","), c.experiments, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Machine: %s CPUs (%s), %s RAM; Redis %s; %s; node %s, bullmq %s, asynq v0.26.0. Harness, consumers and redis-servers share the machine "+
		"(and with whatever else runs: load average at the end %s; harness, consumers and redis-servers at niceness %s).\n\n",
		strings.TrimSpace(string(nproc)), strings.TrimSpace(cpuModel), memKB, rv, strings.TrimSpace(string(goV)), strings.TrimSpace(string(nodeV)), bullmqVersion(c),
		loadAvg(), niceness())
	fmt.Fprintf(&b, "**ours** is worker-automation as it starts with no CEPJOBS_* variable set but `CEPJOBS_AUTOMATION_CONCURRENCY=%d`: "+
		"`fleet.BenchAutomationWorker` builds it with the code `NewAutomationWorker` uses (`CEPJOBS_FETCH_LANES`=%d asynq servers, each with its own Redis pool, "+
		"queues `critical` 6 / `default` 3, `CEPJOBS_FETCH_POLL_INTERVAL`=%v, our retry/failure/error handler config, the task middleware with its Prometheus metrics, JSON slog at info), "+
		"with a no-op handler registered by the harness; tasks go to `critical`.\n\n", c.conc, c.lanes, c.tci)

	b.WriteString("## Throughput: " + strconv.Itoa(c.n) + " pre-enqueued no-op tasks, concurrency " + strconv.Itoa(c.conc) + "\n\n")
	b.WriteString("Each consumer is its own process, started after the tasks are enqueued; wall = `go` to the N-th handler call. " +
		"Redis commands = `INFO commandstats` delta (reset after enqueueing) / N, commands run inside Lua scripts included; CPU = `/proc/<pid>/stat` utime+stime delta / N " +
		"for the consumer and for redis-server. Median (min–max) over the rounds; consumer order rotates each round. " +
		"DB 0 of a private redis-server, flushed every round; BullMQ jobs use `removeOnComplete: true` (asynq deletes completed tasks too). " +
		"*redis-server busy* = its CPU ÷ wall; *Redis-bound ceiling* = 1 s ÷ redis-server CPU per task, the rate at which redis-server (one thread) would be 100 % busy; " +
		"*2-core ceiling* = 2 s ÷ (consumer + redis-server CPU per task); *other processes' CPU* = the machine's busy time (`/proc/stat`) minus consumer and redis-server, ÷ wall: " +
		"how much of the 2 cores the harness and anything else running took (the machine is shared; wall-clock rates move with it, CPU per task much less).\n\n")
	for _, s := range servers {
		persist := "no persistence (`--save \"\" --appendonly no`)"
		if s.name == "aof" {
			persist = "AOF (`--appendonly yes --appendfsync everysec`)"
		}
		fmt.Fprintf(&b, "### Redis with %s\n\n", persist)
		b.WriteString("| consumer | tasks/s median (min–max) | vs BullMQ | vs bare asynq | Redis cmds/task | consumer CPU µs/task | redis-server CPU µs/task | redis-server busy | Redis-bound ceiling | 2-core ceiling | other processes' CPU |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
		medTP := map[string]float64{}
		for _, v := range consumers {
			var tp []float64
			for _, smp := range res[s.name][v.key()] {
				tp = append(tp, float64(c.n)/smp.wall.Seconds())
			}
			medTP[v.key()] = benchstat.Median(tp)
		}
		for _, v := range consumers {
			var tp, cmds, cpu, rcpu, busy, others []float64
			for _, smp := range res[s.name][v.key()] {
				tp = append(tp, float64(c.n)/smp.wall.Seconds())
				cmds = append(cmds, float64(smp.cmds)/float64(c.n))
				cpu = append(cpu, smp.cpu/float64(c.n)*1e6)
				rcpu = append(rcpu, smp.redisCPU/float64(c.n)*1e6)
				busy = append(busy, smp.redisCPU/smp.wall.Seconds()*100)
				others = append(others, smp.others/smp.wall.Seconds())
			}
			fmt.Fprintf(&b, "| %s | %.0f (%.0f–%.0f) | %.2f× | %.2f× | %.2f | %.0f | %.0f | %.0f %% | %.0f/s | %.0f/s | %.2f cores |\n",
				v.label(c), benchstat.Median(tp), slices.Min(tp), slices.Max(tp), benchstat.Median(tp)/medTP["bullmq"], benchstat.Median(tp)/medTP["bare"],
				benchstat.Median(cmds), benchstat.Median(cpu), benchstat.Median(rcpu), benchstat.Median(busy), 1e6/benchstat.Median(rcpu), 2e6/(benchstat.Median(cpu)+benchstat.Median(rcpu)), benchstat.Median(others))
		}
		b.WriteString("\nRedis commands per task by command (median round by throughput):\n\n")
		for _, v := range consumers {
			sm := slices.Clone(res[s.name][v.key()])
			slices.SortFunc(sm, func(a, b sample) int { return int(a.wall - b.wall) })
			fmt.Fprintf(&b, "- %s: %s\n", v.key(), breakdown(sm[len(sm)/2].cmdBreakdown, float64(c.n)))
		}
		b.WriteString("\n")
	}

	fmt.Fprintf(&b, "## Enqueue-to-start latency: %d tasks/s for %d s, concurrency %d\n\n", c.rate, c.secs, c.conc)
	b.WriteString("Start time (handler entry) − enqueue time carried in the payload (taken just before the enqueue call), same machine clock; " +
		"asynq tasks produced by one Go client enqueuing on schedule, BullMQ's by `Queue.add` from node on schedule. " +
		"Each row is one run, one after the other in the same harness run; CPU over the run, ÷ tasks.\n\n")
	for _, s := range servers {
		persist := "no persistence"
		if s.name == "aof" {
			persist = "AOF everysec"
		}
		fmt.Fprintf(&b, "### Redis with %s\n\n", persist)
		b.WriteString("| consumer | n | p50 | p90 | p99 | max | p99 ÷ BullMQ p99 | consumer CPU µs/task | redis-server CPU µs/task | other processes' CPU |\n|---|---|---|---|---|---|---|---|---|---|\n")
		bull := benchstat.Pct(lat[s.name]["bullmq"].lat, 99)
		for _, v := range latOrder {
			smp := lat[s.name][v.key()]
			l := smp.lat
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %.2f | %.0f | %.0f | %.2f cores |\n", v.label(c), len(l), ms(benchstat.Pct(l, 50)), ms(benchstat.Pct(l, 90)), ms(benchstat.Pct(l, 99)), ms(l[len(l)-1]),
				float64(benchstat.Pct(l, 99))/float64(bull), smp.cpu/float64(len(l))*1e6, smp.redisCPU/float64(len(l))*1e6, smp.others/smp.wall.Seconds())
		}
		b.WriteString("\n")
	}

	fmt.Fprintf(&b, "## Idle cost: empty queues, %v, AOF Redis\n\n", idleFor)
	b.WriteString("| consumer | Redis commands/s | consumer CPU (% of one core) | redis-server CPU (% of one core) | commands/s by command |\n|---|---|---|---|---|\n")
	for _, v := range latOrder {
		smp := idle[v.key()]
		fmt.Fprintf(&b, "| %s | %.0f | %.2f %% | %.2f %% | %s |\n", v.label(c), float64(smp.cmds)/smp.wall.Seconds(),
			smp.cpu/smp.wall.Seconds()*100, smp.redisCPU/smp.wall.Seconds()*100, breakdown(smp.cmdBreakdown, smp.wall.Seconds()))
	}
	fmt.Fprintf(&b, "\n**Idle fleet** (one replica of each worker at the defaults: worker-automation as above, plus the asynq servers of worker-stats — "+
		"`backup`/`stats`/`low` — and worker-llm — `llm` — built with `fleet.WorkerServerConfig` as their constructors do, one lane each, `CEPJOBS_TASK_CHECK_INTERVAL` %v): "+
		"%.0f Redis commands/s, redis-server %.2f %% of a core, the worker processes %.2f %% of a core together (%s).\n\n",
		c.restTCI, float64(fleetIdle.cmds)/fleetIdle.wall.Seconds(), fleetIdle.redisCPU/fleetIdle.wall.Seconds()*100, fleetIdle.cpu/fleetIdle.wall.Seconds()*100,
		breakdown(fleetIdle.cmdBreakdown, fleetIdle.wall.Seconds()))

	// Hand-written notes after the marker survive regeneration.
	const marker = "<!-- notes: kept when the harness rewrites this file -->"
	if old, err := os.ReadFile(c.out); err == nil {
		if i := strings.Index(string(old), marker); i >= 0 {
			b.WriteString(string(old[i:]))
		}
	}
	return os.WriteFile(c.out, []byte(b.String()), 0o644)
}

// writeThroughputOnly writes just the throughput tables (-skip-latency).
func writeThroughputOnly(c cfg, servers []*redisSrv, consumers []variant, res map[string]map[string][]sample) error {
	if err := writeResults(c, servers, consumers, res, nil, nil, nil, sample{wall: time.Second}); err != nil {
		return err
	}
	b, err := os.ReadFile(c.out)
	if err != nil {
		return err
	}
	if i := strings.Index(string(b), "## Enqueue-to-start latency"); i >= 0 {
		b = b[:i]
	}
	return os.WriteFile(c.out, b, 0o644)
}

// loadAvg is the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " / ")
}

// niceness is this process's nice value (children inherit it): run the
// harness under `nice -n -10` on a busy shared machine.
func niceness() string {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return "?"
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	return f[16] // field 19
}
