// Package config reads the environment into one typed struct for every
// cepjobs binary. Each part belongs to the package that uses it
// (store.Config, api.Config, …) and validates itself; Load collects every
// problem and reports them together, and refuses unknown CEPJOBS_* variables
// so a typo cannot silently leave a setting at its default.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/cepcomunicacion/cepjobs/api"
	"github.com/cepcomunicacion/cepjobs/handlers"
	"github.com/cepcomunicacion/cepjobs/internal/backup"
	"github.com/cepcomunicacion/cepjobs/internal/hcaptcha"
	"github.com/cepcomunicacion/cepjobs/internal/llm"
	"github.com/cepcomunicacion/cepjobs/internal/mailchimp"
	"github.com/cepcomunicacion/cepjobs/internal/mandrill"
	"github.com/cepcomunicacion/cepjobs/internal/meta"
	"github.com/cepcomunicacion/cepjobs/internal/redisconn"
	"github.com/cepcomunicacion/cepjobs/internal/smtpmail"
	"github.com/cepcomunicacion/cepjobs/internal/whatsapp"
	"github.com/cepcomunicacion/cepjobs/scheduler"
	"github.com/cepcomunicacion/cepjobs/store"
)

// Config is the whole configuration.
type Config struct {
	Redis   RedisConfig
	Store   store.Config
	API     api.Config
	Captcha hcaptcha.Config
	Outbox  OutboxConfig
	Log     LogConfig
	Fetch   FetchConfig

	Automation handlers.AutomationConfig
	Mailchimp  mailchimp.Config
	Mandrill   mandrill.Config
	SMTP       smtpmail.Config
	Meta       meta.Config
	MetaAds    meta.AdsConfig
	MetaLeads  meta.LeadAdsConfig
	WhatsApp   whatsapp.Config
	Scheduler  scheduler.Config
	Stats      handlers.StatsConfig
	LLMWorker  handlers.LLMConfig
	LLM        llm.Config
	Backup     backup.Config
	Exports    handlers.ExportsConfig
	Report     handlers.ReportConfig

	env map[string]string
}

// RedisConfig is where the queues live.
type RedisConfig struct {
	URL string `env:"REDIS_URL" default:"redis://127.0.0.1:6379/0" secret:"url"`
}

// Validate reports what is wrong with c.
func (c RedisConfig) Validate() error {
	if _, err := redisconn.Parse(c.URL); err != nil {
		return fmt.Errorf("REDIS_URL: %v", err)
	}
	return nil
}

// OutboxConfig tunes the relay that re-sends tasks Redis did not take, and
// the sweep that sends the tasks of queued leads that are not in Redis.
type OutboxConfig struct {
	Interval time.Duration `env:"CEPJOBS_OUTBOX_INTERVAL" default:"1s"`
	Batch    int           `env:"CEPJOBS_OUTBOX_BATCH" default:"200"`
	// SweepAfter is how long a lead may stay queued before the sweep checks
	// that its task is in Redis (at least 1s; the sweep cannot be off).
	SweepAfter    time.Duration `env:"CEPJOBS_SWEEP_AFTER" default:"1m"`
	SweepInterval time.Duration `env:"CEPJOBS_SWEEP_INTERVAL" default:"30s"`
	SweepBatch    int           `env:"CEPJOBS_SWEEP_BATCH" default:"1000"`
}

// Validate reports what is wrong with c.
func (c OutboxConfig) Validate() error {
	var errs []error
	if c.Interval < 10*time.Millisecond {
		errs = append(errs, errors.New("CEPJOBS_OUTBOX_INTERVAL: must be at least 10ms"))
	}
	if c.Batch < 1 || c.Batch > 10000 {
		errs = append(errs, errors.New("CEPJOBS_OUTBOX_BATCH: must be between 1 and 10000"))
	}
	errs = append(errs, c.validateSweep()...)
	return errors.Join(errs...)
}

// FetchConfig tunes how worker-automation, the worker leads wait on, takes
// tasks off Redis (bench/RESULTS.md has the measurements behind the
// defaults). The other workers poll every CEPJOBS_TASK_CHECK_INTERVAL.
type FetchConfig struct {
	// Lanes is the number of asynq servers worker-automation runs, its
	// concurrency split between them. asynq's processor fetches one task
	// per Redis round trip in a single loop; each lane adds a loop. Each
	// lane also polls empty queues on its own.
	Lanes int `env:"CEPJOBS_FETCH_LANES" default:"2"`
	// PollInterval is how long a lane that found its queues empty waits
	// before it looks again (asynq's TaskCheckInterval; asynq randomises
	// each wait to 0.5–1.5× it). It bounds how long a task enqueued into
	// an idle worker waits, and sets the worker's idle Redis load.
	PollInterval time.Duration `env:"CEPJOBS_FETCH_POLL_INTERVAL" default:"2ms"`
}

// Validate reports what is wrong with c.
func (c FetchConfig) Validate() error {
	var errs []error
	if c.Lanes < 1 || c.Lanes > 16 {
		errs = append(errs, errors.New("CEPJOBS_FETCH_LANES: must be between 1 and 16"))
	}
	if c.PollInterval < time.Millisecond || c.PollInterval > time.Minute {
		errs = append(errs, errors.New("CEPJOBS_FETCH_POLL_INTERVAL: must be between 1ms and 1m"))
	}
	return errors.Join(errs...)
}

// LogConfig shapes the structured log and the debug endpoint.
type LogConfig struct {
	Level  string `env:"CEPJOBS_LOG_LEVEL" default:"info"`
	Format string `env:"CEPJOBS_LOG_FORMAT" default:"json"`
	// PprofAddr, when set, serves net/http/pprof on a loopback address
	// (profiling a live process: `go tool pprof http://ADDR/debug/pprof/profile`).
	PprofAddr string `env:"CEPJOBS_PPROF_ADDR"`
}

// Validate reports what is wrong with c.
func (c LogConfig) Validate() error {
	var errs []error
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.Level)); err != nil {
		errs = append(errs, fmt.Errorf("CEPJOBS_LOG_LEVEL: want debug, info, warn or error, got %q", c.Level))
	}
	if c.Format != "json" && c.Format != "text" {
		errs = append(errs, fmt.Errorf("CEPJOBS_LOG_FORMAT: want json or text, got %q", c.Format))
	}
	if c.PprofAddr != "" {
		host, _, err := net.SplitHostPort(c.PprofAddr)
		ip, perr := netip.ParseAddr(host)
		if err != nil || (host != "localhost" && (perr != nil || !ip.IsLoopback())) {
			errs = append(errs, fmt.Errorf("CEPJOBS_PPROF_ADDR: want a loopback host:port such as 127.0.0.1:6060 (profiles must not be reachable from the network), got %q", c.PprofAddr))
		}
	}
	return errors.Join(errs...)
}

// SlogLevel is the parsed level.
func (c LogConfig) SlogLevel() slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(c.Level))
	return l
}

// Load reads environ (os.Environ form) into a Config and validates it. The
// error lists every problem, one per line.
func Load(environ []string) (Config, error) {
	env := make(map[string]string, len(environ))
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	var c Config
	errs := load(&c, env)
	known := names(&c)
	var unknown []string
	for k := range env {
		if strings.HasPrefix(k, "CEPJOBS_") && !known[k] {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		msg := fmt.Sprintf("%s: unknown variable", k)
		if s := closest(k, known); s != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", s)
		}
		errs = append(errs, errors.New(msg))
	}
	// Validate only what parsed: a bad value already has its error.
	bad := map[string]bool{}
	for _, e := range errs {
		name, _, _ := strings.Cut(e.Error(), ":")
		bad[name] = true
	}
	// Every Validate error starts with the variable's name.
	for _, part := range []interface{ Validate() error }{c.Redis, c.Store, c.API, c.Captcha, c.Outbox, c.Log, c.Fetch,
		c.Automation, c.Mailchimp, c.Mandrill, c.SMTP, c.Meta, c.MetaAds, c.MetaLeads, c.API.MetaWebhook, c.WhatsApp, c.Scheduler, c.Stats, c.Backup, backupSchedule{c.Backup.Schedule},
		c.LLMWorker, c.LLM, c.Exports, c.Report} {
		for _, e := range splitJoined(part.Validate()) {
			name, _, _ := strings.Cut(e.Error(), ":")
			if !bad[name] {
				errs = append(errs, e)
			}
		}
	}
	c.env = env
	if len(errs) > 0 {
		return c, &Error{Problems: errs}
	}
	return c, nil
}

// backupSchedule checks CEPJOBS_BACKUP_SCHEDULE (read by backup.Config, run
// by the scheduler) as the scheduler will parse it.
type backupSchedule struct{ spec string }

func (b backupSchedule) Validate() error {
	if err := scheduler.ValidateSpec(b.spec); err != nil {
		return fmt.Errorf("CEPJOBS_BACKUP_SCHEDULE: %v", err)
	}
	return nil
}

// BackupDatabaseURL is the database backups are taken of.
func (c Config) BackupDatabaseURL() string {
	if c.Stats.BackupDatabaseURL != "" {
		return c.Stats.BackupDatabaseURL
	}
	return c.Store.URL
}

// Error lists every configuration problem.
type Error struct{ Problems []error }

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid configuration (%d problem", len(e.Problems))
	if len(e.Problems) != 1 {
		b.WriteString("s")
	}
	b.WriteString("):")
	for _, p := range e.Problems {
		b.WriteString("\n  - ")
		b.WriteString(p.Error())
	}
	return b.String()
}

func splitJoined(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// Vars lists every variable with its effective value, secrets redacted.
func (c *Config) Vars() []Var {
	return describe(c, c.env)
}

// Logger builds the process logger the config asks for.
func (c Config) Logger(w interface{ Write([]byte) (int, error) }) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.Log.SlogLevel()}
	if c.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
