package tasks

import "github.com/hibiken/asynq"

// ExportLeads asks for one stored export (cepjobs.exports, kind leads) to be
// written to object storage, or, for an export already written, for its
// download link to be renewed. The filters stay in the row: the payload
// carries the id only.
type ExportLeads struct {
	ExportID string `json:"export_id"`
}

// Validate reports what is wrong with the payload.
func (p ExportLeads) Validate() error { return validUUID("export_id", p.ExportID) }

// NewExportLeads builds the export:leads task; taskID is its outbox row id.
func NewExportLeads(p ExportLeads, taskID string) (*asynq.Task, error) {
	return build(TypeExportLeads, p, taskID)
}
