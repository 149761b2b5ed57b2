// Command intake benchmarks the real intake binary's POST /v1/leads against a
// plain-INSERT pgbench on the same PostgreSQL. Issue 8 item 3.
//
//	go run ./bench/intake [-rounds 3] [-conc 50] [-secs 10] [-pg-clients 16] [-out bench/RESULTS.md]
//
// It builds cmd/intake (go build, no race detector), creates a throwaway
// database on postgres://postgres@127.0.0.1:5432 (dropped at the end), starts
// a private redis-server on a free loopback port (AOF everysec, noeviction,
// as deploy/redis.conf), and starts intake on a free loopback port with one
// leads:write token and CEPJOBS_RATE_LIMIT high. Then, for -rounds rounds,
// alternating which goes first:
//
//   - intake: -conc keep-alive HTTP clients (this process) post valid leads
//     with distinct emails for -secs → accepted leads/s, client latency
//     p50/p90/p99, errors, CPU per request of intake, PostgreSQL (all
//     postgres processes), redis-server and the load generator;
//   - pgbench -M prepared -c 16 -j 2 -T secs -n -f insert.sql on the same
//     database, one single-row INSERT per transaction → tps, PostgreSQL and
//     pgbench CPU per transaction.
//
// The results table is appended to -out under "## Intake vs pgbench".
// Needs redis-server and pgbench on the PATH.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cepcomunicacion/cepjobs/bench/internal/benchstat"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

type cfg struct {
	rounds, conc, secs, pgClients, pgThreads int
	adminURL, out                            string
	write                                    bool
	profile, profileKind                     string
	loadgen                                  string
	intakeEnv                                envFlags
}

type envFlags []string

func (e *envFlags) String() string     { return strings.Join(*e, ",") }
func (e *envFlags) Set(v string) error { *e = append(*e, v); return nil }

type intakeSample struct {
	accepted, dup, errs, total int64
	statuses                   map[string]int64
	wall                       time.Duration
	lat                        []int64           // µs, sorted (Go load generator)
	wrkPct                     map[float64]int64 // µs by percentile (wrk)
	intakeCPU, pgCPU, redisCPU float64           // seconds
	genCPU                     float64
	db                         dbStats
}

type pgbenchSample struct {
	tps           float64
	tx            int64
	pgCPU, cliCPU float64
	wall          time.Duration
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func step(s string) { fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), s) }

func run() error {
	var c cfg
	flag.IntVar(&c.rounds, "rounds", 3, "rounds (intake and pgbench each run once per round, order alternating)")
	flag.IntVar(&c.conc, "conc", 50, "concurrent HTTP clients")
	flag.IntVar(&c.secs, "secs", 10, "seconds per measurement")
	flag.IntVar(&c.pgClients, "pg-clients", 16, "pgbench -c")
	flag.IntVar(&c.pgThreads, "pg-threads", 2, "pgbench -j")
	flag.StringVar(&c.adminURL, "admin-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL to create the throwaway database on")
	flag.StringVar(&c.out, "out", "bench/RESULTS.md", "results file (a section is appended)")
	flag.BoolVar(&c.write, "write", true, "append the results to -out")
	flag.StringVar(&c.profile, "profile", "", "write a profile of the intake during the first intake round to this file (and print its top)")
	flag.StringVar(&c.profileKind, "profile-kind", "cpu", "what -profile records: cpu, or allocs (the allocations made during the round)")
	flag.StringVar(&c.loadgen, "loadgen", "wrk", "load generator: wrk (scripts/ensure-wrk.sh installs it) or go (this process)")
	flag.Var(&c.intakeEnv, "intake-env", "extra NAME=VALUE for the intake process (repeatable)")
	flag.Parse()
	if c.profileKind != "cpu" && c.profileKind != "allocs" {
		return fmt.Errorf("-profile-kind: want cpu or allocs, got %q", c.profileKind)
	}
	ctx := context.Background()

	tmp, err := os.MkdirTemp("", "cepjobs-bench-intake-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	step("building intake (go build -o tmp ./cmd/intake)")
	bin := filepath.Join(tmp, "intake")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/intake").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}

	// Throwaway database.
	admin, err := pgx.Connect(ctx, c.adminURL)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer admin.Close(ctx)
	dbName := fmt.Sprintf("cepjobs_bench_intake_%d", os.Getpid())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+dbName); err != nil {
		return fmt.Errorf("create database: %w", err)
	}
	defer func() {
		if _, err := admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+dbName+" WITH (FORCE)"); err != nil {
			step("drop database: " + err.Error())
		} else {
			step("dropped database " + dbName)
		}
	}()
	dbURL := strings.Replace(c.adminURL, "/postgres?", "/"+dbName+"?", 1)
	db, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer db.Close(ctx)
	if _, err := db.Exec(ctx, "CREATE TABLE bench_rows (id bigserial PRIMARY KEY, email text, created timestamptz DEFAULT now())"); err != nil {
		return err
	}
	var pgVersion, syncCommit, fsync, sharedBuf, maxConn string
	_ = db.QueryRow(ctx, "SELECT current_setting('server_version'), current_setting('synchronous_commit'), current_setting('fsync'), current_setting('shared_buffers'), current_setting('max_connections')").Scan(&pgVersion, &syncCommit, &fsync, &sharedBuf, &maxConn)
	script := filepath.Join(tmp, "insert.sql")
	if err := os.WriteFile(script, []byte("insert into bench_rows(email) values ('x' || random());\n"), 0o644); err != nil {
		return err
	}

	// Private Redis.
	rport, err := benchstat.FreePort()
	if err != nil {
		return err
	}
	rdir := filepath.Join(tmp, "redis")
	_ = os.MkdirAll(rdir, 0o755)
	rcmd := exec.Command("redis-server", "--port", strconv.Itoa(rport), "--bind", "127.0.0.1", "--dir", rdir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction", "--daemonize", "no")
	rlog, _ := os.Create(filepath.Join(rdir, "log"))
	rcmd.Stdout, rcmd.Stderr = rlog, rlog
	if err := rcmd.Start(); err != nil {
		return fmt.Errorf("redis-server: %w", err)
	}
	defer func() { _ = rcmd.Process.Kill(); _ = rcmd.Wait() }()
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", rport)})
	defer rdb.Close()
	for i := 0; rdb.Ping(ctx).Err() != nil; i++ {
		if i > 100 {
			return errors.New("redis-server did not answer")
		}
		time.Sleep(50 * time.Millisecond)
	}
	redisVersion := "?"
	if info, err := rdb.Info(ctx, "server").Result(); err == nil {
		for _, l := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(l, "redis_version:"); ok {
				redisVersion = strings.TrimSpace(v)
			}
		}
	}
	step(fmt.Sprintf("database %s, redis-server on port %d (pid %d)", dbName, rport, rcmd.Process.Pid))

	// Intake.
	hport, err := benchstat.FreePort()
	if err != nil {
		return err
	}
	token := fmt.Sprintf("bench%016x", time.Now().UnixNano())
	icmd := exec.Command(bin)
	icmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"DATABASE_URL=" + dbURL,
		fmt.Sprintf("REDIS_URL=redis://127.0.0.1:%d/0", rport),
		fmt.Sprintf("CEPJOBS_HTTP_ADDR=127.0.0.1:%d", hport),
		"CEPJOBS_API_TOKENS=bench:" + token + ":leads:write",
		"CEPJOBS_RATE_LIMIT=1000000",
		"CEPJOBS_RATE_BURST=1000000",
	}
	var pprofAddr string
	if c.profile != "" {
		pport, err := benchstat.FreePort()
		if err != nil {
			return err
		}
		pprofAddr = fmt.Sprintf("127.0.0.1:%d", pport)
		icmd.Env = append(icmd.Env, "CEPJOBS_PPROF_ADDR="+pprofAddr)
	}
	icmd.Env = append(icmd.Env, c.intakeEnv...)
	ilog, _ := os.Create(filepath.Join(tmp, "intake.log"))
	icmd.Stdout, icmd.Stderr = ilog, ilog
	if err := icmd.Start(); err != nil {
		return err
	}
	idone := make(chan struct{})
	go func() { _ = icmd.Wait(); close(idone) }()
	defer func() {
		_ = icmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-idone:
		case <-time.After(20 * time.Second):
			_ = icmd.Process.Kill()
			<-idone
		}
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", hport)
	if err := waitReady(base+"/readyz", idone, 60*time.Second); err != nil {
		b, _ := os.ReadFile(ilog.Name())
		return fmt.Errorf("%w\n%s", err, tail(string(b), 4000))
	}
	step(fmt.Sprintf("intake on %s (pid %d)", base, icmd.Process.Pid))

	tr := &http.Transport{MaxIdleConns: c.conc * 2, MaxIdleConnsPerHost: c.conc * 2, MaxConnsPerHost: 0, IdleConnTimeout: time.Minute}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	gen := &loadGen{db: db, c: c, url: base + "/v1/leads", token: token, client: client, nonce: time.Now().UnixNano(), tmp: tmp, dbName: dbName}
	if c.loadgen != "wrk" && c.loadgen != "go" {
		return fmt.Errorf("-loadgen: want wrk or go, got %q", c.loadgen)
	}
	if c.loadgen == "wrk" {
		if out, err := exec.Command("scripts/ensure-wrk.sh").CombinedOutput(); err != nil {
			return fmt.Errorf("scripts/ensure-wrk.sh: %v\n%s", err, out)
		}
	}

	// Sanity: one lead.
	if code, body, err := gen.post(gen.body(0)); err != nil || code != http.StatusAccepted {
		return fmt.Errorf("first lead: %d %s %v", code, body, err)
	}
	step("warm-up: 2 s of intake load, 2 s of pgbench")
	if _, err := gen.round(2*time.Second, icmd.Process.Pid, rcmd.Process.Pid); err != nil {
		return err
	}
	if _, err := pgbench(c, dbURL, dbName, script, 2); err != nil {
		return err
	}

	var is []intakeSample
	var ps []pgbenchSample
	for r := 0; r < c.rounds; r++ {
		order := []string{"intake", "pgbench"}
		if r%2 == 1 {
			order = []string{"pgbench", "intake"}
		}
		for _, k := range order {
			if _, err := db.Exec(ctx, "CHECKPOINT"); err != nil {
				return err
			}
			time.Sleep(time.Second)
			if k == "intake" {
				var profDone chan error
				if c.profile != "" && len(is) == 0 {
					profDone = make(chan error, 1)
					go func() { profDone <- fetchProfile(pprofAddr, c.profileKind, c.secs-1, c.profile, bin) }()
				}
				s, err := gen.round(time.Duration(c.secs)*time.Second, icmd.Process.Pid, rcmd.Process.Pid)
				if err != nil {
					return err
				}
				is = append(is, s)
				if profDone != nil {
					if err := <-profDone; err != nil {
						return err
					}
				}
				step(fmt.Sprintf("round %d intake : %.0f accepted/s, p50 %s p90 %s p99 %s, errors %d, intake %.0f µs CPU/req, postgres %.0f µs/req, statuses %v",
					r+1, float64(s.accepted)/s.wall.Seconds(), ms(s.pct(50)), ms(s.pct(90)), ms(s.pct(99)), s.errs,
					s.intakeCPU/float64(s.total)*1e6, s.pgCPU/float64(s.total)*1e6, s.statuses))
			} else {
				s, err := pgbench(c, dbURL, dbName, script, c.secs)
				if err != nil {
					return err
				}
				ps = append(ps, s)
				step(fmt.Sprintf("round %d pgbench: %.0f tps, postgres %.0f µs CPU/tx, pgbench %.0f µs/tx", r+1, s.tps, s.pgCPU/float64(s.tx)*1e6, s.cliCPU/float64(s.tx)*1e6))
			}
		}
	}
	var leads int64
	_ = db.QueryRow(ctx, "SELECT count(*) FROM cepjobs.leads").Scan(&leads)
	qlen, _ := rdb.DBSize(ctx).Result()
	step(fmt.Sprintf("leads stored: %d; redis keys: %d", leads, qlen))

	md := report(c, is, ps, env{pg: pgVersion, syncCommit: syncCommit, fsync: fsync, sharedBuf: sharedBuf, maxConn: maxConn, redis: redisVersion, leads: leads})
	fmt.Println(md)
	if c.write {
		f, err := os.OpenFile(c.out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := f.WriteString("\n" + md); err != nil {
			return err
		}
		step("appended to " + c.out)
	}
	return nil
}

// fetchProfile saves a profile of the intake (kind cpu or allocs) and
// prints its top.
func fetchProfile(addr, kind string, secs int, out, bin string) error {
	path, index := "profile", "cpu"
	if kind == "allocs" {
		path, index = "allocs", "alloc_space"
	}
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", addr, path, max(secs, 1)))
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile: %d %v", resp.StatusCode, err)
	}
	if err := os.WriteFile(out, b, 0o644); err != nil {
		return err
	}
	top, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=40", "-sample_index="+index, bin, out).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pprof: %v\n%s", err, top)
	}
	fmt.Fprintf(os.Stderr, "%s\n", top)
	return nil
}

// ---------------------------------------------------------------- load

type loadGen struct {
	db     *pgx.Conn
	c      cfg
	url    string
	token  string
	client *http.Client
	nonce  int64
	seq    atomic.Int64
	tmp    string
	dbName string
	rounds int
}

func (g *loadGen) body(n int64) []byte {
	return fmt.Appendf(nil, `{"external_id":"bench-%d-%d","first_name":"Ana","last_name":"García",`+
		`"email":"bench-%d-%d@example.com","phone":"+34600111222",`+
		`"course":"tecnico-marketing-digital","campaign":"meta-otono-2026","site":"sevilla",`+
		`"source":"web-form","message":"Quiero información",`+
		`"utm":{"source":"facebook","medium":"cpc","campaign":"otono"},`+
		`"consent":{"privacy":true,"marketing":false,"text_version":"2026-01","accepted_at":"2026-11-27T10:00:00Z"},`+
		`"client":{"ip":"203.0.113.7","user_agent":"Mozilla/5.0"}}`, g.nonce, n, g.nonce, n)
}

func (g *loadGen) post(body []byte) (int, string, error) {
	req, err := http.NewRequest(http.MethodPost, g.url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+g.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b), nil
}

// round runs conc clients for d; CPU is sampled over the same window.
func (g *loadGen) round(d time.Duration, intakePID, redisPID int) (intakeSample, error) {
	if g.c.loadgen == "wrk" {
		return g.wrkRound(d, intakePID, redisPID)
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		lats     []int64
		statuses = map[string]int64{}
		stop     atomic.Bool
	)
	d0 := g.stats()
	pgs := startPGSampler(g.dbName)
	i0, r0, s0 := benchstat.ProcCPU(intakePID), benchstat.ProcCPU(redisPID), benchstat.ProcCPU(os.Getpid())
	t0 := time.Now()
	for w := 0; w < g.c.conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]int64, 0, 4096)
			st := map[string]int64{}
			for !stop.Load() {
				b := g.body(g.seq.Add(1))
				t := time.Now()
				code, _, err := g.post(b)
				local = append(local, time.Since(t).Microseconds())
				if err != nil {
					st["transport error"]++
				} else {
					st[strconv.Itoa(code)]++
				}
			}
			mu.Lock()
			lats = append(lats, local...)
			for k, v := range st {
				statuses[k] += v
			}
			mu.Unlock()
		}()
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	wall := time.Since(t0)
	i1, r1, s1 := benchstat.ProcCPU(intakePID), benchstat.ProcCPU(redisPID), benchstat.ProcCPU(os.Getpid())
	pgCPU := pgs.seconds()
	slices.Sort(lats)
	time.Sleep(1500 * time.Millisecond) // backends flush pg_stat_database at most once a second
	d1 := g.stats()
	s := intakeSample{statuses: statuses, wall: wall, lat: lats, intakeCPU: i1 - i0, pgCPU: pgCPU, redisCPU: r1 - r0, genCPU: s1 - s0, db: d1.sub(d0)}
	for k, v := range statuses {
		s.total += v
		switch k {
		case "202":
			s.accepted += v
		case "200":
			s.dup += v
			s.errs += v // a duplicate means the emails were not distinct: count it against us
		default:
			s.errs += v
		}
	}
	return s, nil
}

// wrkScript posts the same lead as body() with a distinct email per request
// (nonce, thread, counter) and reports statuses and latency percentiles.
const wrkScript = `
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  prefix = args[1] .. "-" .. tid
  token = args[2]
  n, s202, s200, sother = 0, 0, 0, 0
end
function request()
  n = n + 1
  local body = '{"external_id":"bench-' .. prefix .. '-' .. n .. '","first_name":"Ana","last_name":"García",' ..
    '"email":"bench-' .. prefix .. '-' .. n .. '@example.com","phone":"+34600111222",' ..
    '"course":"tecnico-marketing-digital","campaign":"meta-otono-2026","site":"sevilla",' ..
    '"source":"web-form","message":"Quiero información",' ..
    '"utm":{"source":"facebook","medium":"cpc","campaign":"otono"},' ..
    '"consent":{"privacy":true,"marketing":false,"text_version":"2026-01","accepted_at":"2026-11-27T10:00:00Z"},' ..
    '"client":{"ip":"203.0.113.7","user_agent":"Mozilla/5.0"}}'
  return wrk.format("POST", "/v1/leads", {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, body)
end
function response(status, headers, body)
  if status == 202 then s202 = s202 + 1 elseif status == 200 then s200 = s200 + 1 else sother = sother + 1 end
end
function done(summary, latency, requests)
  local a, b, c = 0, 0, 0
  for _, t in ipairs(threads) do a = a + t:get("s202"); b = b + t:get("s200"); c = c + t:get("sother") end
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d %d %d %d\n", a, b, c, e.connect + e.read + e.write + e.timeout,
    summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, summary.requests))
end
`

// wrkRound runs wrk (-t2, -c conc) for d.
func (g *loadGen) wrkRound(d time.Duration, intakePID, redisPID int) (intakeSample, error) {
	script := filepath.Join(g.tmp, "leads.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o644); err != nil {
		return intakeSample{}, err
	}
	g.rounds++
	u := strings.TrimSuffix(g.url, "/v1/leads")
	cmd := exec.Command("wrk", "-t2", "-c"+strconv.Itoa(g.c.conc), "-d"+strconv.Itoa(int(d.Seconds()))+"s", "--timeout", "30s",
		"-s", script, u, "--", fmt.Sprintf("%d-%d", g.nonce, g.rounds), g.token)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	d0 := g.stats()
	x0 := g.readsByRelation()
	pgs := startPGSampler(g.dbName)
	i0, r0 := benchstat.ProcCPU(intakePID), benchstat.ProcCPU(redisPID)
	if err := cmd.Run(); err != nil {
		return intakeSample{}, fmt.Errorf("wrk: %v\n%s", err, out.String())
	}
	i1, r1 := benchstat.ProcCPU(intakePID), benchstat.ProcCPU(redisPID)
	pgCPU := pgs.seconds()
	var gen float64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		gen = tv(ru.Utime) + tv(ru.Stime)
	}
	var a, b, c, e, durUS, p50, p90, p99, mx, reqs int64
	i := strings.Index(out.String(), "RESULT ")
	if i < 0 {
		return intakeSample{}, fmt.Errorf("wrk output not understood:\n%s", out.String())
	}
	if _, err := fmt.Sscanf(out.String()[i:], "RESULT %d %d %d %d %d %d %d %d %d %d", &a, &b, &c, &e, &durUS, &p50, &p90, &p99, &mx, &reqs); err != nil {
		return intakeSample{}, fmt.Errorf("wrk output: %v\n%s", err, out.String())
	}
	time.Sleep(1500 * time.Millisecond) // backends flush pg_stat_database at most once a second
	d1 := g.stats()
	x1 := g.readsByRelation()
	var reads []string
	for k, v := range x1 {
		if dv := v - x0[k]; dv > 0 {
			reads = append(reads, fmt.Sprintf("%s %.1f", k, float64(dv)/float64(max(a, 1))))
		}
	}
	slices.Sort(reads)
	step("rows read per accepted lead, by relation: " + strings.Join(reads, ", "))
	st := map[string]int64{}
	for k, v := range map[string]int64{"202": a, "200": b, "other status": c, "transport error": e} {
		if v > 0 {
			st[k] = v
		}
	}
	wall := time.Duration(durUS) * time.Microsecond // wrk's own measured window
	s := intakeSample{statuses: st, wall: wall, wrkPct: map[float64]int64{50: p50, 90: p90, 99: p99, 100: mx},
		intakeCPU: i1 - i0, pgCPU: pgCPU, redisCPU: r1 - r0, genCPU: gen, db: d1.sub(d0),
		accepted: a, dup: b, errs: b + c + e, total: a + b + c + e}
	return s, nil
}

// readsByRelation is rows read per table (sequential) and per index.
func (g *loadGen) readsByRelation() map[string]int64 {
	out := map[string]int64{}
	rows, err := g.db.Query(context.Background(), `
		select 'seq:' || relname, coalesce(seq_tup_read, 0) from pg_stat_user_tables
		union all select 'idx:' || indexrelname, coalesce(idx_tup_read, 0) from pg_stat_user_indexes`)
	if err != nil {
		return out
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		var v int64
		if rows.Scan(&k, &v) == nil {
			out[k] = v
		}
	}
	return out
}

// dbStats is this database's pg_stat_database counters.
type dbStats struct{ commits, inserted, updated, deleted, returned, fetched float64 }

func (a dbStats) sub(b dbStats) dbStats {
	return dbStats{a.commits - b.commits, a.inserted - b.inserted, a.updated - b.updated, a.deleted - b.deleted, a.returned - b.returned, a.fetched - b.fetched}
}

func (g *loadGen) stats() dbStats {
	var s dbStats
	_ = g.db.QueryRow(context.Background(), `SELECT xact_commit, tup_inserted, tup_updated, tup_deleted, tup_returned, tup_fetched
		FROM pg_stat_database WHERE datname = current_database()`).Scan(&s.commits, &s.inserted, &s.updated, &s.deleted, &s.returned, &s.fetched)
	return s
}

// ---------------------------------------------------------------- pgbench

var tpsRE = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
var txRE = regexp.MustCompile(`number of transactions actually processed: ([0-9]+)`)

func pgbench(c cfg, dbURL, dbName, script string, secs int) (pgbenchSample, error) {
	cmd := exec.Command("pgbench", "-M", "prepared", "-c", strconv.Itoa(c.pgClients), "-j", strconv.Itoa(c.pgThreads),
		"-T", strconv.Itoa(secs), "-n", "-f", script, dbURL)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	pgs := startPGSampler(dbName)
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		return pgbenchSample{}, fmt.Errorf("pgbench: %v\n%s", err, out.String())
	}
	wall := time.Since(t0)
	pgCPU := pgs.seconds()
	m := tpsRE.FindStringSubmatch(out.String())
	n := txRE.FindStringSubmatch(out.String())
	if m == nil || n == nil {
		return pgbenchSample{}, fmt.Errorf("pgbench output not understood:\n%s", out.String())
	}
	tps, _ := strconv.ParseFloat(m[1], 64)
	tx, _ := strconv.ParseInt(n[1], 10, 64)
	var cli float64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		cli = tv(ru.Utime) + tv(ru.Stime)
	}
	return pgbenchSample{tps: tps, tx: tx, pgCPU: pgCPU, cliCPU: cli, wall: wall}, nil
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// ---------------------------------------------------------------- /proc

func loadgenName(l string) string {
	if l == "wrk" {
		return "`wrk -t2`, a Lua script giving each request a distinct email"
	}
	return "goroutines of this harness, Go net/http client"
}

// pgSampler measures the CPU of one database's backends (process titles
// "postgres: … user DB host(port) …") and of the server's shared background
// processes (WAL writer, checkpointer, background writer), sampling /proc
// every 100 ms so backends that exit during the window (pgbench's) count up
// to their last sample. Other databases' backends — other work on a shared
// machine — are left out.
type pgSampler struct {
	db   string
	stop chan struct{}
	done chan float64
}

func startPGSampler(db string) *pgSampler {
	p := &pgSampler{db: db, stop: make(chan struct{}), done: make(chan float64, 1)}
	first, last := map[int]float64{}, map[int]float64{}
	sample := func(initial bool) {
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if err != nil || !bytes.HasPrefix(cl, []byte("postgres: ")) {
				continue
			}
			title := string(cl)
			ours := strings.Contains(title, " "+p.db+" ") || strings.Contains(title, "walwriter") ||
				strings.Contains(title, "checkpointer") || strings.Contains(title, "background writer")
			if !ours {
				continue
			}
			cpu := benchstat.ProcCPU(pid)
			if _, ok := first[pid]; !ok {
				if initial {
					first[pid] = cpu
				} else {
					first[pid] = 0 // born during the window
				}
			}
			last[pid] = cpu
		}
	}
	sample(true)
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				sample(false)
			case <-p.stop:
				sample(false)
				var total float64
				for pid, v := range last {
					total += v - first[pid]
				}
				p.done <- total
				return
			}
		}
	}()
	return p
}

// seconds stops the sampler and returns the CPU seconds used.
func (p *pgSampler) seconds() float64 {
	close(p.stop)
	return <-p.done
}

// ---------------------------------------------------------------- helpers

func waitReady(url string, done <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-done:
			return errors.New("intake exited before /readyz answered 200")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("intake not ready within %s", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// pct is a latency percentile in µs, from whichever load generator ran.
func (s intakeSample) pct(p float64) int64 {
	if s.wrkPct != nil {
		return s.wrkPct[p]
	}
	return benchstat.Pct(s.lat, p)
}

func ms(us int64) string { return fmt.Sprintf("%.1f ms", float64(us)/1000) }

// mmm is "median (min–max)" with the given format.
func mmm(xs []float64, f string) string {
	return fmt.Sprintf(f+" ("+f+"–"+f+")", benchstat.Median(xs), slices.Min(xs), slices.Max(xs))
}

// ---------------------------------------------------------------- report

type env struct {
	pg, syncCommit, fsync, sharedBuf, maxConn, redis string
	leads                                            int64
}

func report(c cfg, is []intakeSample, ps []pgbenchSample, e env) string {
	var (
		acc, p50, p90, p99, errs, icpu, pgcpu, rcpu, gcpu, cpuShare []float64
		tps, pgtx, clitx                                            []float64
	)
	for _, s := range is {
		acc = append(acc, float64(s.accepted)/s.wall.Seconds())
		p50 = append(p50, float64(s.pct(50))/1000)
		p90 = append(p90, float64(s.pct(90))/1000)
		p99 = append(p99, float64(s.pct(99))/1000)
		errs = append(errs, float64(s.errs))
		n := float64(s.total)
		icpu = append(icpu, s.intakeCPU/n*1e6)
		pgcpu = append(pgcpu, s.pgCPU/n*1e6)
		rcpu = append(rcpu, s.redisCPU/n*1e6)
		gcpu = append(gcpu, s.genCPU/n*1e6)
		cpuShare = append(cpuShare, (s.intakeCPU+s.pgCPU+s.redisCPU+s.genCPU)/s.wall.Seconds())
	}
	for _, s := range ps {
		tps = append(tps, s.tps)
		pgtx = append(pgtx, s.pgCPU/float64(s.tx)*1e6)
		clitx = append(clitx, s.cliCPU/float64(s.tx)*1e6)
	}
	ratio := benchstat.Median(acc) / benchstat.Median(tps)
	met := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**not met**"
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
	mem := "?"
	if mi, err := os.ReadFile("/proc/meminfo"); err == nil {
		f := strings.Fields(strings.SplitN(string(mi), "\n", 2)[0])
		if len(f) > 1 {
			kb, _ := strconv.ParseFloat(f[1], 64)
			mem = fmt.Sprintf("%.1f GiB", kb/1024/1024)
		}
	}
	goV, _ := exec.Command("go", "env", "GOVERSION").Output()
	nproc, _ := exec.Command("nproc").Output()
	var totalErr int64
	statuses := map[string]int64{}
	for _, s := range is {
		totalErr += s.errs
		for k, v := range s.statuses {
			statuses[k] += v
		}
	}
	var b strings.Builder
	b.WriteString("## Intake vs pgbench\n\n")
	var extra strings.Builder
	for _, e := range c.intakeEnv {
		fmt.Fprintf(&extra, " -intake-env %s", e)
	}
	fmt.Fprintf(&b, "Generated by `go run ./bench/intake -rounds %d -conc %d -secs %d -pg-clients %d -pg-threads %d -loadgen %s%s` on %s (issue 8 item 3).\n\n",
		c.rounds, c.conc, c.secs, c.pgClients, c.pgThreads, c.loadgen, extra.String(), time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Machine: %s CPUs (%s), %s RAM; PostgreSQL %s (synchronous_commit=%s, fsync=%s, shared_buffers=%s) on 127.0.0.1:5432, "+
		"a throwaway database created and dropped by the harness; private redis-server %s (AOF everysec, noeviction) on a free port; %s. "+
		"Load generator, intake, PostgreSQL and Redis all share the machine.\n\n",
		strings.TrimSpace(string(nproc)), strings.TrimSpace(cpuModel), mem, e.pg, e.syncCommit, e.fsync, e.sharedBuf, e.redis, strings.TrimSpace(string(goV)))
	fmt.Fprintf(&b, "**Intake**: the real `intake` binary (`go build`, no race detector, default pool `CEPJOBS_DB_MAX_CONNS` = max(4, CPUs) and one lead committer, log level info, "+
		"plus any `-intake-env` in the command above), "+
		"one `leads:write` token, `CEPJOBS_RATE_LIMIT`/`BURST` 1,000,000; %d keep-alive HTTP clients (%s) post valid leads (the README example, "+
		"distinct email each) back to back for %d s. Accepted = 202. Latency at the client, request sent to body read. "+
		"**pgbench**: `pgbench -M prepared -c %d -j %d -T %d -n -f insert.sql` on the same database, "+
		"`insert.sql` = `insert into bench_rows(email) values ('x' || random());` into "+
		"`bench_rows(id bigserial primary key, email text, created timestamptz default now())`. "+
		"%d rounds, the two alternating which goes first, `CHECKPOINT` before each; one 2 s warm-up of each first. "+
		"CPU = `/proc/<pid>/stat` utime+stime delta over the window ÷ requests (or transactions): intake; PostgreSQL = the bench database's "+
		"backends plus the WAL writer, checkpointer and background writer, sampled every 100 ms (other databases' work on a shared machine is left out); "+
		"redis-server; the load generator (wrk or this harness); pgbench (rusage). Median (min–max) over rounds.\n\n",
		c.conc, loadgenName(c.loadgen), c.secs, c.pgClients, c.pgThreads, c.secs, c.rounds)
	b.WriteString("| figure | value | target |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| intake accepted leads/s | %s | |\n", mmm(acc, "%.0f"))
	fmt.Fprintf(&b, "| pgbench single-row INSERT tps | %s | |\n", mmm(tps, "%.0f"))
	fmt.Fprintf(&b, "| ratio accepted leads/s ÷ pgbench tps (medians) | %.2f | ≥ 0.5 — %s |\n", ratio, met(ratio >= 0.5))
	fmt.Fprintf(&b, "| intake latency p50 | %s ms | |\n", mmm(p50, "%.1f"))
	fmt.Fprintf(&b, "| intake latency p90 | %s ms | |\n", mmm(p90, "%.1f"))
	fmt.Fprintf(&b, "| intake latency p99 | %s ms | ≤ 25 ms — %s |\n", mmm(p99, "%.1f"), met(benchstat.Median(p99) <= 25))
	fmt.Fprintf(&b, "| errors (non-202 or transport), per round | %s (statuses over all rounds: %s) | 0 |\n", mmm(errs, "%.0f"), fmtStatuses(statuses))
	fmt.Fprintf(&b, "| intake CPU per request | %s µs | |\n", mmm(icpu, "%.0f"))
	fmt.Fprintf(&b, "| PostgreSQL CPU per intake request | %s µs | |\n", mmm(pgcpu, "%.0f"))
	fmt.Fprintf(&b, "| redis-server CPU per intake request | %s µs | |\n", mmm(rcpu, "%.0f"))
	fmt.Fprintf(&b, "| load generator CPU per intake request | %s µs | |\n", mmm(gcpu, "%.0f"))
	fmt.Fprintf(&b, "| machine CPU busy during intake rounds (sum of the above ÷ wall) | %s cores of %s | |\n", mmm(cpuShare, "%.2f"), strings.TrimSpace(string(nproc)))
	var com, ins, upd, ret []float64
	for _, s := range is {
		n := float64(s.total)
		com, ins, upd, ret = append(com, s.db.commits/n), append(ins, s.db.inserted/n), append(upd, s.db.updated/n), append(ret, (s.db.returned+s.db.fetched)/n)
	}
	fmt.Fprintf(&b, "| PostgreSQL work per intake request (`pg_stat_database` deltas, includes the relay's and pool's own queries) | %.2f commits, %.2f rows inserted, %.2f updated, %.0f rows read (returned+fetched) | |\n",
		benchstat.Median(com), benchstat.Median(ins), benchstat.Median(upd), benchstat.Median(ret))
	fmt.Fprintf(&b, "| PostgreSQL CPU per pgbench transaction | %s µs | |\n", mmm(pgtx, "%.0f"))
	fmt.Fprintf(&b, "| pgbench client CPU per transaction | %s µs | |\n", mmm(clitx, "%.0f"))
	b.WriteString("\nPer round:\n\n| round | accepted/s | p50 | p90 | p99 | errors | intake µs/req | postgres µs/req | redis µs/req | loadgen µs/req | pgbench tps | postgres µs/tx |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for i := range is {
		fmt.Fprintf(&b, "| %d | %.0f | %.1f ms | %.1f ms | %.1f ms | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f |\n",
			i+1, acc[i], p50[i], p90[i], p99[i], errs[i], icpu[i], pgcpu[i], rcpu[i], gcpu[i], tps[i], pgtx[i])
	}
	fmt.Fprintf(&b, "\nLeads stored at the end (warm-up included): %d. A CPU profile of the intake during the first round: `-profile FILE` "+
		"(the intake serves pprof on `CEPJOBS_PPROF_ADDR`).\n", e.leads)
	return b.String()
}

func fmtStatuses(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
