// Command queue benchmarks no-op task throughput and enqueue-to-start latency
// of our asynq worker construction (fleet.WorkerServerConfig, as
// worker-automation builds it), bare asynq (asynq.Config defaults) and BullMQ
// (bench/peers), each consumer in its own child process against the same
// private redis-server(s) started here. Issue 8 items 1 and 2.
//
//	go run ./bench/queue [-n 20000] [-rounds 3] [-conc 50] [-rate 1000] [-secs 10] [-out bench/RESULTS.md]
//
// or `make bench`. Needs redis-server, node and npm on the PATH.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
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

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

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
	kind    string // ours | bare
	port    int
	n       int
	conc    int
	tci     time.Duration
	latency bool
	prof    string
	servers int
	pool    int
	idle    time.Duration
}

func consumeAsynq(args []string) error {
	var o consumerOpts
	fs := flag.NewFlagSet("consume-asynq", flag.ExitOnError)
	fs.StringVar(&o.kind, "kind", "ours", "")
	fs.IntVar(&o.port, "port", 6379, "")
	fs.IntVar(&o.n, "n", 20000, "")
	fs.IntVar(&o.conc, "conc", 50, "")
	fs.DurationVar(&o.tci, "tci", 100*time.Millisecond, "")
	fs.BoolVar(&o.latency, "latency", false, "")
	fs.StringVar(&o.prof, "cpuprofile", "", "")
	fs.IntVar(&o.servers, "servers", 1, "asynq.Servers in the process, concurrency split between them (experiment)")
	fs.IntVar(&o.pool, "poolsize", 0, "Redis pool size override (experiment; 0: as configured)")
	fs.DurationVar(&o.idle, "idle", 0, "idle mode: run this long on an empty queue, then report")
	_ = fs.Parse(args)

	url := fmt.Sprintf("redis://127.0.0.1:%d/0", o.port)
	var (
		opt asynq.RedisConnOpt
		cfg asynq.Config
	)
	if o.kind == "ours" {
		var err error
		if opt, err = redisconn.Parse(url); err != nil {
			return err
		}
		// As worker-automation: critical 6 / default 3, JSON slog at info
		// (CEPJOBS_LOG_LEVEL default), shutdown timeout 25 s (default).
		log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
		cfg = fleet.WorkerServerConfig(fleet.WorkerConfig{
			Concurrency:       o.conc,
			Queues:            map[string]int{tasks.QueueCritical: 6, tasks.QueueDefault: 3},
			ShutdownTimeout:   25 * time.Second,
			TaskCheckInterval: o.tci,
		}, log)
	} else {
		opt = asynq.RedisClientOpt{Addr: fmt.Sprintf("127.0.0.1:%d", o.port)}
		cfg = asynq.Config{Concurrency: o.conc}
	}
	if o.pool > 0 {
		switch v := opt.(type) {
		case asynq.RedisClientOpt:
			v.PoolSize = o.pool
			opt = v
		case *asynq.RedisClientOpt:
			v.PoolSize = o.pool
		}
	}
	if o.servers < 1 {
		o.servers = 1
	}
	cfg.Concurrency = o.conc / o.servers
	var srvs []*asynq.Server
	for i := 0; i < o.servers; i++ {
		srvs = append(srvs, asynq.NewServer(opt, cfg))
	}
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
	for _, srv := range srvs {
		if err := srv.Start(mux); err != nil {
			return err
		}
	}
	var wall time.Duration
	if o.idle > 0 {
		time.Sleep(o.idle)
		wall = time.Since(t0)
	} else {
		wall = <-done
	}
	if o.prof != "" {
		pprof.StopCPUProfile()
	}
	fmt.Printf("done %d\n", wall.Nanoseconds())
	if o.latency {
		mu.Lock()
		b, _ := json.Marshal(lats)
		mu.Unlock()
		fmt.Printf("lat %s\n", b)
	}
	in.Scan() // "quit" or EOF
	for _, srv := range srvs {
		srv.Shutdown()
	}
	return nil
}

// -------------------------------------------------------------- orchestrator

type cfg struct {
	n, rounds, conc, rate, secs int
	tci                         time.Duration
	tuned                       time.Duration
	out, profOut                string
	experiments                 bool
	root, bin, logs             string
}

type redisSrv struct {
	name string
	port int
	cmd  *exec.Cmd
	rdb  *redis.Client
}

type sample struct {
	wall              time.Duration
	cpu, redisCPU     float64 // seconds
	cmds              int64
	cmdBreakdown      map[string]int64
	lat               []int64
	consumer, backend string
}

func orchestrate() error {
	var c cfg
	flag.IntVar(&c.n, "n", 20000, "tasks per throughput round")
	flag.IntVar(&c.rounds, "rounds", 3, "rounds per consumer and Redis")
	flag.IntVar(&c.conc, "conc", 50, "consumer concurrency")
	flag.IntVar(&c.rate, "rate", 1000, "latency test: tasks per second")
	flag.IntVar(&c.secs, "secs", 10, "latency test: seconds")
	tciDef := 100 * time.Millisecond
	if v := os.Getenv("CEPJOBS_TASK_CHECK_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("CEPJOBS_TASK_CHECK_INTERVAL: %w", err)
		}
		tciDef = d
	}
	flag.DurationVar(&c.tci, "tci", tciDef, "our TaskCheckInterval (CEPJOBS_TASK_CHECK_INTERVAL)")
	flag.DurationVar(&c.tuned, "tuned-tci", 5*time.Millisecond, "TaskCheckInterval of the tuned variant of ours (0: skip)")
	flag.BoolVar(&c.experiments, "experiments", true, "also run the knob experiments (Redis pool 64, two servers)")
	flag.StringVar(&c.out, "out", "bench/RESULTS.md", "results file")
	flag.StringVar(&c.profOut, "profile-out", "bench/queue/profile-ours.txt", "pprof top of our worker")
	flag.Parse()

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

	consumers := []string{"ours", "bare", "bullmq"}
	if c.tuned > 0 {
		consumers = append(consumers, "ours-tuned")
	}
	if c.experiments {
		consumers = append(consumers, "ours-pool64", "ours-2srv")
	}
	results := map[string]map[string][]sample{} // backend -> consumer -> rounds
	profiled := false
	for _, s := range servers {
		results[s.name] = map[string][]sample{}
		for r := 0; r < c.rounds; r++ {
			for i := range consumers {
				k := consumers[(i+r)%len(consumers)] // rotate the order each round
				prof := ""
				if k == "ours" && s.name == "none" && !profiled {
					prof = filepath.Join(tmp, "ours.pprof")
					profiled = true
				}
				smp, err := throughputRound(c, s, k, prof)
				if err != nil {
					return fmt.Errorf("%s/%s round %d: %w", s.name, k, r+1, err)
				}
				results[s.name][k] = append(results[s.name][k], smp)
				step(fmt.Sprintf("redis=%s round %d %-10s %6.0f tasks/s  wall %v  %.2f cmds/task  %.1f µs CPU/task",
					s.name, r+1, k, float64(c.n)/smp.wall.Seconds(), smp.wall.Round(time.Millisecond),
					float64(smp.cmds)/float64(c.n), smp.cpu/float64(c.n)*1e6))
				if prof != "" {
					top, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=30", c.bin, prof).CombinedOutput()
					if err != nil {
						return fmt.Errorf("pprof: %v\n%s", err, top)
					}
					if err := os.WriteFile(c.profOut, top, 0o644); err != nil {
						return err
					}
				}
			}
		}
	}

	// Latency: same run, AOF server, steady rate.
	lat := map[string]sample{}
	latOrder := []string{"ours", "bullmq"}
	if c.tuned > 0 {
		latOrder = append(latOrder, "ours-tuned")
	}
	latSrv := servers[1]
	for _, k := range latOrder {
		smp, err := latencyRun(c, latSrv, k)
		if err != nil {
			return fmt.Errorf("latency %s: %w", k, err)
		}
		lat[k] = smp
		slices.Sort(smp.lat)
		step(fmt.Sprintf("latency %-10s p50 %s p90 %s p99 %s (n=%d)", k, ms(pct(smp.lat, 50)), ms(pct(smp.lat, 90)), ms(pct(smp.lat, 99)), len(smp.lat)))
	}
	// Idle cost of each fetch strategy: empty queues for idleFor.
	idle := map[string]sample{}
	for _, k := range latOrder {
		smp, err := idleRun(c, latSrv, k)
		if err != nil {
			return fmt.Errorf("idle %s: %w", k, err)
		}
		idle[k] = smp
		step(fmt.Sprintf("idle %-10s %.1f Redis cmds/s, %.2f%% of a CPU", k, float64(smp.cmds)/smp.wall.Seconds(), smp.cpu/smp.wall.Seconds()*100))
	}
	return writeResults(c, servers, consumers, results, latOrder, lat, idle)
}

func step(s string) { fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), s) }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startRedis(tmp, name string, extra []string) (*redisSrv, error) {
	port, err := freePort()
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

func consumerCmd(c cfg, s *redisSrv, kind string, n int, latency bool, prof string) *exec.Cmd {
	switch kind {
	case "bullmq":
		args := []string{"bullmq-driver.js", "consume", strconv.Itoa(s.port), "bench", strconv.Itoa(n), strconv.Itoa(c.conc)}
		if latency {
			args = append(args, "latency")
		}
		cmd := exec.Command("node", args...)
		cmd.Dir = filepath.Join(c.root, "bench/peers")
		return cmd
	}
	k, tci := kind, c.tci
	var extra []string
	switch kind {
	case "ours-tuned":
		k, tci = "ours", c.tuned
	case "ours-pool64":
		k, extra = "ours", []string{"-poolsize", "64"}
	case "ours-2srv":
		k, extra = "ours", []string{"-servers", "2"}
	}
	args := []string{"consume-asynq", "-kind", k, "-port", strconv.Itoa(s.port), "-n", strconv.Itoa(n),
		"-conc", strconv.Itoa(c.conc), "-tci", tci.String()}
	args = append(args, extra...)
	if latency {
		args = append(args, "-latency")
	}
	if prof != "" {
		args = append(args, "-cpuprofile", prof)
	}
	return exec.Command(c.bin, args...)
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

// procCPU is utime+stime of pid in seconds, from /proc/<pid>/stat.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// f[0] is field 3 (state); utime is field 14, stime 15.
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100 // CLK_TCK is 100 on Linux
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

func throughputRound(c cfg, s *redisSrv, kind, prof string) (sample, error) {
	ctx := context.Background()
	if err := flush(s); err != nil {
		return sample{}, err
	}
	if kind == "bullmq" {
		p := exec.Command("node", "bullmq-driver.js", "produce", strconv.Itoa(s.port), "bench", strconv.Itoa(c.n))
		p.Dir = filepath.Join(c.root, "bench/peers")
		if out, err := p.CombinedOutput(); err != nil {
			return sample{}, fmt.Errorf("bullmq produce: %v: %s", err, out)
		}
	} else if err := produceAsynq(s.port, c.n, queueFor(kind)); err != nil {
		return sample{}, fmt.Errorf("enqueue: %w", err)
	}
	ch, err := startChild(c, consumerCmd(c, s, kind, c.n, false, prof), fmt.Sprintf("%s-%s.log", s.name, kind))
	if err != nil {
		return sample{}, err
	}
	if err := s.rdb.ConfigResetStat(ctx).Err(); err != nil {
		return sample{}, err
	}
	pid, rpid := ch.cmd.Process.Pid, s.cmd.Process.Pid
	cpu0, rcpu0 := procCPU(pid), procCPU(rpid)
	if _, err := io.WriteString(ch.stdin, "go\n"); err != nil {
		return sample{}, err
	}
	wall, _, err := ch.readDone(2*time.Minute, false)
	if err != nil {
		return sample{}, err
	}
	time.Sleep(100 * time.Millisecond) // let the last acknowledgements land
	cpu1, rcpu1 := procCPU(pid), procCPU(rpid)
	cmds, bd, err := commandStats(s.rdb)
	if err != nil {
		return sample{}, err
	}
	if err := ch.finish(); err != nil {
		return sample{}, fmt.Errorf("consumer exit: %w", err)
	}
	return sample{wall: wall, cpu: cpu1 - cpu0, redisCPU: rcpu1 - rcpu0, cmds: cmds, cmdBreakdown: bd, consumer: kind, backend: s.name}, nil
}

func latencyRun(c cfg, s *redisSrv, kind string) (sample, error) {
	if err := flush(s); err != nil {
		return sample{}, err
	}
	total := c.rate * c.secs
	ch, err := startChild(c, consumerCmd(c, s, kind, total, true, ""), fmt.Sprintf("lat-%s.log", kind))
	if err != nil {
		return sample{}, err
	}
	if _, err := io.WriteString(ch.stdin, "go\n"); err != nil {
		return sample{}, err
	}
	time.Sleep(500 * time.Millisecond) // consumer up and idle before the first task
	var perr error
	if kind == "bullmq" {
		p := exec.Command("node", "bullmq-driver.js", "pace", strconv.Itoa(s.port), "bench", strconv.Itoa(c.rate), strconv.Itoa(c.secs))
		p.Dir = filepath.Join(c.root, "bench/peers")
		if out, err := p.CombinedOutput(); err != nil {
			perr = fmt.Errorf("bullmq pace: %v: %s", err, out)
		}
	} else {
		perr = paceAsynq(s.port, c.rate, total, queueFor(kind))
	}
	if perr != nil {
		_ = ch.cmd.Process.Kill()
		return sample{}, perr
	}
	_, lats, err := ch.readDone(time.Minute, true)
	if err != nil {
		return sample{}, err
	}
	if err := ch.finish(); err != nil {
		return sample{}, err
	}
	return sample{lat: lats, consumer: kind, backend: s.name}, nil
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

// ------------------------------------------------------------------ report

func pct(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}

func ms(us int64) string { return fmt.Sprintf("%.2f ms", float64(us)/1000) }

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func label(k string, c cfg) string {
	switch k {
	case "ours":
		return fmt.Sprintf("ours (fleet.WorkerServerConfig, TaskCheckInterval %v)", c.tci)
	case "ours-tuned":
		return fmt.Sprintf("ours, TaskCheckInterval %v", c.tuned)
	case "bare":
		return "bare asynq (defaults)"
	case "ours-pool64":
		return "ours, Redis PoolSize 64 (experiment)"
	case "ours-2srv":
		return "ours, 2 asynq.Servers × 25 in one process (experiment)"
	}
	return "BullMQ " + bullmqVersion(c)
}

func bullmqVersion(c cfg) string {
	b, err := os.ReadFile(filepath.Join(c.root, "bench/peers/node_modules/bullmq/package.json"))
	if err != nil {
		return "?"
	}
	var p struct{ Version string }
	_ = json.Unmarshal(b, &p)
	return p.Version
}

const idleFor = 5 * time.Second

// idleRun measures a consumer on empty queues: Redis commands and CPU.
func idleRun(c cfg, s *redisSrv, kind string) (sample, error) {
	ctx := context.Background()
	if err := flush(s); err != nil {
		return sample{}, err
	}
	ch, err := startChild(c, consumerCmd(c, s, kind, 1<<30, false, ""), fmt.Sprintf("idle-%s.log", kind))
	if err != nil {
		return sample{}, err
	}
	defer func() { _ = ch.cmd.Process.Kill(); _ = ch.cmd.Wait() }()
	if _, err := io.WriteString(ch.stdin, "go\n"); err != nil {
		return sample{}, err
	}
	time.Sleep(time.Second) // past start-up
	if err := s.rdb.ConfigResetStat(ctx).Err(); err != nil {
		return sample{}, err
	}
	pid := ch.cmd.Process.Pid
	cpu0, t0 := procCPU(pid), time.Now()
	time.Sleep(idleFor)
	cpu1, wall := procCPU(pid), time.Since(t0)
	cmds, _, err := commandStats(s.rdb)
	if err != nil {
		return sample{}, err
	}
	return sample{wall: wall, cpu: cpu1 - cpu0, cmds: cmds, consumer: kind, backend: s.name}, nil
}

func writeResults(c cfg, servers []*redisSrv, consumers []string, res map[string]map[string][]sample, latOrder []string, lat map[string]sample, idle map[string]sample) error {
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
	fmt.Fprintf(&b, "# Queue benchmarks (issue 8, items 1 and 2)\n\n")
	fmt.Fprintf(&b, "Generated by `make bench` (= `go run ./bench/queue -n %d -rounds %d -conc %d -rate %d -secs %d -tci %v -tuned-tci %v`) on %s.\n\n",
		c.n, c.rounds, c.conc, c.rate, c.secs, c.tci, c.tuned, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Machine: %s CPUs (%s), %s RAM; Redis %s; %s; node %s, bullmq %s, asynq v0.26.0. Harness, consumers and redis-server share the machine.\n\n",
		strings.TrimSpace(string(nproc)), strings.TrimSpace(cpuModel), memKB, rv, strings.TrimSpace(string(goV)), strings.TrimSpace(string(nodeV)), bullmqVersion(c))
	b.WriteString("## Throughput: " + strconv.Itoa(c.n) + " pre-enqueued no-op tasks, concurrency " + strconv.Itoa(c.conc) + "\n\n")
	b.WriteString("Each consumer is its own process, started after the tasks are enqueued; wall = `go` to the N-th handler call. " +
		"Redis commands = `INFO commandstats` delta (reset after enqueueing) / N; CPU = `/proc/<pid>/stat` utime+stime delta / N " +
		"for the consumer and for redis-server. Median (min–max) over the rounds; consumer order rotates each round. " +
		"asynq consumers run a private redis-server on a free port, DB 0 flushed every round; BullMQ jobs use `removeOnComplete: true` (asynq deletes completed tasks too).\n\n")
	for _, s := range servers {
		persist := "no persistence (`--save \"\" --appendonly no`)"
		if s.name == "aof" {
			persist = "AOF (`--appendonly yes --appendfsync everysec`)"
		}
		fmt.Fprintf(&b, "### Redis with %s\n\n", persist)
		b.WriteString("| consumer | tasks/s median (min–max) | wall median | vs BullMQ | vs bare asynq | Redis cmds/task | consumer CPU µs/task | redis-server CPU µs/task |\n|---|---|---|---|---|---|---|---|\n")
		medTP := map[string]float64{}
		for _, k := range consumers {
			var tp []float64
			for _, smp := range res[s.name][k] {
				tp = append(tp, float64(c.n)/smp.wall.Seconds())
			}
			medTP[k] = median(tp)
		}
		for _, k := range consumers {
			var tp, wall, cmds, cpu, rcpu []float64
			for _, smp := range res[s.name][k] {
				tp = append(tp, float64(c.n)/smp.wall.Seconds())
				wall = append(wall, smp.wall.Seconds())
				cmds = append(cmds, float64(smp.cmds)/float64(c.n))
				cpu = append(cpu, smp.cpu/float64(c.n)*1e6)
				rcpu = append(rcpu, smp.redisCPU/float64(c.n)*1e6)
			}
			fmt.Fprintf(&b, "| %s | %.0f (%.0f–%.0f) | %.2f s | %.2f× | %.2f× | %.2f | %.0f | %.0f |\n",
				label(k, c), median(tp), slices.Min(tp), slices.Max(tp), median(wall), median(tp)/medTP["bullmq"], median(tp)/medTP["bare"],
				median(cmds), median(cpu), median(rcpu))
		}
		b.WriteString("\nRedis commands per task by command (median round):\n\n")
		for _, k := range consumers {
			sm := res[s.name][k]
			bd := sm[len(sm)/2].cmdBreakdown
			type kv struct {
				k string
				v int64
			}
			var kvs []kv
			for name, v := range bd {
				kvs = append(kvs, kv{name, v})
			}
			slices.SortFunc(kvs, func(a, b kv) int { return int(b.v - a.v) })
			var parts []string
			for i, e := range kvs {
				if i == 6 {
					break
				}
				parts = append(parts, fmt.Sprintf("%s %.2f", e.k, float64(e.v)/float64(c.n)))
			}
			fmt.Fprintf(&b, "- %s: %s\n", k, strings.Join(parts, ", "))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "## Enqueue-to-start latency: %d tasks/s for %d s, concurrency %d, Redis with AOF\n\n", c.rate, c.secs, c.conc)
	b.WriteString("Start time (handler entry) − enqueue timestamp carried in the payload, same machine clock; " +
		"asynq produced by one Go client enqueuing on schedule, BullMQ by `Queue.add` from node on schedule. Run one after the other in the same harness run.\n\n")
	b.WriteString("| consumer | n | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|\n")
	for _, k := range latOrder {
		l := lat[k].lat
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s |\n", label(k, c), len(l), ms(pct(l, 50)), ms(pct(l, 90)), ms(pct(l, 99)), ms(l[len(l)-1]))
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "### Idle cost (empty queues, %v, same Redis)\n\n| consumer | Redis commands/s | CPU (%% of one core) |\n|---|---|---|\n", idleFor)
	for _, k := range latOrder {
		smp := idle[k]
		fmt.Fprintf(&b, "| %s | %.0f | %.2f%% |\n", label(k, c), float64(smp.cmds)/smp.wall.Seconds(), smp.cpu/smp.wall.Seconds()*100)
	}
	b.WriteString("\n")
	// Hand-written notes after the marker survive regeneration.
	const marker = "<!-- notes: kept when the harness rewrites this file -->"
	if old, err := os.ReadFile(c.out); err == nil {
		if i := strings.Index(string(old), marker); i >= 0 {
			b.WriteString(string(old[i:]))
		}
	}
	return os.WriteFile(c.out, []byte(b.String()), 0o644)
}
