package tasks

import (
	"encoding/json"
	"fmt"

	"github.com/hibiken/asynq"
)

// LeadProcess asks the automation worker to fan a stored lead out to its
// delivery channels.
type LeadProcess struct {
	LeadID string `json:"lead_id"`
}

// Validate reports what is wrong with the payload.
func (p LeadProcess) Validate() error {
	return validUUID("lead_id", p.LeadID)
}

// NewLeadProcess builds the lead:process task. taskID is the outbox row id,
// so a re-send of the same row is a duplicate in asynq, not a second run.
func NewLeadProcess(p LeadProcess, taskID string) (*asynq.Task, error) {
	return build(TypeLeadProcess, p, taskID)
}

// Channel names a delivery channel of a lead.
type Channel string

// Delivery channels.
const (
	ChannelMailchimp    Channel = "mailchimp"
	ChannelWelcomeEmail Channel = "welcome_email"
	ChannelMeta         Channel = "meta"
	ChannelWhatsApp     Channel = "whatsapp"
)

// Channels lists every delivery channel.
var Channels = []Channel{ChannelMailchimp, ChannelWelcomeEmail, ChannelMeta, ChannelWhatsApp}

// Valid reports whether c is a known channel.
func (c Channel) Valid() bool {
	for _, k := range Channels {
		if c == k {
			return true
		}
	}
	return false
}

// LeadDeliver asks for one lead to be delivered to one channel.
type LeadDeliver struct {
	LeadID  string  `json:"lead_id"`
	Channel Channel `json:"channel"`
}

// Validate reports what is wrong with the payload.
func (p LeadDeliver) Validate() error {
	if err := validUUID("lead_id", p.LeadID); err != nil {
		return err
	}
	if !p.Channel.Valid() {
		return fmt.Errorf("channel: unknown channel %q", p.Channel)
	}
	return nil
}

// TaskID is lead:deliver:<lead>:<channel>: fanning out twice (or the sweep
// restoring a task Redis lost) enqueues nothing twice.
func (p LeadDeliver) TaskID() string {
	return TypeLeadDeliver + ":" + p.LeadID + ":" + string(p.Channel)
}

// NewLeadDeliver builds the lead:deliver task with its deterministic TaskID.
func NewLeadDeliver(p LeadDeliver) (*asynq.Task, error) {
	return build(TypeLeadDeliver, p, p.TaskID())
}

type validator interface{ Validate() error }

func build(typ string, p validator, taskID string) (*asynq.Task, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("build task %s: %w", typ, err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("build task %s: %w", typ, err)
	}
	return Build(typ, b, taskID)
}
