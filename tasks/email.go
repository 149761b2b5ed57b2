package tasks

import "github.com/hibiken/asynq"

// EmailSend asks for one stored transactional email to be sent.
type EmailSend struct {
	EmailID string `json:"email_id"`
}

// Validate reports what is wrong with the payload.
func (p EmailSend) Validate() error { return validUUID("email_id", p.EmailID) }

// NewEmailSend builds the email:send task; taskID is its outbox row id.
func NewEmailSend(p EmailSend, taskID string) (*asynq.Task, error) {
	return build(TypeEmailSend, p, taskID)
}
