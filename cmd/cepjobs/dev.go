package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/cepcomunicacion/cepjobs/api"
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
		"CEPJOBS_AUTOMATION_METRICS_ADDR=" + orDefault(get("CEPJOBS_AUTOMATION_METRICS_ADDR"), "127.0.0.1:0")}
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
	printBanner(e.stdout, in.Addr(), servers, cfg, token, dashPassword, automation.MetricsAddr())
	return runAll(ctx, in.Run, automation.Run)
}

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

func printBanner(w io.Writer, addr string, servers *devenv.Env, cfg config.Config, token, dashPassword, automationMetrics string) {
	host, port, _ := net.SplitHostPort(addr)
	if host == "" || host == "::" || host == "0.0.0.0" {
		host = "localhost"
	}
	base := "http://" + net.JoinHostPort(host, port)
	fmt.Fprintf(w, "\ncepjobs dev is running (Ctrl-C stops it)\n\n")
	fmt.Fprintf(w, "  API         %s/v1/leads\n", base)
	fmt.Fprintf(w, "  dashboard   %s/monitoring/\n", base)
	fmt.Fprintf(w, "  metrics     %s/metrics (intake), http://%s/metrics (worker-automation)\n", base, automationMetrics)
	fmt.Fprintf(w, "  redis       %s  (%s)\n", config.RedactURL(servers.RedisURL), servers.RedisOrigin)
	fmt.Fprintf(w, "  postgres    %s  (%s)\n\n", config.RedactURL(servers.DatabaseURL), servers.DatabaseOrigin)
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
	fmt.Fprintf(w, "  running: intake (API, dashboard, outbox relay), worker-automation (channels on: %s).\n", channelsOn(cfg))
	fmt.Fprintf(w, "  Not built yet: worker-llm, worker-stats, scheduler.\n\n")
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
