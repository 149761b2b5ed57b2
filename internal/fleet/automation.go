package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/cepcomunicacion/cepjobs/handlers"
	"github.com/cepcomunicacion/cepjobs/internal/config"
	"github.com/cepcomunicacion/cepjobs/internal/mailchimp"
	"github.com/cepcomunicacion/cepjobs/internal/mandrill"
	"github.com/cepcomunicacion/cepjobs/internal/meta"
	"github.com/cepcomunicacion/cepjobs/internal/ratelimit"
	"github.com/cepcomunicacion/cepjobs/internal/smtpmail"
	"github.com/cepcomunicacion/cepjobs/internal/whatsapp"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// NewAutomationWorker assembles worker-automation: the critical queue
// (lead fan-out and deliveries) weighted above default (email), each channel
// whose credentials are configured, and the shared rate limits.
func NewAutomationWorker(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *Worker, err error) {
	b, err := openBase(ctx, cfg.Store, cfg.Redis.URL)
	if err != nil {
		return nil, fmt.Errorf("start worker-automation: %w", err)
	}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	ac := cfg.Automation
	rates := map[string]float64{
		"mailchimp": ac.RateMailchimp, "mandrill": ac.RateMandrill, "meta": ac.RateMeta, "smtp": ac.RateSMTP,
		"whatsapp": cfg.WhatsApp.RatePerSecond,
	}
	if d := ac.WhatsAppPairInterval; d > 0 {
		for _, n := range cfg.WhatsApp.SalesNumbers {
			rates["whatsapp-pair:"+n] = float64(time.Second) / float64(d)
		}
	}
	limiter := ratelimit.New(b.redis, rates)

	var (
		channels []handlers.Channel
		off      = map[tasks.Channel]string{}
		on       []string
	)
	var eraser handlers.MemberEraser
	if cfg.Mailchimp.Enabled() {
		c, err := mailchimp.New(cfg.Mailchimp, nil)
		if err != nil {
			return nil, err
		}
		channels = append(channels, handlers.MailchimpChannel{Client: c})
		eraser = c
	} else {
		off[tasks.ChannelMailchimp] = "not configured: set MAILCHIMP_API_KEY and MAILCHIMP_LIST_ID"
	}

	var (
		mdr  *mandrill.Client
		smtp *smtpmail.Client
	)
	if cfg.SMTP.Enabled() {
		if smtp, err = smtpmail.New(cfg.SMTP, nil); err != nil {
			return nil, err
		}
	}
	if cfg.Mandrill.Enabled() {
		if mdr, err = mandrill.New(cfg.Mandrill, nil); err != nil {
			return nil, err
		}
	}
	var email handlers.EmailSender
	switch {
	case smtp != nil:
		channels = append(channels, handlers.WelcomeEmailChannel{SMTP: smtp})
		email = handlers.TransactionalEmail{SMTP: smtp}
	case mdr != nil:
		channels = append(channels, handlers.WelcomeEmailChannel{Mandrill: mdr, TemplateFor: cfg.Mandrill.TemplateFor})
		email = handlers.TransactionalEmail{Mandrill: mdr}
	default:
		off[tasks.ChannelWelcomeEmail] = "not configured: set MANDRILL_API_KEY and MANDRILL_FROM, or SMTP_URL"
	}

	if cfg.Meta.Enabled() {
		c, err := meta.New(cfg.Meta, nil)
		if err != nil {
			return nil, err
		}
		channels = append(channels, handlers.MetaChannel{Client: c, NeedsMarketingConsent: ac.MetaNeedsMarketingConsent, SourceURL: ac.SiteURL})
	} else {
		off[tasks.ChannelMeta] = "not configured: set META_PIXEL_ID and META_ACCESS_TOKEN"
	}

	if cfg.WhatsApp.Enabled() {
		c, err := whatsapp.New(cfg.WhatsApp, nil)
		if err != nil {
			return nil, err
		}
		channels = append(channels, handlers.WhatsAppChannel{Client: c, Throttle: limiter, LinkFor: ac.LinkFor})
	} else {
		off[tasks.ChannelWhatsApp] = "not configured: set WHATSAPP_TOKEN, WHATSAPP_PHONE_NUMBER_ID and WHATSAPP_SALES_NUMBERS"
	}
	for _, c := range channels {
		on = append(on, string(c.Name()))
	}
	var offNames []string
	for ch := range off {
		offNames = append(offNames, string(ch))
	}
	log.Info("channels", "on", strings.Join(on, ","), "off", strings.Join(offNames, ","))

	w, err := newWorker("worker-automation", automationWorkerConfig(cfg), b.opt, log, b.reg)
	if err != nil {
		return nil, err
	}
	w.mux = handlers.NewAutomation(handlers.AutomationDeps{
		Store: b.store, Queue: b.client, Throttle: limiter,
		Channels: channels, Off: off, Email: email, Eraser: eraser,
		Logger: log, Metrics: handlers.NewMetrics(b.reg),
	})
	x := automationExtras{mux: w.mux, base: b, cfg: cfg, log: log, limiter: limiter}
	for _, add := range []func(automationExtras) error{addCampaigns, addMetaLeadgen} {
		if err := add(x); err != nil {
			return nil, fmt.Errorf("start worker-automation: %w", err)
		}
	}
	w.closers = append(w.closers, b.close)
	return w, nil
}

// automationWorkerConfig is worker-automation's asynq side: the critical
// queue weighted above default, and its own fetch settings (lanes, poll
// interval: CEPJOBS_FETCH_*, not CEPJOBS_TASK_CHECK_INTERVAL).
func automationWorkerConfig(cfg config.Config) WorkerConfig {
	ac := cfg.Automation
	return WorkerConfig{
		Concurrency:       ac.Concurrency,
		Queues:            map[string]int{tasks.QueueCritical: 6, tasks.QueueDefault: 3},
		MetricsAddr:       ac.MetricsAddr,
		ShutdownTimeout:   ac.ShutdownTimeout,
		TaskCheckInterval: cfg.Fetch.PollInterval,
		FetchLanes:        cfg.Fetch.Lanes,
	}
}
