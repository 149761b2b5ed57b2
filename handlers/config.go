package handlers

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// AutomationConfig tunes worker-automation.
type AutomationConfig struct {
	Concurrency       int           `env:"CEPJOBS_AUTOMATION_CONCURRENCY" default:"20"`
	MetricsAddr       string        `env:"CEPJOBS_AUTOMATION_METRICS_ADDR" default:":9101"`
	ShutdownTimeout   time.Duration `env:"CEPJOBS_WORKER_SHUTDOWN_TIMEOUT" default:"25s"`
	TaskCheckInterval time.Duration `env:"CEPJOBS_TASK_CHECK_INTERVAL" default:"100ms"`
	// Per-vendor limits, requests per second, shared by every replica.
	RateMailchimp float64 `env:"CEPJOBS_RATE_MAILCHIMP" default:"10"`
	RateMandrill  float64 `env:"CEPJOBS_RATE_MANDRILL" default:"20"`
	RateMeta      float64 `env:"CEPJOBS_RATE_META" default:"50"`
	RateSMTP      float64 `env:"CEPJOBS_RATE_SMTP" default:"10"`
	// LeadLink is the link sales get in WhatsApp; {id} and {external_id}
	// are replaced.
	LeadLink string `env:"CEPJOBS_LEAD_LINK" default:"https://cepcomunicacion.com/admin/collections/leads/{external_id}"`
	// WhatsAppPairInterval spaces messages to one salesperson: WhatsApp
	// refuses more than about one every 6 s to the same recipient (131056).
	// 0 turns the spacing off (tests).
	WhatsAppPairInterval time.Duration `env:"CEPJOBS_WHATSAPP_PAIR_INTERVAL" default:"6s"`
	// SiteURL is the event_source_url of Meta events (the site the forms
	// are on).
	SiteURL string `env:"CEPJOBS_SITE_URL" default:"https://cepcomunicacion.com"`
	// MetaNeedsMarketingConsent keeps leads without marketing consent out
	// of the Conversions API.
	MetaNeedsMarketingConsent bool `env:"CEPJOBS_META_REQUIRES_MARKETING_CONSENT" default:"true"`
}

// Validate reports every problem.
func (c AutomationConfig) Validate() error {
	var errs []error
	if c.Concurrency < 1 || c.Concurrency > 1000 {
		errs = append(errs, errors.New("CEPJOBS_AUTOMATION_CONCURRENCY: must be between 1 and 1000"))
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("CEPJOBS_AUTOMATION_METRICS_ADDR: want host:port or :port, got %q", c.MetricsAddr))
		}
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("CEPJOBS_WORKER_SHUTDOWN_TIMEOUT: must be positive"))
	}
	if c.TaskCheckInterval < time.Millisecond {
		errs = append(errs, errors.New("CEPJOBS_TASK_CHECK_INTERVAL: must be at least 1ms"))
	}
	for name, r := range map[string]float64{"CEPJOBS_RATE_MAILCHIMP": c.RateMailchimp, "CEPJOBS_RATE_MANDRILL": c.RateMandrill, "CEPJOBS_RATE_META": c.RateMeta, "CEPJOBS_RATE_SMTP": c.RateSMTP} {
		if r < 0 {
			errs = append(errs, fmt.Errorf("%s: must not be negative (0 means unlimited)", name))
		}
	}
	if !strings.HasPrefix(c.LeadLink, "https://") && !strings.HasPrefix(c.LeadLink, "http://") {
		errs = append(errs, errors.New("CEPJOBS_LEAD_LINK: want an http(s) URL with {id} or {external_id}"))
	}
	if !strings.HasPrefix(c.SiteURL, "https://") && !strings.HasPrefix(c.SiteURL, "http://") {
		errs = append(errs, errors.New("CEPJOBS_SITE_URL: want an http(s) URL"))
	}
	return errors.Join(errs...)
}

// LinkFor is the lead's link for sales.
func (c AutomationConfig) LinkFor(id, externalID string) string {
	if externalID == "" {
		externalID = id
	}
	return strings.NewReplacer("{id}", id, "{external_id}", externalID).Replace(c.LeadLink)
}

// StatsConfig tunes worker-stats.
type StatsConfig struct {
	// Concurrency is small: backups stream through the process and each
	// holds a 16 MiB upload buffer.
	Concurrency int    `env:"CEPJOBS_STATS_CONCURRENCY" default:"2"`
	MetricsAddr string `env:"CEPJOBS_STATS_METRICS_ADDR" default:":9103"`
	// BackupDatabaseURL is the database to back up; empty means
	// DATABASE_URL (the platform database, which holds schema cepjobs).
	BackupDatabaseURL string `env:"CEPJOBS_BACKUP_DATABASE_URL" secret:"url"`
	// OpsEmail receives an alert when a backup fails for good.
	OpsEmail string `env:"CEPJOBS_OPS_EMAIL"`
	// LeadRetention: the daily purge anonymises leads received longer ago
	// (RGPD storage limitation); 0 keeps them.
	LeadRetention time.Duration `env:"CEPJOBS_LEAD_RETENTION" default:"17520h"`
}

// Validate reports every problem.
func (c StatsConfig) Validate() error {
	var errs []error
	if c.Concurrency < 1 || c.Concurrency > 64 {
		errs = append(errs, errors.New("CEPJOBS_STATS_CONCURRENCY: must be between 1 and 64"))
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("CEPJOBS_STATS_METRICS_ADDR: want host:port or :port, got %q", c.MetricsAddr))
		}
	}
	if c.LeadRetention < 0 || c.LeadRetention > 0 && c.LeadRetention < 30*24*time.Hour {
		errs = append(errs, errors.New("CEPJOBS_LEAD_RETENTION: 0 (keep) or at least 720h"))
	}
	if c.OpsEmail != "" && !strings.Contains(c.OpsEmail, "@") {
		errs = append(errs, errors.New("CEPJOBS_OPS_EMAIL: want an email address"))
	}
	return errors.Join(errs...)
}

// LLMConfig tunes worker-llm.
type LLMConfig struct {
	// Concurrency is small: each job holds a model call for seconds, and
	// the endpoint's rate limits bind long before our CPU does.
	Concurrency int    `env:"CEPJOBS_LLM_CONCURRENCY" default:"4"`
	MetricsAddr string `env:"CEPJOBS_LLM_METRICS_ADDR" default:":9102"`
	// CallbackSecret signs result callbacks to the CMS.
	CallbackSecret string `env:"CEPJOBS_CALLBACK_SECRET" secret:"true"`
}

// Validate reports every problem.
func (c LLMConfig) Validate() error {
	var errs []error
	if c.Concurrency < 1 || c.Concurrency > 256 {
		errs = append(errs, errors.New("CEPJOBS_LLM_CONCURRENCY: must be between 1 and 256"))
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("CEPJOBS_LLM_METRICS_ADDR: want host:port or :port, got %q", c.MetricsAddr))
		}
	}
	if c.CallbackSecret != "" && len(c.CallbackSecret) < 16 {
		errs = append(errs, errors.New("CEPJOBS_CALLBACK_SECRET: use at least 16 characters (try: openssl rand -hex 32)"))
	}
	return errors.Join(errs...)
}
