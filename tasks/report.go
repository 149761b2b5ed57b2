package tasks

import (
	"fmt"
	"time"

	"github.com/hibiken/asynq"
)

// StatsReport asks for the weekly report of one ISO week: Monday to Sunday
// in UTC days, named by its Monday.
type StatsReport struct {
	Week string `json:"week"` // YYYY-MM-DD, a Monday
}

// Validate reports what is wrong with the payload.
func (p StatsReport) Validate() error {
	d, err := time.Parse(time.DateOnly, p.Week)
	if err != nil {
		return fmt.Errorf("week: want the Monday as YYYY-MM-DD, got %q", p.Week)
	}
	if d.Weekday() != time.Monday {
		return fmt.Errorf("week: %s is a %s, want a Monday", p.Week, d.Weekday())
	}
	return nil
}

// Monday is the week's first day, 00:00 UTC (zero if Week is invalid).
func (p StatsReport) Monday() time.Time {
	d, _ := time.Parse(time.DateOnly, p.Week)
	return d
}

// PreviousWeek is the report of the last whole week before t: the Monday
// seven days before the one of t's own week (in UTC). The scheduler fires
// on Mondays, so it names the week that just ended.
func PreviousWeek(t time.Time) StatsReport {
	t = t.UTC()
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	monday := d.AddDate(0, 0, -((int(d.Weekday())+6)%7)-7)
	return StatsReport{Week: monday.Format(time.DateOnly)}
}

// NewStatsReport builds the stats:report task.
func NewStatsReport(p StatsReport, taskID string) (*asynq.Task, error) {
	return build(TypeStatsReport, p, taskID)
}
