// Package benchstat holds what the benchmark harnesses under bench/ share:
// free loopback ports, a process's CPU time from /proc, and the statistics
// their reports print.
package benchstat

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
)

// FreePort returns a TCP port free on 127.0.0.1 at the time of the call.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ProcCPU is utime+stime of pid in seconds (0 when the process is gone).
func ProcCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)  // field 14
	st, _ := strconv.ParseFloat(f[12], 64) // field 15
	return (u + st) / 100                  // USER_HZ is 100 on Linux
}

// Pct is the p-th percentile of an ascending slice (0 when empty).
func Pct(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(float64(len(sorted)-1)*p/100)]
}

// Median of xs (0 when empty); xs is not modified.
func Median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
