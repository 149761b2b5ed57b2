package scheduler

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// parser reads the crontab grammar ops already know: five fields at minute
// resolution, an optional CRON_TZ= prefix, and descriptors (@daily,
// @every 1h). There is no seconds field on purpose: a slot names a minute, so
// every replica derives the same TaskID for it.
var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// specHelp is appended to every spec error so the reader learns what a valid
// value looks like without opening the docs.
const specHelp = `want 5 fields "minute hour day-of-month month day-of-week" such as "0 3 * * *" ` +
	`(optionally prefixed "CRON_TZ=Europe/Madrid "), or a descriptor such as @hourly, @daily or @every 1h`

// schedule is a robfig schedule that can also look backwards. Jobs get no
// time from robfig, and catch-up needs "the latest slot not after now", so
// both derive the slot from Prev instead of trusting when the job happened
// to run.
type schedule interface {
	cron.Schedule
	// Prev returns the latest activation at or before t, or the zero time if
	// there is none within the look-back horizon.
	Prev(t time.Time) time.Time
	// Location is where the spec's wall-clock fields are read.
	Location() *time.Location
}

// ValidateSpec reports whether spec is a schedule this package accepts. The
// error says what a valid spec looks like; callers prefix the variable name.
func ValidateSpec(spec string) error {
	_, err := parseSpec(spec, time.UTC)
	return err
}

// parseSpec parses spec, reading it in loc unless it carries its own
// CRON_TZ= prefix.
func parseSpec(spec string, loc *time.Location) (schedule, error) {
	s, err := parseRaw(strings.TrimSpace(spec), loc)
	if err != nil {
		return nil, fmt.Errorf("%q is not a valid schedule (%v): %s", spec, err, specHelp)
	}
	return s, nil
}

func parseRaw(spec string, loc *time.Location) (sched schedule, err error) {
	if spec == "" {
		return nil, errors.New("empty schedule")
	}
	hasTZ := strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=")
	if hasTZ && !strings.Contains(spec, " ") {
		// robfig v3.0.1 slices past the end (and panics) when the zone is
		// not followed by a space.
		return nil, errors.New("CRON_TZ=<zone> must be followed by a space and the schedule")
	}
	defer func() {
		// Belt and braces: a config typo must be an error, never a crash.
		if r := recover(); r != nil {
			sched, err = nil, fmt.Errorf("unparsable schedule (%v)", r)
		}
	}()
	parsed, err := parser.Parse(spec)
	if err != nil {
		return nil, err
	}
	switch p := parsed.(type) {
	case *cron.SpecSchedule:
		if !hasTZ {
			// robfig reads an unzoned spec in the zone of the time it is
			// given; pin it so the answer never depends on the caller's clock.
			p.Location = loc
		}
		s := specSchedule{spec: p}
		// Any fixed reference works: robfig looks five years ahead, and
		// impossible dates (30 February) never match in any year.
		if s.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
			return nil, errors.New("schedule never fires (no such date)")
		}
		return s, nil
	case cron.ConstantDelaySchedule:
		return everySchedule{every: p.Delay}, nil
	default:
		return nil, fmt.Errorf("unsupported schedule type %T", parsed)
	}
}

// specSchedule is a crontab spec. Its activations are whole minutes, so its
// slots are too.
type specSchedule struct{ spec *cron.SpecSchedule }

// maxLookback bounds Prev's search. robfig itself never looks more than five
// years ahead, so a spec that fires less often is not schedulable anyway.
const maxLookback = 6 * 366 * 24 * time.Hour

func (s specSchedule) Next(t time.Time) time.Time { return s.spec.Next(t) }

func (s specSchedule) Location() *time.Location { return s.spec.Location }

// Prev walks robfig's forward-only search backwards: start a window before t,
// step forward through the activations up to t, and double the window until
// one is found. Doubling keeps a yearly spec to about twenty probes.
func (s specSchedule) Prev(t time.Time) time.Time {
	for w := time.Minute; w <= maxLookback; w *= 2 {
		n := s.spec.Next(t.Add(-w))
		if n.IsZero() || n.After(t) {
			continue
		}
		for {
			after := s.spec.Next(n)
			if after.IsZero() || after.After(t) {
				return n
			}
			n = after
		}
	}
	return time.Time{}
}

// everySchedule is @every D, aligned to multiples of D since the zero time
// rather than to when the process started (robfig's ConstantDelaySchedule).
// Alignment is what makes it usable across replicas: two processes started
// at different moments still agree on the slots, and so on the TaskIDs.
type everySchedule struct{ every time.Duration }

func (s everySchedule) Next(t time.Time) time.Time { return t.Truncate(s.every).Add(s.every) }

func (s everySchedule) Prev(t time.Time) time.Time { return t.Truncate(s.every) }

func (s everySchedule) Location() *time.Location { return time.UTC }
