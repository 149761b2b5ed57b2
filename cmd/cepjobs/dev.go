package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cepcomunicacion/cepjobs/api"
	"github.com/cepcomunicacion/cepjobs/internal/backup/backuptest"
	"github.com/cepcomunicacion/cepjobs/internal/config"
	"github.com/cepcomunicacion/cepjobs/internal/devenv"
	"github.com/cepcomunicacion/cepjobs/internal/fleet"
)

// runDev runs the whole fleet in one process for development: it finds or
// starts Redis and PostgreSQL, fills in dev credentials where none are
// configured, and prints how to reach everything.
func runDev(ctx context.Context, e env, rest []string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	dir := fs.String("dir", ".dev", "state directory for private Redis and PostgreSQL servers")
	if err := fs.Parse(rest); err != nil {
		return exitError(2)
	}
	get := lookup(e.environ)
	logCfg, err := config.Load(append(e.environ[:len(e.environ):len(e.environ)], "CEPJOBS_LOG_FORMAT="+orDefault(get("CEPJOBS_LOG_FORMAT"), "text")))
	if err != nil {
		return err
	}
	log := logCfg.Logger(e.stderr)

	servers, err := devenv.Ensure(ctx, devenv.Params{Dir: *dir, RedisURL: get("REDIS_URL"), DatabaseURL: get("DATABASE_URL"), Logger: log})
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := servers.Close(cctx); err != nil {
			log.Warn("stop private servers", "err", err)
		}
	}()

	overrides := []string{"REDIS_URL=" + servers.RedisURL, "DATABASE_URL=" + servers.DatabaseURL,
		"CEPJOBS_LOG_FORMAT=" + orDefault(get("CEPJOBS_LOG_FORMAT"), "text"),
		// Workers share the process: their metrics go on free ports.
		"CEPJOBS_AUTOMATION_METRICS_ADDR=" + orDefault(get("CEPJOBS_AUTOMATION_METRICS_ADDR"), "127.0.0.1:0"),
		"CEPJOBS_LLM_METRICS_ADDR=" + orDefault(get("CEPJOBS_LLM_METRICS_ADDR"), "127.0.0.1:0")}
	// Object storage for backups: a local S3 server (versitygw, built and
	// cached on first use) when none is configured.
	s3Origin := "S3_ENDPOINT"
	if get("S3_ENDPOINT") == "" {
		fmt.Fprintln(e.stderr, "starting a local S3 server for backups (the first run builds it: about a minute)…")
		s3, err := backuptest.Start(ctx)
		if err != nil {
			return fmt.Errorf("start a local S3 server for backups: %w (or set S3_ENDPOINT, S3_ACCESS_KEY and S3_SECRET_KEY)", err)
		}
		defer s3.Close()
		s3Origin = "local versitygw, this run only"
		overrides = append(overrides, "S3_ENDPOINT="+s3.Endpoint, "S3_ACCESS_KEY="+s3.AccessKey, "S3_SECRET_KEY="+s3.SecretKey,
			"S3_REGION="+s3.Region, "S3_USE_TLS=false")
	}
	overrides = append(overrides, "CEPJOBS_STATS_METRICS_ADDR="+orDefault(get("CEPJOBS_STATS_METRICS_ADDR"), "127.0.0.1:0"))

	var token, dashPassword string
	if get("CEPJOBS_API_TOKENS") == "" {
		token = "dev-" + randomHex(16)
		overrides = append(overrides, "CEPJOBS_API_TOKENS=dev:"+token+":"+strings.Join(api.KnownScopes, "|"))
	}
	if get("CEPJOBS_DASHBOARD_USER") == "" && get("CEPJOBS_DASHBOARD_PASSWORD_HASH") == "" {
		dashPassword = randomHex(12)
		h, err := api.HashPassword(dashPassword)
		if err != nil {
			return err
		}
		overrides = append(overrides, "CEPJOBS_DASHBOARD_USER=admin", "CEPJOBS_DASHBOARD_PASSWORD_HASH="+h)
	}
	cfg, err := config.Load(append(e.environ[:len(e.environ):len(e.environ)], overrides...))
	if err != nil {
		return err
	}
	log = cfg.Logger(e.stderr)

	in, err := fleet.NewIntake(ctx, cfg, log.With("process", "intake"))
	if err != nil {
		return err
	}
	automation, err := fleet.NewAutomationWorker(ctx, cfg, log.With("process", "worker-automation"))
	if err != nil {
		return err
	}
	stats, err := fleet.NewStatsWorker(ctx, cfg, log.With("process", "worker-stats"))
	if err != nil {
		return err
	}
	sched, err := fleet.NewScheduler(ctx, cfg, log.With("process", "scheduler"))
	if err != nil {
		return err
	}
	procs := []func(context.Context) error{in.Run, automation.Run, stats.Run, sched.Run}
	llmState := "not served: set OPENAI_API_KEY (OpenAI, or OPENAI_BASE_URL of a compatible endpoint such as a local Ollama)"
	if cfg.LLM.Enabled() {
		llmw, err := fleet.NewLLMWorker(ctx, cfg, log.With("process", "worker-llm"))
		if err != nil {
			return err
		}
		procs = append(procs, llmw.Run)
		llmState = "on, model " + cfg.LLM.Model
	} else {
		log.Warn("queue llm is not served: worker-llm needs OPENAI_API_KEY; content jobs wait in the llm queue")
	}
	envFile, err := writeDevEnv(*dir, cfg)
	if err != nil {
		return err
	}
	printBanner(e.stdout, banner{addr: in.Addr(), servers: servers, cfg: cfg, token: token, dashPassword: dashPassword,
		automationMetrics: automation.MetricsAddr(), statsMetrics: stats.MetricsAddr(), s3Origin: s3Origin, envFile: envFile, llm: llmState})
	return runAll(ctx, procs...)
}

// writeDevEnv writes the servers' variables to <dir>/env, so the CLI in
// another terminal (`source .dev/env; cepjobs backup now`) talks to the
// same Redis, PostgreSQL and S3 as this run.
func writeDevEnv(dir string, cfg config.Config) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("write dev env: %w", err)
	}
	path := filepath.Join(dir, "env")
	var b strings.Builder
	b.WriteString("# written by cepjobs dev for this run: source it in another terminal\n")
	for _, kv := range [][2]string{
		{"REDIS_URL", cfg.Redis.URL}, {"DATABASE_URL", cfg.Store.URL},
		{"S3_ENDPOINT", cfg.Backup.Endpoint}, {"S3_ACCESS_KEY", cfg.Backup.AccessKey}, {"S3_SECRET_KEY", cfg.Backup.SecretKey},
		{"S3_REGION", cfg.Backup.Region}, {"S3_USE_TLS", strconv.FormatBool(cfg.Backup.UseTLS)},
	} {
		fmt.Fprintf(&b, "export %s=%s\n", kv[0], shellQuote(kv[1]))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return "", fmt.Errorf("write dev env: %w", err)
	}
	return path, nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// runAll runs every process until ctx ends or one of them fails; a failure
// stops the others, and every process shuts down gracefully.
func runAll(ctx context.Context, procs ...func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(procs))
	for _, p := range procs {
		go func() {
			err := p(ctx)
			if err != nil {
				cancel()
			}
			errc <- err
		}()
	}
	var first error
	for range procs {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}

type banner struct {
	addr                            string
	servers                         *devenv.Env
	cfg                             config.Config
	token, dashPassword             string
	automationMetrics, statsMetrics string
	s3Origin, envFile               string
	llm                             string
}

func printBanner(w io.Writer, bn banner) {
	addr, servers, cfg, token, dashPassword := bn.addr, bn.servers, bn.cfg, bn.token, bn.dashPassword
	host, port, _ := net.SplitHostPort(addr)
	if host == "" || host == "::" || host == "0.0.0.0" {
		host = "localhost"
	}
	base := "http://" + net.JoinHostPort(host, port)
	fmt.Fprintf(w, "\ncepjobs dev is running (Ctrl-C stops it)\n\n")
	fmt.Fprintf(w, "  API         %s/v1/leads\n", base)
	fmt.Fprintf(w, "  dashboard   %s/monitoring/\n", base)
	fmt.Fprintf(w, "  metrics     %s/metrics (intake), http://%s/metrics (worker-automation), http://%s/metrics (worker-stats)\n", base, bn.automationMetrics, bn.statsMetrics)
	fmt.Fprintf(w, "  redis       %s  (%s)\n", config.RedactURL(servers.RedisURL), servers.RedisOrigin)
	fmt.Fprintf(w, "  postgres    %s  (%s)\n", config.RedactURL(servers.DatabaseURL), servers.DatabaseOrigin)
	fmt.Fprintf(w, "  s3          %s bucket %s  (%s)\n\n", cfg.Backup.Endpoint, cfg.Backup.Bucket, bn.s3Origin)
	if token != "" {
		fmt.Fprintf(w, "  API token (all scopes, this run only):  %s\n", token)
	} else {
		fmt.Fprintf(w, "  API tokens: from CEPJOBS_API_TOKENS\n")
	}
	if dashPassword != "" {
		fmt.Fprintf(w, "  dashboard login (this run only):        admin / %s\n", dashPassword)
	} else {
		fmt.Fprintf(w, "  dashboard login: CEPJOBS_DASHBOARD_USER %q with your password\n", cfg.API.Dashboard.User)
	}
	tok := token
	if tok == "" {
		tok = "$TOKEN"
	}
	fmt.Fprintf(w, "\n  try it:\n    curl -s -X POST %s/v1/leads -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' \\\n", base, tok)
	fmt.Fprintf(w, "      -d '{\"first_name\":\"Ana\",\"email\":\"ana@example.com\",\"course\":\"tecnico-marketing-digital\",\"source\":\"web-form\",\"consent\":{\"privacy\":true,\"text_version\":\"2026-01\"}}'\n\n")
	fmt.Fprintf(w, "  backups (another terminal):\n    source %s && go run ./cmd/cepjobs backup now && go run ./cmd/cepjobs backup list\n\n", bn.envFile)
	fmt.Fprintf(w, "  running: intake (API, dashboard, outbox relay), worker-automation (channels on: %s),\n", channelsOn(cfg))
	fmt.Fprintf(w, "  worker-stats (backups, maintenance), scheduler; worker-llm %s.\n\n", bn.llm)
}

func channelsOn(cfg config.Config) string {
	var on []string
	if cfg.Mailchimp.Enabled() {
		on = append(on, "mailchimp")
	}
	if cfg.SMTP.Enabled() || cfg.Mandrill.Enabled() {
		on = append(on, "welcome_email")
	}
	if cfg.Meta.Enabled() {
		on = append(on, "meta")
	}
	if cfg.WhatsApp.Enabled() {
		on = append(on, "whatsapp")
	}
	if len(on) == 0 {
		return "none: every channel is recorded as skipped; see README to connect vendor accounts"
	}
	return strings.Join(on, ", ")
}

func lookup(environ []string) func(string) string {
	m := map[string]string{}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return func(k string) string { return m[k] }
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
