// Package scheduler owns the schedule table and the robfig/cron runner that
// turns it into tasks, with a TaskID per slot so that any number of replicas
// fire each slot once.
//
// asynq's own Scheduler has no leader election: every replica fires every
// entry. Instead of electing a leader we make duplicates impossible. A slot
// is the activation time a firing stands for (03:00:00 for "0 3 * * *", even
// if the job starts at 03:00:00.2), and every firing enqueues TaskID
// <type>:<slot RFC 3339 UTC> with a Retention that outlives the catch-up
// window. The first replica's enqueue wins; the others get
// asynq.ErrTaskIDConflict, which counts as success. The TaskID is never
// fixed: an archived run then blocks only its own slot, not every later one.
//
// A process that was down at a slot catches up on start: for each entry, the
// latest slot at or before now is fired once if it is within the grace
// window. Only the latest: a backup missed on two nights runs once, not
// twice back to back. Whether it already ran is decided by Redis through the
// same TaskID, so no local state is kept.
//
// Slots have the schedule's resolution: minutes for cron specs, and for
// @every D multiples of D (aligned to the clock, not to process start, so
// replicas agree).
package scheduler
