package scheduler_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cepcomunicacion/cepjobs/scheduler"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

func TestNextAndPrint(t *testing.T) {
	t.Parallel()
	table, err := scheduler.DefaultTable("0 3 * * *", "0 * * * *", "30 4 * * *")
	if err != nil {
		t.Fatal(err)
	}
	// A zoned entry, as ops would write a Monday-morning report.
	table = append(table, scheduler.Entry{Name: "report", Spec: "CRON_TZ=Europe/Madrid 0 7 * * 1", TaskType: tasks.TypeStatsReport, Payload: slotPayload})
	s := mustNew(t, scheduler.Params{Entries: table, Grace: 6 * time.Hour})

	now := time.Date(2026, 11, 28, 10, 15, 0, 0, time.UTC) // a Saturday
	madrid, err := time.LoadLocation("Europe/Madrid")
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	want := []scheduler.Planned{
		{Name: "backup", TaskType: "backup:database", Spec: "0 3 * * *", Location: time.UTC, Grace: 6 * time.Hour,
			Next: at("2026-11-29T03:00:00Z"), Prev: at("2026-11-28T03:00:00Z")},
		{Name: "rollup", TaskType: "stats:rollup", Spec: "0 * * * *", Location: time.UTC, Grace: 6 * time.Hour,
			Next: at("2026-11-28T11:00:00Z"), Prev: at("2026-11-28T10:00:00Z")},
		{Name: "maintenance", TaskType: "maintenance:purge", Spec: "30 4 * * *", Location: time.UTC, Grace: 6 * time.Hour,
			Next: at("2026-11-29T04:30:00Z"), Prev: at("2026-11-28T04:30:00Z")},
		// 07:00 CET is 06:00 UTC in November.
		{Name: "report", TaskType: "stats:report", Spec: "CRON_TZ=Europe/Madrid 0 7 * * 1", Location: madrid, Grace: 6 * time.Hour,
			Next: at("2026-11-30T06:00:00Z"), Prev: at("2026-11-23T06:00:00Z")},
	}
	got := s.Next(now)
	sameZone := cmp.Comparer(func(a, b *time.Location) bool { return a.String() == b.String() })
	if diff := cmp.Diff(want, got, sameZone); diff != "" {
		t.Errorf("Next (-want +got):\n%s", diff)
	}

	var b strings.Builder
	if err := scheduler.Print(&b, got); err != nil {
		t.Fatal(err)
	}
	wantTable := `
NAME         TASK               SPEC                             NEXT (UTC)               PREV (UTC)               LOCATION       NEXT (LOCAL)             CATCH-UP
backup       backup:database    0 3 * * *                        2026-11-29 03:00:00 UTC  2026-11-28 03:00:00 UTC  UTC            2026-11-29 03:00:00 UTC  6h
rollup       stats:rollup       0 * * * *                        2026-11-28 11:00:00 UTC  2026-11-28 10:00:00 UTC  UTC            2026-11-28 11:00:00 UTC  6h
maintenance  maintenance:purge  30 4 * * *                       2026-11-29 04:30:00 UTC  2026-11-28 04:30:00 UTC  UTC            2026-11-29 04:30:00 UTC  6h
report       stats:report       CRON_TZ=Europe/Madrid 0 7 * * 1  2026-11-30 06:00:00 UTC  2026-11-23 06:00:00 UTC  Europe/Madrid  2026-11-30 07:00:00 CET  6h
`[1:]
	if diff := cmp.Diff(wantTable, b.String()); diff != "" {
		t.Errorf("Print (-want +got):\n%s", diff)
	}
}
