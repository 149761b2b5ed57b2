package tasks

import (
	"fmt"

	"github.com/hibiken/asynq"
)

// MetaLeadgen asks for one Meta Lead Ads lead to be read from the Graph API
// and stored as a lead. It holds Meta's ids only, as the leadgen webhook
// sends them: the person's answers stay at Meta until the handler reads
// them, so Redis and the dashboard never hold them.
type MetaLeadgen struct {
	LeadgenID string `json:"leadgen_id"`
	PageID    string `json:"page_id,omitempty"`
	FormID    string `json:"form_id,omitempty"`
}

// Validate reports what is wrong with the payload.
func (p MetaLeadgen) Validate() error {
	if p.LeadgenID == "" {
		return fmt.Errorf("leadgen_id: required")
	}
	for _, f := range []struct{ name, v string }{{"leadgen_id", p.LeadgenID}, {"page_id", p.PageID}, {"form_id", p.FormID}} {
		if !graphID(f.v) {
			return fmt.Errorf("%s: want a numeric Graph API id", f.name)
		}
	}
	return nil
}

// Key names the lead for good, whichever webhook delivery brought it: the
// outbox row (and so the TaskID) of a meta:leadgen is derived from it, so
// Meta delivering the same lead twice queues it once.
func (p MetaLeadgen) Key() string { return "meta:leadgen:" + p.LeadgenID }

// NewMetaLeadgen builds the meta:leadgen task. taskID is the outbox row id.
func NewMetaLeadgen(p MetaLeadgen, taskID string) (*asynq.Task, error) {
	return build(TypeMetaLeadgen, p, taskID)
}

// CampaignSyncMeta asks for the Meta Ads insights of the days ending with
// Day (how many is configuration: Meta restates recent spend) to be read
// again into the insights table.
type CampaignSyncMeta struct {
	Day string `json:"day"` // YYYY-MM-DD
}

// Validate reports what is wrong with the payload.
func (p CampaignSyncMeta) Validate() error { return validDay(p.Day) }

// NewCampaignSyncMeta builds the campaign:sync-meta task; the scheduler's
// TaskID is type + slot.
func NewCampaignSyncMeta(p CampaignSyncMeta, taskID string) (*asynq.Task, error) {
	return build(TypeCampaignSyncMeta, p, taskID)
}

// graphID reports whether v is empty or looks like a Graph API object id
// (digits only, as Meta issues them).
func graphID(v string) bool {
	if len(v) > 32 {
		return false
	}
	for _, r := range v {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
