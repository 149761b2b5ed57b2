package scheduler_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cepcomunicacion/cepjobs/scheduler"
)

// defaults builds a Config from its default tags, the way the loader in
// internal/config does, so the tags and Validate cannot drift apart.
func defaults(t *testing.T) scheduler.Config {
	t.Helper()
	var c scheduler.Config
	v := reflect.ValueOf(&c).Elem()
	for i := range v.NumField() {
		def := v.Type().Field(i).Tag.Get("default")
		switch f := v.Field(i); f.Interface().(type) {
		case time.Duration:
			d, err := time.ParseDuration(def)
			if err != nil {
				t.Fatal(err)
			}
			f.SetInt(int64(d))
		case string:
			f.SetString(def)
		}
	}
	return c
}

func TestConfigDefaultsAreValid(t *testing.T) {
	t.Parallel()
	c := defaults(t)
	want := scheduler.Config{RollupSchedule: "0 * * * *", MaintenanceSchedule: "30 4 * * *", Grace: 6 * time.Hour, ReportSchedule: "CRON_TZ=Europe/Madrid 0 7 * * 1"}
	if c != want {
		t.Errorf("defaults: got %+v, want %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("defaults: got %v, want no error", err)
	}
	if _, err := scheduler.DefaultTable("0 3 * * *", c.RollupSchedule, c.MaintenanceSchedule); err != nil {
		t.Errorf("default table: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	const help = `want 5 fields "minute hour day-of-month month day-of-week" such as "0 3 * * *"`
	for _, tc := range []struct {
		name   string
		change func(*scheduler.Config)
		want   []string // one per problem, each a prefix then fragments
	}{
		{"four fields", func(c *scheduler.Config) { c.RollupSchedule = "0 3 * *" },
			[]string{`CEPJOBS_ROLLUP_SCHEDULE: "0 3 * *" is not a valid schedule (expected exactly 5 fields, found 4`, help}},
		{"six fields", func(c *scheduler.Config) { c.RollupSchedule = "0 0 3 * * *" },
			[]string{`CEPJOBS_ROLLUP_SCHEDULE: "0 0 3 * * *" is not a valid schedule (expected exactly 5 fields, found 6`}},
		{"minute out of range", func(c *scheduler.Config) { c.MaintenanceSchedule = "61 4 * * *" },
			[]string{`CEPJOBS_MAINTENANCE_SCHEDULE: "61 4 * * *" is not a valid schedule (`, "above maximum", help}},
		{"words", func(c *scheduler.Config) { c.MaintenanceSchedule = "every night" },
			[]string{`CEPJOBS_MAINTENANCE_SCHEDULE: "every night"`, help}},
		{"empty", func(c *scheduler.Config) { c.RollupSchedule = "" },
			[]string{`CEPJOBS_ROLLUP_SCHEDULE: "" is not a valid schedule (empty schedule)`, help}},
		{"unknown zone", func(c *scheduler.Config) { c.RollupSchedule = "CRON_TZ=Mars/Olympus 0 * * * *" },
			[]string{"CEPJOBS_ROLLUP_SCHEDULE:", "Mars/Olympus"}},
		// robfig v3.0.1 panics on this one; it must be a plain error.
		{"zone without schedule", func(c *scheduler.Config) { c.RollupSchedule = "CRON_TZ=Europe/Madrid" },
			[]string{"CEPJOBS_ROLLUP_SCHEDULE:", "must be followed by a space and the schedule"}},
		{"impossible date", func(c *scheduler.Config) { c.MaintenanceSchedule = "0 0 30 2 *" },
			[]string{"CEPJOBS_MAINTENANCE_SCHEDULE:", "never fires"}},
		{"negative grace", func(c *scheduler.Config) { c.Grace = -time.Hour },
			[]string{"CEPJOBS_SCHEDULER_GRACE: want a duration between 0 (no catch-up) and 168h, got -1h0m0s"}},
		{"two problems at once", func(c *scheduler.Config) { c.RollupSchedule = "x"; c.Grace = 200 * time.Hour },
			[]string{"CEPJOBS_ROLLUP_SCHEDULE:", "CEPJOBS_SCHEDULER_GRACE:"}},
	} {
		c := defaults(t)
		tc.change(&c)
		err := c.Validate()
		if err == nil {
			t.Errorf("%s: got nil error", tc.name)
			continue
		}
		for _, frag := range tc.want {
			if !strings.Contains(err.Error(), frag) {
				t.Errorf("%s: got %q, want it to contain %q", tc.name, err, frag)
			}
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			if !strings.HasPrefix(line, "CEPJOBS_") {
				t.Errorf("%s: problem %q does not start with the variable name", tc.name, line)
			}
		}
	}
}

func TestDefaultTableNamesTheVariable(t *testing.T) {
	t.Parallel()
	_, err := scheduler.DefaultTable("0 3 * *", "0 * * * *", "nightly")
	if err == nil {
		t.Fatal("got nil error")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "CEPJOBS_BACKUP_SCHEDULE: ") || !strings.HasPrefix(lines[1], "CEPJOBS_MAINTENANCE_SCHEDULE: ") {
		t.Errorf("got %q, want one line for CEPJOBS_BACKUP_SCHEDULE and one for CEPJOBS_MAINTENANCE_SCHEDULE", err)
	}
}

func TestDefaultTablePayloads(t *testing.T) {
	t.Parallel()
	table, err := scheduler.DefaultTable("0 3 * * *", "0 * * * *", "30 4 * * *")
	if err != nil {
		t.Fatal(err)
	}
	// The slot arrives in any zone; payloads speak UTC. 00:30 in Madrid on
	// the 29th is still the 28th in UTC.
	madrid, err := time.LoadLocation("Europe/Madrid")
	if err != nil {
		t.Fatal(err)
	}
	slot := time.Date(2026, 11, 29, 0, 30, 0, 0, madrid)
	want := map[string]string{
		"backup":      `{"slot":"2026-11-28T23:30:00Z"}`,
		"rollup":      `{"day":"2026-11-28"}`,
		"maintenance": `{"day":"2026-11-28"}`,
	}
	for _, e := range table {
		b, err := e.Payload(slot)
		if err != nil {
			t.Fatalf("%s: %v", e.Name, err)
		}
		if string(b) != want[e.Name] {
			t.Errorf("%s payload: got %s, want %s", e.Name, b, want[e.Name])
		}
	}
}
