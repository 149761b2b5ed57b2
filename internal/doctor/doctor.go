// Package doctor checks that the environment cepjobs runs in is safe: Redis
// reachable and configured not to drop queued tasks, Postgres reachable and
// migrated, pg_dump present for backups, and which integrations have
// credentials. `cepjobs doctor` prints the report.
package doctor

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cepcomunicacion/cepjobs/internal/config"
	"github.com/cepcomunicacion/cepjobs/internal/redisconn"
	"github.com/cepcomunicacion/cepjobs/store"
)

// Status of one check.
type Status string

// Statuses, from fine to fatal.
const (
	OK   Status = "ok"
	Info Status = "info"
	Warn Status = "warn"
	Fail Status = "FAIL"
)

// Check is one line of the report.
type Check struct {
	Name   string
	Status Status
	Detail string
}

// Report is the outcome of Run.
type Report struct{ Checks []Check }

// Failed reports whether any check failed.
func (r Report) Failed() bool {
	for _, c := range r.Checks {
		if c.Status == Fail {
			return true
		}
	}
	return false
}

// Print writes the report, one check per line.
func (r Report) Print(w io.Writer) {
	for _, c := range r.Checks {
		fmt.Fprintf(w, "%-5s %-22s %s\n", c.Status, c.Name, c.Detail)
	}
	if r.Failed() {
		fmt.Fprintln(w, "\nsome checks failed: fix the FAIL lines above")
	} else {
		fmt.Fprintln(w, "\nall checks passed")
	}
}

// Params is what Run looks at.
type Params struct {
	Config config.Config
	// Environ is used to tell which integrations have credentials.
	Environ []string
	// PgDump is the pg_dump binary to check; empty means "pg_dump" on PATH.
	PgDump string
}

// Run performs every check. It never stops at the first failure.
func Run(ctx context.Context, p Params) Report {
	var r Report
	add := func(name string, s Status, format string, args ...any) {
		r.Checks = append(r.Checks, Check{Name: name, Status: s, Detail: fmt.Sprintf(format, args...)})
	}
	checkRedis(ctx, p.Config.Redis.URL, add)
	serverMajor := checkPostgres(ctx, p.Config.Store, add)
	checkPgDump(ctx, p.PgDump, serverMajor, add)
	checkIntegrations(p.Environ, add)
	return r
}

type addFunc func(name string, s Status, format string, args ...any)

func checkRedis(ctx context.Context, url string, add addFunc) {
	opt, err := redisconn.Parse(url)
	if err != nil {
		add("redis", Fail, "REDIS_URL: %v", err)
		return
	}
	c := redisconn.Client(opt)
	defer c.Close()
	start := time.Now()
	if err := redisconn.Ping(ctx, c, 3*time.Second); err != nil {
		add("redis", Fail, "%s does not answer: %v", redisconn.Redact(url), err)
		return
	}
	add("redis", OK, "%s answers (%.1f ms)", redisconn.Redact(url), float64(time.Since(start).Microseconds())/1000)

	policy, err := maxmemoryPolicy(ctx, c)
	switch {
	case err != nil:
		add("redis eviction policy", Fail, "cannot read maxmemory-policy: %v", err)
	case policy != "noeviction":
		add("redis eviction policy", Fail, "maxmemory-policy is %q: under memory pressure Redis silently deletes keys, queued tasks included; set maxmemory-policy noeviction", policy)
	default:
		add("redis eviction policy", OK, "noeviction: Redis refuses writes rather than drop queued tasks")
	}

	info, err := c.Info(ctx, "persistence").Result()
	if err != nil {
		add("redis persistence", Warn, "cannot read INFO persistence: %v", err)
		return
	}
	fields := parseInfo(info)
	switch {
	case fields["aof_enabled"] == "1":
		add("redis persistence", OK, "AOF on: queued tasks survive a Redis restart")
	case fields["rdb_last_save_time"] != "" && fields["rdb_changes_since_last_save"] != "":
		add("redis persistence", Warn, "AOF off: a Redis restart loses tasks queued since the last snapshot (fine for development; production wants appendonly yes, appendfsync everysec)")
	default:
		add("redis persistence", Warn, "AOF off")
	}
}

// maxmemoryPolicy asks CONFIG GET, and falls back to INFO memory where a
// managed Redis disables CONFIG.
func maxmemoryPolicy(ctx context.Context, c redis.UniversalClient) (string, error) {
	if m, err := c.ConfigGet(ctx, "maxmemory-policy").Result(); err == nil {
		if v, ok := m["maxmemory-policy"]; ok {
			return v, nil
		}
	}
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		return "", err
	}
	if v, ok := parseInfo(info)["maxmemory_policy"]; ok {
		return v, nil
	}
	return "", fmt.Errorf("neither CONFIG GET nor INFO memory report it")
}

func parseInfo(s string) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":"); ok {
			out[k] = v
		}
	}
	return out
}

func checkPostgres(ctx context.Context, cfg store.Config, add addFunc) (major int) {
	s, err := store.Open(ctx, cfg)
	if err != nil {
		add("postgres", Fail, "%v", err)
		return 0
	}
	defer s.Close()
	start := time.Now()
	if err := s.Ping(ctx); err != nil {
		add("postgres", Fail, "%s does not answer: %v", config.RedactURL(cfg.URL), err)
		return 0
	}
	version, err := s.ServerVersion(ctx)
	if err != nil {
		add("postgres", Fail, "cannot read server version: %v", err)
		return 0
	}
	major = version / 10000
	add("postgres", OK, "%s answers (%.1f ms), server %d", config.RedactURL(cfg.URL), float64(time.Since(start).Microseconds())/1000, major)
	cur, latest, err := s.SchemaVersion(ctx)
	switch {
	case err != nil:
		add("postgres schema", Fail, "cannot read the schema version: %v", err)
	case cur < latest:
		add("postgres schema", Fail, "schema at version %d, this build needs %d: run cepjobs migrate (intake also migrates at start)", cur, latest)
	case cur > latest:
		add("postgres schema", Warn, "schema at version %d, newer than this build knows (%d): an older binary against a newer database", cur, latest)
	default:
		add("postgres schema", OK, "schema cepjobs at version %d (current)", cur)
	}
	return major
}

var pgDumpVersionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

func checkPgDump(ctx context.Context, bin string, serverMajor int, add addFunc) {
	if bin == "" {
		bin = "pg_dump"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		add("pg_dump", Fail, "%s not found: backups cannot run (Debian/Ubuntu: apt-get install postgresql-client-%s)", bin, majorOr(serverMajor, "16"))
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		add("pg_dump", Fail, "%s --version: %v", path, err)
		return
	}
	m := pgDumpVersionRE.FindSubmatch(out)
	if m == nil {
		add("pg_dump", Warn, "%s: cannot read its version from %q", path, strings.TrimSpace(string(out)))
		return
	}
	dumpMajor, _ := strconv.Atoi(string(m[1]))
	if serverMajor > 0 && dumpMajor < serverMajor {
		add("pg_dump", Fail, "%s is version %d, older than the server (%d): pg_dump cannot dump a newer server; install postgresql-client-%d", path, dumpMajor, serverMajor, serverMajor)
		return
	}
	add("pg_dump", OK, "%s (version %d)", path, dumpMajor)
}

func majorOr(m int, def string) string {
	if m > 0 {
		return strconv.Itoa(m)
	}
	return def
}

// integrations maps a name to the variables that must all be set for it.
var integrations = []struct {
	name string
	vars []string
	off  string // what happens without it
}{
	{"mailchimp", []string{"MAILCHIMP_API_KEY", "MAILCHIMP_LIST_ID"}, "list sign-ups are skipped"},
	{"mailchimp transactional", []string{"MANDRILL_API_KEY"}, "welcome emails go through SMTP_URL if set, else are skipped"},
	{"smtp", []string{"SMTP_URL"}, "no SMTP fallback for email"},
	{"meta conversions api", []string{"META_PIXEL_ID", "META_ACCESS_TOKEN"}, "CAPI Lead events are skipped"},
	{"whatsapp", []string{"WHATSAPP_TOKEN", "WHATSAPP_PHONE_NUMBER_ID"}, "sales notifications are skipped"},
	{"openai", []string{"OPENAI_API_KEY"}, "content generation jobs fail"},
	{"hcaptcha", []string{"HCAPTCHA_SECRET"}, "captcha tokens are not verified"},
	{"object storage (s3)", []string{"S3_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY"}, "backups have nowhere to go"},
}

func checkIntegrations(environ []string, add addFunc) {
	set := map[string]bool{}
	for _, kv := range environ {
		if k, v, _ := strings.Cut(kv, "="); v != "" {
			set[k] = true
		}
	}
	for _, in := range integrations {
		var missing []string
		for _, v := range in.vars {
			if !set[v] {
				missing = append(missing, v)
			}
		}
		switch {
		case len(missing) == 0:
			add("integration", Info, "%s: configured", in.name)
		case len(missing) == len(in.vars):
			add("integration", Info, "%s: not configured (%s)", in.name, in.off)
		default:
			add("integration", Warn, "%s: partly configured, missing %s", in.name, strings.Join(missing, ", "))
		}
	}
}
