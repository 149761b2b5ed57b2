// Command enqueue is bench/backup/run.sh's helper. By default it enqueues one
// backup:database task, waits until the worker has completed it, and prints
// one line of JSON: the wall time from enqueue to completion, the task's
// result (dump phase duration, size) and, with -pid, the worker's peak RSS
// (VmHWM) and CPU time for that round.
//
//	enqueue -redis redis://127.0.0.1:6379/15 -pid 1234 -reset-hwm
//	enqueue -versitygw   # path of the cached versitygw, built if missing
//	enqueue -free-port   # a free loopback port
//	enqueue -run -- pg_dump -Fc -Z1 -d URL   # runs it, stdout to /dev/null,
//	                                         # and prints its wall time, CPU, max RSS
//	                                         # and scheduler figures as JSON
//
// The pg_dump figures (the worker's child during a backup, or the -run
// command) come from sampling /proc/PID/wchan and /proc/PID/schedstat every
// 10 ms: how often pg_dump was blocked writing into a full pipe (waiting for
// its reader), and how long it was runnable but waiting for a CPU.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hibiken/asynq"

	"github.com/cepcomunicacion/cepjobs/internal/backup/backuptest"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "enqueue:", err)
		os.Exit(1)
	}
}

// Round is what one backup round measured.
type Round struct {
	TaskID string `json:"task_id"`
	// WallSeconds runs from Enqueue returning to the poll that saw the task
	// completed (poll every 50 ms).
	WallSeconds float64 `json:"wall_s"`
	// StartLatencySeconds is from enqueue to the task becoming active.
	StartLatencySeconds float64 `json:"start_latency_s"`
	// DumpSeconds is the dump phase as the backup engine measured it
	// (Result.Duration: pg_dump streaming into S3, before finalize).
	DumpSeconds float64 `json:"dump_s"`
	Size        int64   `json:"size"`
	Key         string  `json:"key"`
	Tables      int     `json:"tables"`
	// Worker figures, with -pid.
	HWMKiB         int64   `json:"vmhwm_kib"`        // VmHWM after completion (reset before the round with -reset-hwm)
	HWMReset       bool    `json:"vmhwm_reset"`      // whether the reset worked
	RSSMaxKiB      int64   `json:"vmrss_max_kib"`    // max VmRSS seen by sampling every 50 ms
	RSSBeforeKiB   int64   `json:"vmrss_before_kib"` // VmRSS when enqueued
	CPUSeconds     float64 `json:"worker_cpu_s"`     // worker utime+stime during the round
	ChildCPUSecond float64 `json:"children_cpu_s"`   // reaped children (pg_dump) utime+stime during the round
	Threads        int64   `json:"threads"`          // worker threads after the round
	// From the worker's log (-worker-log, needs CEPJOBS_LOG_LEVEL=debug):
	// the engine's elapsed time when finalize began and when it was done.
	FinalizeAtSeconds float64         `json:"finalize_at_s"`
	DoneAtSeconds     float64         `json:"done_at_s"`
	Result            json.RawMessage `json:"result"` // the task's result as the handler wrote it
	// RSSSeries is VmRSS (KiB) at each tenth of the round's wall time, to
	// show whether memory plateaus or grows with the bytes streamed.
	RSSSeries []int64 `json:"rss_series_kib"`
	// PgDump is the worker's pg_dump child, sampled.
	PgDump *procSample `json:"pg_dump"`
}

// procSample is what sampling one process found.
type procSample struct {
	PID     int `json:"pid"`
	Samples int `json:"samples"`
	// PipeWait is the share of samples in which it slept in pipe_write:
	// its stdout pipe was full because the reader was busy elsewhere.
	PipeWait float64 `json:"pipe_wait_share"`
	// CPUSeconds and RunDelaySeconds are from the last schedstat read:
	// time on a CPU, and time runnable but waiting for one.
	CPUSeconds      float64 `json:"sched_cpu_s"`
	RunDelaySeconds float64 `json:"run_delay_s"`
	pipe            int
}

// sample reads pid's wchan and schedstat once; false when it is gone.
func (s *procSample) sample(pid int) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
	if err != nil {
		return false
	}
	wchan, _ := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", pid))
	f := strings.Fields(string(st))
	if len(f) < 2 {
		return false
	}
	cpu, _ := strconv.ParseInt(f[0], 10, 64)
	wait, _ := strconv.ParseInt(f[1], 10, 64)
	s.PID, s.CPUSeconds, s.RunDelaySeconds = pid, round2(float64(cpu)/1e9), round2(float64(wait)/1e9)
	s.Samples++
	if strings.Contains(string(wchan), "pipe_write") {
		s.pipe++
	}
	s.PipeWait = round2(float64(s.pipe) / float64(s.Samples))
	return true
}

// childrenNamed lists pid's children whose command is name.
func childrenNamed(pid int, name string) []int {
	var out []int
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		for _, c := range strings.Fields(string(b)) {
			n, err := strconv.Atoi(c)
			if err != nil {
				continue
			}
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", n)); strings.TrimSpace(string(comm)) == name {
				out = append(out, n)
			}
		}
	}
	return out
}

// watchChild samples pid's pg_dump children every 10 ms until stop is
// closed, and returns the one sampled most (the dump, not the --version
// check).
func watchChild(pid int, stop <-chan struct{}) *procSample {
	seen := map[int]*procSample{}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			var best *procSample
			for _, s := range seen {
				if best == nil || s.Samples > best.Samples {
					best = s
				}
			}
			return best
		case <-tick.C:
		}
		for _, c := range childrenNamed(pid, "pg_dump") {
			if seen[c] == nil {
				seen[c] = &procSample{}
			}
			seen[c].sample(c)
		}
	}
}

func run() error {
	redisURL := flag.String("redis", "redis://127.0.0.1:6379/15", "Redis the worker reads")
	pid := flag.Int("pid", 0, "worker-stats pid, for VmHWM, VmRSS and CPU")
	resetHWM := flag.Bool("reset-hwm", false, "reset the worker's VmHWM before enqueueing (echo 5 > /proc/PID/clear_refs)")
	timeout := flag.Duration("timeout", 30*time.Minute, "give up after this long")
	printGW := flag.Bool("versitygw", false, "print the path of the versitygw binary (built and cached if missing) and exit")
	freePort := flag.Bool("free-port", false, "print a free loopback port and exit")
	runCmd := flag.Bool("run", false, "run the command after --, stdout to /dev/null, and print its figures")
	workerLog := flag.String("worker-log", "", "the worker's JSON log, for the engine's phase times (CEPJOBS_LOG_LEVEL=debug)")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	switch {
	case *printGW:
		p, err := backuptest.BinaryPath(ctx)
		if err != nil {
			return err
		}
		fmt.Println(p)
		return nil
	case *freePort:
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		fmt.Println(l.Addr().(*net.TCPAddr).Port)
		return l.Close()
	case *runCmd:
		return runSampled(flag.Args())
	}

	opt, err := asynq.ParseRedisURI(*redisURL)
	if err != nil {
		return fmt.Errorf("-redis: %w", err)
	}
	client := asynq.NewClient(opt)
	defer client.Close()
	insp := asynq.NewInspector(opt)
	defer insp.Close()

	var r Round
	if *pid > 0 && *resetHWM {
		r.HWMReset = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", *pid), []byte("5"), 0) == nil
	}
	var cpu0, child0 float64
	if *pid > 0 {
		st, err := readStatus(*pid)
		if err != nil {
			return err
		}
		r.RSSBeforeKiB = st["VmRSS"]
		if cpu0, child0, err = readCPU(*pid); err != nil {
			return err
		}
	}

	var logOffset int64
	if *workerLog != "" {
		fi, err := os.Stat(*workerLog)
		if err != nil {
			return err
		}
		logOffset = fi.Size()
	}

	now := time.Now()
	r.TaskID = "bench-" + strconv.FormatInt(now.UnixNano(), 36)
	task, err := tasks.NewBackupDatabase(tasks.BackupDatabase{Slot: now.UTC().Truncate(time.Second)}, r.TaskID)
	if err != nil {
		return err
	}
	info, err := client.EnqueueContext(ctx, task)
	if err != nil {
		return fmt.Errorf("enqueue: %w", err)
	}
	start := time.Now()
	queue := info.Queue

	var childDone chan *procSample
	stopChild := make(chan struct{})
	if *pid > 0 {
		childDone = make(chan *procSample, 1)
		go func() { childDone <- watchChild(*pid, stopChild) }()
	}
	var samples []int64
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("task %s not completed after %s", r.TaskID, *timeout)
		case <-tick.C:
		}
		if *pid > 0 {
			st, err := readStatus(*pid)
			if err != nil {
				return fmt.Errorf("worker pid %d: %w", *pid, err)
			}
			r.RSSMaxKiB = max(r.RSSMaxKiB, st["VmRSS"])
			samples = append(samples, st["VmRSS"])
		}
		ti, err := insp.GetTaskInfo(queue, r.TaskID)
		if err != nil {
			if errors.Is(err, asynq.ErrTaskNotFound) {
				return fmt.Errorf("task %s vanished", r.TaskID)
			}
			continue // Redis hiccup: poll again
		}
		switch ti.State {
		case asynq.TaskStateActive:
			if r.StartLatencySeconds == 0 {
				r.StartLatencySeconds = time.Since(start).Seconds()
			}
			continue
		case asynq.TaskStateCompleted:
		case asynq.TaskStateRetry, asynq.TaskStateArchived:
			return fmt.Errorf("task %s %s: %s", r.TaskID, ti.State, ti.LastErr)
		default:
			continue
		}
		r.WallSeconds = time.Since(start).Seconds()
		r.Result = json.RawMessage(ti.Result)
		var res struct {
			Key      string `json:"key"`
			Size     int64  `json:"size"`
			Duration string `json:"duration"`
			Tables   int    `json:"tables"`
		}
		if err := json.Unmarshal(ti.Result, &res); err != nil {
			return fmt.Errorf("task %s result %q: %w", r.TaskID, ti.Result, err)
		}
		r.Key, r.Size, r.Tables = res.Key, res.Size, res.Tables
		if d, err := time.ParseDuration(res.Duration); err == nil {
			r.DumpSeconds = d.Seconds()
		}
		break
	}
	if *pid > 0 {
		close(stopChild)
		r.PgDump = <-childDone
		st, err := readStatus(*pid)
		if err != nil {
			return err
		}
		r.HWMKiB, r.Threads = st["VmHWM"], st["Threads"]
		cpu1, child1, err := readCPU(*pid)
		if err != nil {
			return err
		}
		r.CPUSeconds, r.ChildCPUSecond = round2(cpu1-cpu0), round2(child1-child0)
		for i := 1; i <= 10 && len(samples) > 0; i++ {
			r.RSSSeries = append(r.RSSSeries, samples[(len(samples)-1)*i/10])
		}
	}
	if *workerLog != "" {
		if err := readPhases(*workerLog, logOffset, &r); err != nil {
			return err
		}
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

// RunResult is what -run prints.
type RunResult struct {
	WallSeconds float64     `json:"wall_s"`
	CPUSeconds  float64     `json:"cpu_s"` // user+sys from rusage
	MaxRSSKiB   int64       `json:"maxrss_kib"`
	Sampled     *procSample `json:"sampled"`
}

// runSampled runs args with stdout on /dev/null, sampling it.
func runSampled(args []string) error {
	if len(args) == 0 {
		return errors.New("-run: no command after --")
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer null.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = null, os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	s := &procSample{}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			return json.NewEncoder(os.Stdout).Encode(RunResult{
				WallSeconds: round2(time.Since(start).Seconds()),
				CPUSeconds:  round2(cpu.Seconds()),
				MaxRSSKiB:   ru.Maxrss,
				Sampled:     s,
			})
		case <-tick.C:
			s.sample(cmd.Process.Pid)
		}
	}
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

// readPhases reads the backup engine's progress lines that the worker
// logged since offset.
func readPhases(path string, offset int64, r *Round) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if offset > int64(len(b)) {
		offset = 0
	}
	for _, line := range strings.Split(string(b[offset:]), "\n") {
		var l struct {
			Msg, Step, Elapsed string
		}
		if json.Unmarshal([]byte(line), &l) != nil || l.Msg != "backup progress" {
			continue
		}
		d, err := time.ParseDuration(l.Elapsed)
		if err != nil {
			continue
		}
		switch l.Step {
		case "finalize":
			r.FinalizeAtSeconds = d.Seconds()
		case "done":
			r.DoneAtSeconds = d.Seconds()
		}
	}
	return nil
}

// readStatus reads the numeric fields of /proc/PID/status (kB for sizes).
func readStatus(pid int) (map[string]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	m := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			m[k] = n
		}
	}
	return m, nil
}

// readCPU returns the process's own utime+stime and its reaped children's
// cutime+cstime, in seconds.
func readCPU(pid int) (self, children float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the ")" closing the command name; utime is field 14.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 15 {
		return 0, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	var t [4]float64
	for i := range t {
		n, err := strconv.ParseFloat(f[11+i], 64)
		if err != nil {
			return 0, 0, err
		}
		t[i] = n / 100 // USER_HZ is 100 on Linux
	}
	return t[0] + t[1], t[2] + t[3], nil
}
