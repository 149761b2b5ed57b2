package tasks

// Queue names. Workers weigh them (see Priorities); producers never pick a
// queue by hand: each task type's constructor does.
const (
	QueueCritical = "critical"
	QueueDefault  = "default"
	QueueLow      = "low"
	QueueLLM      = "llm"
	QueueStats    = "stats"
	QueueBackup   = "backup"
)

// Queues lists every queue in the order ops see them in the dashboard.
var Queues = []string{QueueCritical, QueueDefault, QueueLow, QueueLLM, QueueStats, QueueBackup}
