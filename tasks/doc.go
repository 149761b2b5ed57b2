// Package tasks is the wire contract between the producers (intake, scheduler)
// and the workers: every task type name, the queue it runs on, its typed
// payload, the constructor that sets its asynq options, and the one generic
// decoder handlers use.
//
// Type names are stable strings ("family:verb") and are never renamed: a task
// already sitting in Redis must still find its handler after a deploy. Payloads
// carry identifiers only, never personal data, so Redis and the dashboard hold
// no PII.
package tasks
