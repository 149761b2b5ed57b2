package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cepcomunicacion/cepjobs/internal/backup"
)

func TestFormatProgress(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pr     backup.Progress
		inStep time.Duration
		want   string
	}{
		{backup.Progress{Step: "dump", Bytes: 129394278, Elapsed: 12*time.Second + 900*time.Millisecond}, 2500 * time.Millisecond,
			"dump 123.4 MiB  49.4 MiB/s  00:12"},
		{backup.Progress{Step: "check", Elapsed: 300 * time.Millisecond}, 0, "check  00:00"},
		{backup.Progress{Step: "restore", Bytes: 512, Elapsed: 3723 * time.Second}, time.Second, "restore 512 B  512 B/s  1:02:03"},
		{backup.Progress{Step: "dump", Bytes: 2048, Elapsed: 0}, 0, "dump 2.0 KiB  -  00:00"},
	} {
		if got := formatProgress(tc.pr, tc.inStep); got != tc.want {
			t.Errorf("formatProgress(%+v, %s): got %q, want %q", tc.pr, tc.inStep, got, tc.want)
		}
	}
}

func TestHumanUnits(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{
		0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1234567: "1.2 MiB", 1048575: "1.0 MiB",
		5 << 30: "5.0 GiB", 3 << 40: "3.0 TiB",
	} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d): got %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 45 * time.Second: "45s", 12*time.Minute + 5*time.Second: "12m",
		3*time.Hour + 12*time.Minute: "3h12m", 47 * time.Hour: "47h0m", 50 * time.Hour: "2d",
	} {
		if got := humanAge(d); got != want {
			t.Errorf("humanAge(%s): got %q, want %q", d, got, want)
		}
	}
}

// A log or a pipe gets one line per step, and a heartbeat at most every
// 10 s within a step, however often the engine reports.
func TestProgressPlain(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := newProgressPrinter(&buf)
	if p.tty {
		t.Fatal("a bytes.Buffer taken for a terminal")
	}
	s := time.Second
	for _, pr := range []backup.Progress{
		{Step: "check", Elapsed: 0},
		{Step: "dump", Elapsed: s},
		{Step: "dump", Bytes: 10 << 20, Elapsed: 2 * s},   // within 10 s of the step line
		{Step: "dump", Bytes: 50 << 20, Elapsed: 10 * s},  // still within
		{Step: "dump", Bytes: 60 << 20, Elapsed: 11 * s},  // 10 s after the step line
		{Step: "dump", Bytes: 70 << 20, Elapsed: 12 * s},  // too soon again
		{Step: "dump", Bytes: 100 << 20, Elapsed: 21 * s}, // 10 s after the heartbeat
		{Step: "finalize", Elapsed: 22 * s},
		{Step: "done", Elapsed: 22 * s},
	} {
		p.Report(pr)
	}
	p.Done()
	want := []string{
		"check  00:00",
		"dump  00:01",
		"dump 60.0 MiB  6.0 MiB/s  00:11",
		"dump 100.0 MiB  5.0 MiB/s  00:21",
		"finalize  00:22",
		"done  00:22",
	}
	if diff := cmp.Diff(want, strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")); diff != "" {
		t.Errorf("plain progress (-want +got):\n%s", diff)
	}
}

// On a terminal one line is redrawn in place, at most five times a second,
// padded over a longer previous line, and ended by Done.
func TestProgressTerminal(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := &progressPrinter{w: &buf, tty: true}
	ms := time.Millisecond
	p.Report(backup.Progress{Step: "dump", Elapsed: 0})
	p.Report(backup.Progress{Step: "dump", Bytes: 1 << 20, Elapsed: 100 * ms}) // throttled
	p.Report(backup.Progress{Step: "dump", Bytes: 2 << 20, Elapsed: 1000 * ms})
	_, _ = p.Write([]byte("level=WARN msg=x\n"))
	p.Report(backup.Progress{Step: "done", Elapsed: 1100 * ms}) // a step change is never throttled
	p.Done()
	p.Done() // nothing left to end
	want := "\rdump  00:00" +
		"\rdump 2.0 MiB  2.0 MiB/s  00:01" +
		"\r" + strings.Repeat(" ", len("dump 2.0 MiB  2.0 MiB/s  00:01")) + "\rlevel=WARN msg=x\n" +
		"\rdone  00:01\n"
	if got := buf.String(); got != want {
		t.Errorf("terminal progress:\ngot  %q\nwant %q", got, want)
	}

	buf.Reset()
	p = &progressPrinter{w: &buf, tty: true}
	p.Report(backup.Progress{Step: "restore", Bytes: 5 << 20, Elapsed: time.Second})
	p.Report(backup.Progress{Step: "done", Elapsed: time.Second})
	if got, want := buf.String(), "\rrestore 5.0 MiB  -  00:01\rdone  00:01"+strings.Repeat(" ", 14); got != want {
		t.Errorf("shorter line:\ngot  %q\nwant %q", got, want)
	}
}

func TestParseInterspersed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args    []string
		wantPos []string
		force   bool
		target  string
	}{
		{[]string{"latest", "--target-db", "x", "--force"}, []string{"latest"}, true, "x"},
		{[]string{"--force", "-target-db=x", "latest"}, []string{"latest"}, true, "x"},
		{[]string{"a", "b", "--target-db", "x"}, []string{"a", "b"}, false, "x"},
		{[]string{"--target-db", "x", "--", "--force"}, []string{"--force"}, false, "x"},
		{nil, nil, false, ""},
	} {
		fs := newFlagSet(env{stderr: &bytes.Buffer{}}, "t", "usage")
		force := fs.Bool("force", false, "")
		target := fs.String("target-db", "", "")
		pos, err := parseInterspersed(fs, tc.args)
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if !cmp.Equal(pos, tc.wantPos) || *force != tc.force || *target != tc.target {
			t.Errorf("%q: got %q force=%v target=%q, want %q force=%v target=%q", tc.args, pos, *force, *target, tc.wantPos, tc.force, tc.target)
		}
	}
}
