package scheduler

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Planned is one entry's place in time, for `cepjobs schedule`.
type Planned struct {
	Name     string
	TaskType string
	Spec     string
	// Location is where Spec's wall-clock fields are read.
	Location *time.Location
	// Grace is the effective catch-up window; zero means none.
	Grace time.Duration
	// Next is the first slot after now; Prev the latest at or before now,
	// which a start now would catch up if within Grace. Both UTC; zero if
	// there is none.
	Next, Prev time.Time
}

// Next reports, for every entry in table order, its previous and next slot
// as of now.
func (s *Scheduler) Next(now time.Time) []Planned {
	out := make([]Planned, 0, len(s.entries))
	for _, e := range s.entries {
		out = append(out, Planned{
			Name:     e.Name,
			TaskType: e.TaskType,
			Spec:     e.Spec,
			Location: e.sched.Location(),
			Grace:    e.grace,
			Next:     utc(e.sched.Next(now)),
			Prev:     utc(e.sched.Prev(now)),
		})
	}
	return out
}

// utc keeps the zero time zero (its UTC form prints as year 1 either way,
// but callers test IsZero) and drops any monotonic reading so results
// compare with ==.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Round(0)
}

// Print writes planned as an aligned table: times in UTC, plus the next slot
// in the entry's own location, which is how whoever wrote a CRON_TZ= spec
// thinks of it.
func Print(w io.Writer, planned []Planned) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTASK\tSPEC\tNEXT (UTC)\tPREV (UTC)\tLOCATION\tNEXT (LOCAL)\tCATCH-UP")
	for _, p := range planned {
		loc := p.Location
		if loc == nil {
			loc = time.UTC
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			p.Name, p.TaskType, p.Spec,
			fmtTime(p.Next, time.UTC), fmtTime(p.Prev, time.UTC),
			loc, fmtTime(p.Next, loc), fmtGrace(p.Grace))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print schedule: %w", err)
	}
	return nil
}

func fmtTime(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return "-"
	}
	return t.In(loc).Format("2006-01-02 15:04:05 MST")
}

func fmtGrace(d time.Duration) string {
	if d <= 0 {
		return "off"
	}
	return fmtDuration(d)
}

// fmtDuration prints 6h rather than time.Duration's 6h0m0s.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
