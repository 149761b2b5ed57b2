package tasks

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"github.com/hibiken/asynq"
)

// campaignIDPattern is what a campaign id (the CMS's) may look like. It is
// part of TaskIDs, so no colon, and at most 41 characters so that the
// Mandrill tag "campaign:<id>" fits Mandrill's 50.
var campaignIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,40}$`)

// ValidCampaignID reports whether id can name a campaign.
func ValidCampaignID(id string) bool { return campaignIDPattern.MatchString(id) }

func validCampaignID(id string) error {
	if id == "" {
		return errors.New("campaign_id: required")
	}
	if !ValidCampaignID(id) {
		return fmt.Errorf("campaign_id: want 1-41 letters, digits, '.', '_' or '-', got %q", id)
	}
	return nil
}

// CampaignLaunch asks the automation worker to build a campaign's recipient
// list (or go on building it) and queue its batches. Run names one launch
// or resume: the batches it queues carry it in their TaskIDs, so a re-run
// of the same task queues nothing twice while a later resume can queue a
// batch again.
type CampaignLaunch struct {
	CampaignID string `json:"campaign_id"`
	Run        string `json:"run"`
}

// Validate reports what is wrong with the payload.
func (p CampaignLaunch) Validate() error {
	if err := validCampaignID(p.CampaignID); err != nil {
		return err
	}
	return validUUID("run", p.Run)
}

// NewCampaignLaunch builds the campaign:launch task; taskID is its outbox
// row id.
func NewCampaignLaunch(p CampaignLaunch, taskID string) (*asynq.Task, error) {
	return build(TypeCampaignLaunch, p, taskID)
}

// CampaignSendBatch asks for the pending recipients of one batch of a
// campaign to be sent their email.
type CampaignSendBatch struct {
	CampaignID string `json:"campaign_id"`
	Batch      int    `json:"batch"`
	// Run is the launch or resume that queued the batch.
	Run string `json:"run"`
}

// Validate reports what is wrong with the payload.
func (p CampaignSendBatch) Validate() error {
	if err := validCampaignID(p.CampaignID); err != nil {
		return err
	}
	if p.Batch < 0 {
		return fmt.Errorf("batch: must not be negative, got %d", p.Batch)
	}
	return validUUID("run", p.Run)
}

// TaskID is campaign:send-batch:<campaign>:<batch>:<run>: the same batch
// queued twice by one run is one task.
func (p CampaignSendBatch) TaskID() string {
	return TypeCampaignSendBatch + ":" + p.CampaignID + ":" + strconv.Itoa(p.Batch) + ":" + p.Run
}

// NewCampaignSendBatch builds the campaign:send-batch task with its
// deterministic TaskID.
func NewCampaignSendBatch(p CampaignSendBatch) (*asynq.Task, error) {
	return build(TypeCampaignSendBatch, p, p.TaskID())
}
