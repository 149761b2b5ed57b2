package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cepcomunicacion/cepjobs/internal/backup/backuptest"
)

// limitKiB is issue 8's bound, 64 MB (decimal), in KiB as /proc counts.
const limitKiB = 64_000_000 / 1024

type report struct {
	o           options
	began       time.Time
	env         string
	idleRSS     int64
	idleAnon    int64
	idleFile    int64
	idleHeap    map[string]float64
	startHWM    int64
	lifetimeHWM int64
	loadBefore  string
	loadAfter   string
	rounds      []roundResult
	big         *roundResult
}

// describe is the machine and software line of the report.
func describe(ctx context.Context, admin *pgx.Conn) string {
	cpu := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := "?"
	if st, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(st), "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	kernel := "?"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	var pgv string
	if err := admin.QueryRow(ctx, "show server_version").Scan(&pgv); err != nil {
		pgv = "?"
	}
	redisV := "?"
	if out, err := exec.Command("redis-server", "--version").Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if v, ok := strings.CutPrefix(f, "v="); ok {
				redisV = v
			}
		}
	}
	goV := "?"
	if out, err := exec.Command("go", "env", "GOVERSION").Output(); err == nil {
		goV = strings.TrimSpace(string(out))
	}
	rev := "?"
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		rev = strings.TrimSpace(string(out))
	}
	dirty := ""
	if out, err := exec.Command("git", "status", "--porcelain", "--", "handlers", "store", "internal/objstore", "internal/fleet", "api", "cmd").Output(); err == nil && len(out) > 0 {
		dirty = fmt.Sprintf(" plus the working tree's uncommitted changes to %d files under handlers, store, internal/objstore, internal/fleet, api, cmd", strings.Count(string(out), "\n"))
	}
	return fmt.Sprintf("Machine: %d CPUs (%s), %s RAM, Linux %s, %s; shared with other work and noisy.\n"+
		"PostgreSQL %s, redis-server %s (private, no persistence), versitygw %s (posix backend, same disk) on loopback; "+
		"worker-stats and intake built with %s (`go build`, no race detector) from %s%s.",
		runtime.NumCPU(), cpu, mem, kernel, runtime.GOARCH, pgv, redisV, backuptest.VersitygwVersion, goV, rev, dirty)
}

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

func mb(kib int64) string { return fmt.Sprintf("%.1f MB", float64(kib)*1024/1e6) }

// stat is "median (min–max)" of the rounds' values of f, formatted by fm.
func stat(rs []roundResult, f func(roundResult) float64, fm func(float64) string) (median, span string) {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return fm(m), fm(v[0]) + "–" + fm(v[len(v)-1])
}

func (p *report) markdown() string {
	var w strings.Builder
	pr := func(format string, a ...any) { fmt.Fprintf(&w, format, a...) }
	n := p.o.leads
	pr("## %s\n\n", p.o.label)
	if p.o.note != "" {
		pr("%s\n\n", p.o.note)
	}
	pr("Measured %s by `go run ./bench/export -leads %d -rounds %d -big %d` (%.0f s in all, building and inserting included).\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), n, p.o.rounds, p.o.big, time.Since(p.began).Seconds())
	pr("%s Load average %s before the rounds, %s after.\n\n", p.env, p.loadBefore, p.loadAfter)

	pr("Issue 8 item 5: \"Export of 100,000 leads to CSV in S3: peak RSS ≤ 64 MB\", on the real worker-stats process.\n\n")
	pr("| measure (%d leads, %d rounds) | median | min–max |\n|---|---|---|\n", n, len(p.rounds))
	row := func(label string, f func(roundResult) float64, fm func(float64) string) {
		m, s := stat(p.rounds, f, fm)
		pr("| %s | %s | %s |\n", label, m, s)
	}
	kib := func(v float64) string { return mib(int64(v)) }
	row("**worker-stats peak RSS** (VmHWM of the round, or a higher 50 ms sample)", func(r roundResult) float64 { return float64(r.Peak) }, func(v float64) string { return mib(int64(v)) + " (" + mb(int64(v)) + ")" })
	row("worker-stats RSS just before the export", func(r roundResult) float64 { return float64(r.RSSBefore) }, kib)
	row("peak minus before", func(r roundResult) float64 { return float64(r.Peak - r.RSSBefore) }, kib)
	row("largest 50 ms VmRSS sample", func(r roundResult) float64 { return float64(r.SampledMax) }, kib)
	row("wall: POST /v1/exports → GET sees completed (50 ms polling)", func(r roundResult) float64 { return r.Wall.Seconds() }, func(v float64) string { return fmt.Sprintf("%.2f s", v) })
	row("worker-stats CPU (user+sys) during the round", func(r roundResult) float64 { return r.CPU }, func(v float64) string { return fmt.Sprintf("%.2f s", v) })
	row("rows in the CSV (downloaded through the presigned link, counted)", func(r roundResult) float64 { return float64(r.CSVRows) }, func(v float64) string { return fmt.Sprintf("%.0f", v) })
	row("CSV size", func(r roundResult) float64 { return float64(r.Bytes) }, func(v float64) string { return fmt.Sprintf("%.0f bytes (%.1f MB)", v, v/1e6) })
	row("Go heap allocated during the export", func(r roundResult) float64 { return r.Alloc }, func(v float64) string { return fmt.Sprintf("%.0f MiB", v/(1<<20)) })
	row("GC cycles during the export", func(r roundResult) float64 { return r.GCs }, func(v float64) string { return fmt.Sprintf("%.0f", v) })
	worst := slices.MaxFunc(p.rounds, func(a, b roundResult) int { return int(a.Peak - b.Peak) })
	verdict := "met"
	if worst.Peak > limitKiB {
		verdict = "**not met**"
	}
	pr("\nTarget ≤ 64 MB (%s): %s — highest round %s = %s.\n", mib(limitKiB), verdict, mib(worst.Peak), mb(worst.Peak))
	if b := p.big; b != nil {
		pr("\nSame worker, after adding leads up to %d (one round): peak RSS **%s** (%s), %s before, %.2f s wall, %.2f s worker CPU, %d rows, %d bytes (%.1f MB), Go allocated %.0f MiB in %.0f GCs.\n",
			b.Leads, mib(b.Peak), mb(b.Peak), mib(b.RSSBefore), b.Wall.Seconds(), b.CPU, b.CSVRows, b.Bytes, float64(b.Bytes)/1e6, b.Alloc/(1<<20), b.GCs)
	}
	pr("\nworker-stats idle, 3 s after start and before any export: VmRSS %s (RssAnon %s, RssFile %s: the binary's mapped pages), VmHWM since start %s, Go heap sys/inuse %.1f/%.1f MiB. Lifetime VmHWM at the end: %s.\n",
		mib(p.idleRSS), mib(p.idleAnon), mib(p.idleFile), mib(p.startHWM), p.idleHeap["go_memstats_heap_sys_bytes"]/(1<<20), p.idleHeap["go_memstats_heap_inuse_bytes"]/(1<<20), mib(p.lifetimeHWM))

	pr("\nPer round (the last one at %d leads when -big is set):\n\n", p.o.big)
	pr("| round | leads | rows | bytes | wall s | handler | VmRSS before | VmHWM (reset ok) | max sample (n) | VmRSS at each tenth of the round, MiB | after: RssAnon / RssFile | CPU s | Go alloc MiB / GCs | heap after, MiB: sys / inuse / released / next GC |\n")
	pr("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	all := p.rounds
	if p.big != nil {
		all = append(slices.Clip(all), *p.big)
	}
	for _, r := range all {
		series := make([]string, len(r.Series))
		for i, s := range r.Series {
			series[i] = fmt.Sprintf("%.1f", float64(s)/1024)
		}
		pr("| %d | %d | %d | %d | %.2f | %s | %s | %s (%v) | %s (%d) | %s | %s / %s | %.2f | %.0f / %.0f | %.0f / %.0f / %.0f / %.0f |\n",
			r.Round, r.Leads, r.CSVRows, r.Bytes, r.Wall.Seconds(), r.Handler, mib(r.RSSBefore), mib(r.HWM), r.HWMReset, mib(r.SampledMax), r.Samples,
			strings.Join(series, " "), mib(r.AnonAfter), mib(r.FileAfter), r.CPU, r.Alloc/(1<<20), r.GCs,
			r.HeapSys/(1<<20), r.HeapInuse/(1<<20), r.HeapReleased/(1<<20), r.NextGC/(1<<20))
	}
	pr("\nHow: a throwaway database (created, migrated by the intake, dropped at the end) with leads from one `INSERT … SELECT generate_series` " +
		"(varied Spanish names, addresses, phones, 12 courses, campaigns, campuses, UTM, IPv4/IPv6, real user agents, consent fields); " +
		"a private redis-server and versitygw on loopback; the real intake and worker-stats binaries, configured only by environment " +
		"(`S3_*`, `CEPJOBS_EXPORTS_BUCKET=cep-exports`, defaults otherwise: `CEPJOBS_EXPORT_COLUMNS` default, 20 columns with the consent evidence). " +
		"Each round is `POST /v1/exports {}` with an `exports:write` token (every lead), then `GET /v1/exports/{id}` every 50 ms until completed; " +
		"the CSV is then downloaded through the presigned link the API returned, its byte order mark and header checked and its rows counted. " +
		"VmHWM comes from `/proc/<pid>/status` of worker-stats after the round, reset before it (`echo 5 > /proc/<pid>/clear_refs`), so it is the round's own peak; " +
		"VmRSS is also sampled every 50 ms. CPU is worker-stats' utime+stime over the round. Go heap figures come from worker-stats' `/metrics`.\n")
	return w.String()
}

// resultsTitle heads RESULTS.md; each run writes or replaces its own
// section (by -label) below it.
const resultsTitle = "# worker-stats: export of leads to CSV in S3, peak RSS\n"

// mergeSection returns file with the section labelled label replaced by
// section (appended when there is none).
func mergeSection(file, label, section string) string {
	begin, end := "<!-- section: "+label+" -->\n", "<!-- end section: "+label+" -->\n"
	block := begin + section + end
	if !strings.HasPrefix(file, resultsTitle) {
		file = resultsTitle
	}
	i := strings.Index(file, begin)
	j := strings.Index(file, end)
	if i < 0 || j < i {
		return strings.TrimRight(file, "\n") + "\n\n" + block
	}
	return file[:i] + block + file[j+len(end):]
}
