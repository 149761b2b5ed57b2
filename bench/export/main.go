// Command export measures the peak RSS of the real worker-stats binary while
// it exports leads to CSV in S3 (issue 8: 100,000 leads in ≤ 64 MB).
//
//	go run ./bench/export [-leads 100000] [-rounds 3] [-big 400000] [-results bench/export/RESULTS.md]
//	                      [-label heading] [-note text] [-profile dir] [-keep-logs dir]
//
// It builds cmd/intake and cmd/worker-stats (go build, no race detector),
// creates a throwaway database on -pg (dropped at the end), starts a
// private redis-server on a free loopback port and a loopback S3 server
// (versitygw, as bench/backup and the tests use: internal/backup/backuptest),
// then the intake (which migrates the database) and worker-stats, as
// production runs them. It inserts -leads realistic leads with one
// INSERT … SELECT generate_series, and each round asks for an export of
// all of them the way a client does: POST /v1/exports with an
// exports:write token, then GET /v1/exports/{id} every 50 ms until it is
// completed. Meanwhile it samples worker-stats' VmRSS every 50 ms; after
// each round it reads VmHWM (reset before the round with clear_refs),
// worker-stats' CPU time and its Go heap figures (/metrics), then
// downloads the CSV through the presigned link the API returned and checks
// the byte order mark, the header and the number of rows. With -big > 0 it
// then adds leads up to -big and runs one more round, to show whether the
// peak grows with the row count.
//
// The report goes to standard output and, as a section headed -label, into
// -results (a section with the same heading is replaced, others are kept).
//
// -profile DIR serves pprof on worker-stats and saves heap profiles taken
// before, during (every 200 ms) and after each round into DIR; fetching
// them costs the worker memory, so such a run writes no RESULTS.md.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cepcomunicacion/cepjobs/bench/internal/benchstat"

	"github.com/jackc/pgx/v5"

	"github.com/cepcomunicacion/cepjobs/internal/backup/backuptest"
)

type options struct {
	leads    int
	rounds   int
	big      int
	pg       string
	results  string
	profile  string
	keepLogs string
	label    string
	note     string
}

func main() {
	var o options
	flag.IntVar(&o.leads, "leads", 100_000, "leads in the database for the measured rounds")
	flag.IntVar(&o.rounds, "rounds", 3, "export rounds at -leads")
	flag.IntVar(&o.big, "big", 400_000, "after the rounds, add leads up to this many and export once more (0: skip)")
	flag.StringVar(&o.pg, "pg", "postgres://postgres@127.0.0.1:5432", "PostgreSQL server (a superuser; the throwaway database is created and dropped there)")
	flag.StringVar(&o.results, "results", "bench/export/RESULTS.md", "write the report here (empty: standard output only)")
	flag.StringVar(&o.profile, "profile", "", "serve pprof on worker-stats and save heap profiles of each round into this directory (no RESULTS.md then)")
	flag.StringVar(&o.label, "label", "worker-stats as built from this tree", "heading of this run's section in -results (a section with the same heading is replaced)")
	flag.StringVar(&o.note, "note", "", "a paragraph under the heading (what was changed for this run, say)")
	flag.StringVar(&o.keepLogs, "keep-logs", "", "copy the processes' logs into this directory at the end")
	flag.Parse()
	if o.leads < 1 || o.rounds < 1 || (o.big != 0 && o.big <= o.leads) {
		log.Fatal("export: want -leads ≥ 1, -rounds ≥ 1 and -big 0 or more than -leads")
	}
	log.SetFlags(log.Ltime)
	log.SetPrefix("bench/export: ")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		log.Printf("FAILED: %v", err)
		stop()
		os.Exit(1)
	}
}

// bench is everything a run has started.
type bench struct {
	o        options
	tmp      string
	token    string
	intake   *proc
	worker   *proc
	redis    *proc
	api      string // intake host:port
	metrics  string // worker-stats /metrics host:port
	pprof    string // worker-stats pprof host:port, with -profile
	columns  []string
	idleRSS  int64 // KiB, before the first round
	idleHeap map[string]float64
}

func run(ctx context.Context, o options) (err error) {
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()
	began := time.Now()
	b := &bench{o: o, token: "bx" + randomHex(16)}
	b.columns = exportHeader()

	root, err := moduleRoot()
	if err != nil {
		return err
	}
	if b.tmp, err = os.MkdirTemp("", "cepjobs-bench-export-"); err != nil {
		return err
	}
	cleanups = append(cleanups, func() {
		if o.keepLogs != "" {
			_ = os.MkdirAll(o.keepLogs, 0o755)
			logs, _ := filepath.Glob(filepath.Join(b.tmp, "*.log"))
			for _, l := range logs {
				if data, err := os.ReadFile(l); err == nil {
					_ = os.WriteFile(filepath.Join(o.keepLogs, filepath.Base(l)), data, 0o644)
				}
			}
		}
		_ = os.RemoveAll(b.tmp)
	})

	log.Printf("building cmd/intake and cmd/worker-stats")
	for _, name := range []string{"intake", "worker-stats"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(b.tmp, name), "./cmd/"+name)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/%s: %v\n%s", name, err, out)
		}
	}

	// The throwaway database.
	dbName := fmt.Sprintf("cepjobs_bench_export_%d", os.Getpid())
	admin, err := pgx.Connect(ctx, o.pg+"/postgres?sslmode=disable")
	if err != nil {
		return fmt.Errorf("connect to %s: %w", o.pg, err)
	}
	cleanups = append(cleanups, func() { _ = admin.Close(context.Background()) })
	if _, err := admin.Exec(ctx, "create database "+dbName); err != nil {
		return fmt.Errorf("create database %s: %w", dbName, err)
	}
	cleanups = append(cleanups, func() {
		if _, err := admin.Exec(context.Background(), "drop database if exists "+dbName+" with (force)"); err != nil {
			log.Printf("drop database %s: %v", dbName, err)
		} else {
			log.Printf("dropped database %s", dbName)
		}
	})
	dbURL := o.pg + "/" + dbName + "?sslmode=disable"
	log.Printf("database %s created", dbName)

	s3, err := backuptest.Start(ctx)
	if err != nil {
		return fmt.Errorf("start S3 server: %w", err)
	}
	cleanups = append(cleanups, func() { _ = s3.Close() })
	log.Printf("S3 (versitygw %s) on %s", backuptest.VersitygwVersion, s3.Endpoint)

	var redisURL string
	if b.redis, redisURL, err = startRedis(ctx, b.tmp); err != nil {
		return err
	}
	cleanups = append(cleanups, b.redis.stop)
	log.Printf("redis-server on %s", strings.TrimPrefix(redisURL, "redis://"))

	// Only what the binaries need: config.Load refuses unknown CEPJOBS_*
	// variables, so none of the caller's may leak in.
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"DATABASE_URL=" + dbURL, "REDIS_URL=" + redisURL,
		"S3_ENDPOINT=" + s3.Endpoint, "S3_ACCESS_KEY=" + s3.AccessKey, "S3_SECRET_KEY=" + s3.SecretKey, "S3_REGION=" + s3.Region,
		"CEPJOBS_EXPORTS_BUCKET=cep-exports",
	}
	b.intake, err = startProc("intake", filepath.Join(b.tmp, "intake.log"),
		append(env, "CEPJOBS_HTTP_ADDR=127.0.0.1:0", "CEPJOBS_API_TOKENS=bench-export:"+b.token+":exports:write"),
		filepath.Join(b.tmp, "intake"))
	if err != nil {
		return err
	}
	cleanups = append(cleanups, b.intake.stop)
	l, err := b.intake.waitLog(ctx, "intake listening", 60*time.Second)
	if err != nil {
		return err
	}
	b.api, _ = l["addr"].(string)
	log.Printf("intake on %s (database migrated)", b.api)

	db, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, func() { _ = db.Close(context.Background()) })
	t0 := time.Now()
	if err := insertLeads(ctx, db, 1, o.leads); err != nil {
		return err
	}
	log.Printf("%d leads inserted in %.1f s", o.leads, time.Since(t0).Seconds())

	workerEnv := append(env, "CEPJOBS_STATS_METRICS_ADDR=127.0.0.1:0")
	if o.profile != "" {
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			return err
		}
		port, err := benchstat.FreePort()
		if err != nil {
			return err
		}
		b.pprof = fmt.Sprintf("127.0.0.1:%d", port)
		workerEnv = append(workerEnv, "CEPJOBS_PPROF_ADDR="+b.pprof)
	}
	b.worker, err = startProc("worker-stats", filepath.Join(b.tmp, "worker-stats.log"), workerEnv, filepath.Join(b.tmp, "worker-stats"))
	if err != nil {
		return err
	}
	cleanups = append(cleanups, b.worker.stop)
	if l, err = b.worker.waitLog(ctx, "worker started", 60*time.Second); err != nil {
		return err
	}
	b.metrics, _ = l["metrics"].(string)
	if _, err := b.worker.waitLog(ctx, "exports on", time.Second); err != nil {
		return err
	}
	// Let start-up garbage be collected and the first polls settle.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(3 * time.Second):
	}
	st, err := status(b.worker.pid())
	if err != nil {
		return err
	}
	b.idleRSS = st["VmRSS"]
	if b.idleHeap, err = goMetrics(ctx, b.metrics); err != nil {
		return err
	}
	log.Printf("worker-stats pid %d, metrics on %s, idle VmRSS %d KiB (VmHWM since start %d KiB)", b.worker.pid(), b.metrics, st["VmRSS"], st["VmHWM"])

	rep := &report{o: o, began: began, idleRSS: b.idleRSS, idleAnon: st["RssAnon"], idleFile: st["RssFile"], idleHeap: b.idleHeap, startHWM: st["VmHWM"], loadBefore: loadavg()}
	rep.env = describe(ctx, admin)
	for r := 1; r <= o.rounds; r++ {
		rd, err := b.round(ctx, r, o.leads)
		if err != nil {
			return fmt.Errorf("round %d: %w", r, err)
		}
		rep.rounds = append(rep.rounds, rd)
	}
	if o.big > 0 {
		t0 := time.Now()
		if err := insertLeads(ctx, db, o.leads+1, o.big); err != nil {
			return err
		}
		log.Printf("%d more leads inserted in %.1f s (%d in all)", o.big-o.leads, time.Since(t0).Seconds(), o.big)
		rd, err := b.round(ctx, o.rounds+1, o.big)
		if err != nil {
			return fmt.Errorf("round at %d leads: %w", o.big, err)
		}
		rep.big = &rd
	}
	rep.loadAfter = loadavg()
	if st, err := status(b.worker.pid()); err == nil {
		rep.lifetimeHWM = st["VmHWM"]
	}
	if warn := b.worker.logLines("task failed"); len(warn) > 0 {
		return fmt.Errorf("worker-stats logged %d failed tasks; its log ends:\n%s", len(warn), b.worker.tail(10))
	}

	md := rep.markdown()
	fmt.Println(md)
	if o.results != "" && o.profile == "" {
		path := o.results
		if !filepath.IsAbs(path) {
			path = filepath.Join(root, path)
		}
		old, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if err := os.WriteFile(path, []byte(mergeSection(string(old), o.label, md)), 0o644); err != nil {
			return err
		}
		log.Printf("results written to %s", path)
	}
	return nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run this inside the cepjobs module (go run ./bench/export)")
	}
	return filepath.Dir(gomod), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
