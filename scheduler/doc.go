// Package scheduler owns the schedule table and the robfig/cron runner that
// turns it into tasks, with a TaskID per slot so that any number of replicas
// fire each slot once.
package scheduler
