// Package handlers holds one asynq handler per task type, grouped by worker;
// each worker's constructor returns its *asynq.ServeMux. Handlers declare the
// small interfaces they need and classify every failure on purpose:
// permanent (wraps asynq.SkipRetry), transient (returned wrapped) or already
// done (nil).
package handlers
