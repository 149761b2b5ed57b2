package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/cepcomunicacion/cepjobs/internal/config"
	"github.com/cepcomunicacion/cepjobs/internal/fleet"
	"github.com/cepcomunicacion/cepjobs/scheduler"
)

// runSchedule prints the table the scheduler runs, with each entry's next
// and previous slot, and the entries it holds back because no worker
// handles their task type yet.
func runSchedule(e env, rest []string) error {
	if err := noArgs("schedule", rest); err != nil {
		return err
	}
	cfg, err := config.Load(e.environ)
	if err != nil {
		return err
	}
	active, waiting, err := fleet.ScheduleTable(cfg)
	if err != nil {
		return err
	}
	// The same table and grace the scheduler process builds, so the
	// CATCH-UP column is what it will do.
	s, err := scheduler.New(scheduler.Params{Entries: active, Grace: cfg.Scheduler.Grace})
	if err != nil {
		return err
	}
	if err := scheduler.Print(e.stdout, s.Next(time.Now())); err != nil {
		return err
	}
	if len(waiting) == 0 {
		return nil
	}
	fmt.Fprintln(e.stdout, "\nwaiting: not enqueued until a worker handles their task type")
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTASK\tSPEC")
	for _, w := range waiting {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", w.Name, w.TaskType, w.Spec)
	}
	return tw.Flush()
}
