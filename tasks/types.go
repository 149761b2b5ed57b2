package tasks

import (
	"fmt"
	"time"

	"github.com/hibiken/asynq"
)

// Task type names. Never rename one: add a new type instead.
const (
	TypeLeadProcess       = "lead:process"
	TypeLeadDeliver       = "lead:deliver"
	TypeLeadErase         = "lead:erase"
	TypeMetaLeadgen       = "meta:leadgen"
	TypeEmailSend         = "email:send"
	TypeCampaignLaunch    = "campaign:launch"
	TypeCampaignSendBatch = "campaign:send-batch"
	TypeCampaignSyncMeta  = "campaign:sync-meta"
	TypeContentGenerate   = "content:generate"
	TypeContentCallback   = "content:callback"
	TypeStatsRollup       = "stats:rollup"
	TypeStatsReport       = "stats:report"
	TypeExportLeads       = "export:leads"
	TypeBackupDatabase    = "backup:database"
	TypeMaintenancePurge  = "maintenance:purge"
)

// Spec is what belongs to a task type whoever enqueues it: its queue and
// default options.
type Spec struct {
	Queue    string
	MaxRetry int
	// Timeout bounds one attempt; asynq's own default (30 min) is never what
	// we want.
	Timeout time.Duration
	// Retention keeps a completed task (and so its TaskID) for this long, so
	// that a re-send of the same TaskID within the window is reported as a
	// duplicate instead of running twice.
	Retention time.Duration
}

// specs is the catalogue. Payload types live next to their constructors.
var specs = map[string]Spec{
	TypeLeadProcess:       {Queue: QueueCritical, MaxRetry: 25, Timeout: 1 * time.Minute, Retention: 24 * time.Hour},
	TypeLeadDeliver:       {Queue: QueueCritical, MaxRetry: 25, Timeout: 2 * time.Minute, Retention: 24 * time.Hour},
	TypeLeadErase:         {Queue: QueueDefault, MaxRetry: 20, Timeout: 2 * time.Minute, Retention: 24 * time.Hour},
	TypeMetaLeadgen:       {Queue: QueueCritical, MaxRetry: 20, Timeout: 1 * time.Minute, Retention: 24 * time.Hour},
	TypeEmailSend:         {Queue: QueueDefault, MaxRetry: 20, Timeout: 2 * time.Minute, Retention: 24 * time.Hour},
	TypeCampaignLaunch:    {Queue: QueueDefault, MaxRetry: 10, Timeout: 10 * time.Minute, Retention: 24 * time.Hour},
	TypeCampaignSendBatch: {Queue: QueueDefault, MaxRetry: 20, Timeout: 10 * time.Minute, Retention: 24 * time.Hour},
	TypeCampaignSyncMeta:  {Queue: QueueLow, MaxRetry: 10, Timeout: 10 * time.Minute, Retention: 24 * time.Hour},
	TypeContentGenerate:   {Queue: QueueLLM, MaxRetry: 8, Timeout: 5 * time.Minute, Retention: 24 * time.Hour},
	TypeContentCallback:   {Queue: QueueLLM, MaxRetry: 12, Timeout: 1 * time.Minute, Retention: 24 * time.Hour},
	TypeStatsRollup:       {Queue: QueueStats, MaxRetry: 5, Timeout: 10 * time.Minute, Retention: 48 * time.Hour},
	TypeStatsReport:       {Queue: QueueStats, MaxRetry: 5, Timeout: 15 * time.Minute, Retention: 48 * time.Hour},
	TypeExportLeads:       {Queue: QueueStats, MaxRetry: 5, Timeout: 30 * time.Minute, Retention: 48 * time.Hour},
	TypeBackupDatabase:    {Queue: QueueBackup, MaxRetry: 3, Timeout: 3 * time.Hour, Retention: 7 * 24 * time.Hour},
	TypeMaintenancePurge:  {Queue: QueueLow, MaxRetry: 5, Timeout: 30 * time.Minute, Retention: 48 * time.Hour},
}

// SpecOf returns the spec of a task type and whether the type is known.
func SpecOf(typ string) (Spec, bool) {
	s, ok := specs[typ]
	return s, ok
}

// Build makes a task of a known type from an already encoded payload, with
// the type's options and the given TaskID. The outbox relay uses it to re-send
// a row written earlier; everything else uses the typed constructors.
func Build(typ string, payload []byte, taskID string) (*asynq.Task, error) {
	s, ok := specs[typ]
	if !ok {
		return nil, fmt.Errorf("build task: unknown task type %q", typ)
	}
	if taskID == "" {
		return nil, fmt.Errorf("build task %s: empty task id", typ)
	}
	return asynq.NewTask(typ, payload,
		asynq.Queue(s.Queue),
		asynq.MaxRetry(s.MaxRetry),
		asynq.Timeout(s.Timeout),
		asynq.Retention(s.Retention),
		asynq.TaskID(taskID),
	), nil
}
