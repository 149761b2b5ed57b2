package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/cepcomunicacion/cepjobs/internal/meta"
	"github.com/cepcomunicacion/cepjobs/internal/whatsapp"
	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// SourceMetaLeadAd is the source of leads that came from Meta Lead Ads: Meta
// already has them, so no Conversions API event is echoed back.
const SourceMetaLeadAd = "meta-lead-ad"

// metaSender is the part of *meta.Client the channel uses.
type metaSender interface {
	SendLead(ctx context.Context, ev meta.LeadEvent) (meta.Result, error)
}

// MetaChannel sends a Conversions API Lead event with event_id = lead id, so
// Meta de-duplicates a repeated send (and the browser pixel's event).
type MetaChannel struct {
	Client metaSender
	// NeedsMarketingConsent skips leads without marketing consent: sharing
	// (hashed) contact data with an ad network for measurement needs it
	// under RGPD unless the privacy text says otherwise.
	NeedsMarketingConsent bool
	// SourceURL is the event_source_url Meta requires for website events.
	SourceURL string
}

// Name implements Channel.
func (MetaChannel) Name() tasks.Channel { return tasks.ChannelMeta }

// RateKey implements Channel.
func (MetaChannel) RateKey() string { return "meta" }

// Skip implements Channel.
func (c MetaChannel) Skip(l store.LeadDetail) string {
	switch {
	case l.Source == SourceMetaLeadAd:
		return "lead came from Meta Lead Ads: not echoed back to Meta"
	case c.NeedsMarketingConsent && !l.ConsentMarketing:
		return "no marketing consent"
	}
	return ""
}

// Deliver implements Channel.
func (c MetaChannel) Deliver(ctx context.Context, l store.LeadDetail, _ store.Delivery, _ func(json.RawMessage) error) (string, error) {
	ev := meta.LeadEvent{
		EventID: l.ID, EventTime: l.ReceivedAt,
		Email: l.Email, Phone: l.Phone, FirstName: l.FirstName, LastName: l.LastName,
		UserAgent: l.ClientUserAgent, EventSourceURL: c.SourceURL,
		CustomData: map[string]any{"content_name": l.Course, "content_category": l.Source},
	}
	if l.ClientIP != nil {
		ev.ClientIP = l.ClientIP.String()
	}
	if l.Campaign != "" {
		ev.CustomData["campaign"] = l.Campaign
	}
	if l.Site != "" {
		ev.CustomData["campus"] = l.Site
	}
	res, err := c.Client.SendLead(ctx, ev)
	if err != nil {
		return "", err
	}
	return res.FBTraceID, nil
}

// whatsappSender is the part of *whatsapp.Client the channel uses.
type whatsappSender interface {
	SendTemplate(ctx context.Context, to string, tmpl whatsapp.Template) (string, error)
	SalesNumbers() []string
}

// WhatsAppChannel notifies every sales number with the lead's course, campus
// and link. The Cloud API has no idempotency key: each number that got its
// message is recorded right away, so a retry only sends to the others.
type WhatsAppChannel struct {
	Client   whatsappSender
	Throttle throttle
	// LinkFor builds the link sales open.
	LinkFor func(id, externalID string) string
}

// Name implements Channel.
func (WhatsAppChannel) Name() tasks.Channel { return tasks.ChannelWhatsApp }

// RateKey implements Channel.
func (WhatsAppChannel) RateKey() string { return "whatsapp" }

// Skip implements Channel.
func (WhatsAppChannel) Skip(store.LeadDetail) string { return "" }

// whatsappProgress is the delivery's detail: message id per number.
type whatsappProgress struct {
	Sent map[string]string `json:"sent"`
}

// pairInterval is WhatsApp's pair rate limit: about one message every six
// seconds to the same recipient (error 131056 otherwise). The limiter
// enforces the configured spacing; this bounds how long to wait inline.
const pairInterval = 6 * time.Second

// Deliver implements Channel.
func (c WhatsAppChannel) Deliver(ctx context.Context, l store.LeadDetail, prev store.Delivery, progress func(json.RawMessage) error) (string, error) {
	var p whatsappProgress
	if len(prev.Detail) > 0 {
		_ = json.Unmarshal(prev.Detail, &p)
	}
	if p.Sent == nil {
		p.Sent = map[string]string{}
	}
	msg := whatsapp.LeadNotification(l.Course, l.Site, c.LinkFor(l.ID, l.ExternalID))
	for _, to := range c.Client.SalesNumbers() {
		if p.Sent[to] != "" {
			continue
		}
		if c.Throttle != nil {
			if err := c.Throttle.Wait(ctx, "whatsapp-pair:"+to, maxInlineWait+pairInterval); err != nil {
				return "", err
			}
		}
		id, err := c.Client.SendTemplate(ctx, to, msg)
		if err != nil {
			return "", err
		}
		p.Sent[to] = id
		b, _ := json.Marshal(p)
		if err := progress(b); err != nil {
			return "", fmt.Errorf("record whatsapp progress: %w", err)
		}
	}
	ids := make([]string, 0, len(p.Sent))
	for _, id := range p.Sent {
		ids = append(ids, id)
	}
	return strings.Join(ids, ","), nil
}
