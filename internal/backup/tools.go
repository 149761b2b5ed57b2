package backup

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// pgVersion is a PostgreSQL version in server_version_num form (150020 is
// 15.20, 90624 is 9.6.24), so servers and client tools compare directly.
type pgVersion int

// major drops the minor release: 150020 → 150000, 90624 → 90600.
func (v pgVersion) major() pgVersion {
	if v >= 100000 {
		return v / 10000 * 10000
	}
	return v / 100 * 100
}

// majorString is the major as people and Debian packages name it: "15",
// "9.6".
func (v pgVersion) majorString() string {
	if v >= 100000 {
		return strconv.Itoa(int(v) / 10000)
	}
	return fmt.Sprintf("%d.%d", v/10000, v/100%100)
}

func (v pgVersion) String() string {
	if v >= 100000 {
		return fmt.Sprintf("%d.%d", v/10000, v%10000)
	}
	return fmt.Sprintf("%d.%d.%d", v/10000, v/100%100, v%100)
}

var toolVersionRE = regexp.MustCompile(`\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?(?:\.(\d+))?`)

// parseToolVersion reads `pg_dump --version` output such as
// "pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)" or
// "pg_dump (PostgreSQL) 17beta1".
func parseToolVersion(out string) (pgVersion, error) {
	m := toolVersionRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("unrecognised version output %q", firstLine(out))
	}
	n := func(s string) int { i, _ := strconv.Atoi(s); return i }
	major, a, b := n(m[1]), n(m[2]), n(m[3])
	if major >= 10 {
		return pgVersion(major*10000 + a), nil
	}
	return pgVersion(major*10000 + a*100 + b), nil
}

// toolVersion runs `<path> --version`. name is the variable that sets the
// path, for the hint.
func toolVersion(ctx context.Context, path, name string) (pgVersion, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("run %s --version: %w (install the PostgreSQL client or set %s)", path, err, name)
	}
	v, err := parseToolVersion(string(out))
	if err != nil {
		return 0, fmt.Errorf("run %s --version: %w", path, err)
	}
	return v, nil
}

// dumpOutputBuffer is the stdio buffer pg_dump's stdout gets through
// stdbuf. pg_dump writes its custom format in blocks of at most 4 KiB (its
// zlib output buffer), and stdio flushes a pipe every 4 KiB: about 150,000
// write calls for a 600 MB dump, each waking the reader. With 1 MiB, a few
// hundred. Measured on a 1.07 GiB database: pg_dump's CPU time 9 % lower
// into a pipe, below even its time into /dev/null.
const dumpOutputBuffer = "1M"

// bufferedCommand returns the command prefix that runs path with a large
// stdout buffer (stdbuf -o 1M), or nil when stdbuf is not installed or
// does not work with path: the check runs `stdbuf -o 1M path --version`
// and wants the version path gives on its own and nothing on stderr (a
// library the loader cannot preload is ignored with a warning there, which
// would then come with every backup). A static binary that ignores the
// preload silently is fine.
func bufferedCommand(ctx context.Context, path string, want pgVersion) []string {
	stdbuf, err := exec.LookPath("stdbuf")
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var stderr strings.Builder
	cmd := exec.CommandContext(ctx, stdbuf, "-o", dumpOutputBuffer, path, "--version")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		return nil
	}
	if v, err := parseToolVersion(string(out)); err != nil || v != want {
		return nil
	}
	return []string{stdbuf, "-o", dumpOutputBuffer}
}

// ErrClientTooOld is matched by the error of a pg_dump or pg_restore too
// old for the server or archive it faces. Retrying cannot help.
var ErrClientTooOld = errors.New("postgresql client too old")

type clientTooOldError struct{ msg string }

func (e *clientTooOldError) Error() string        { return e.msg }
func (e *clientTooOldError) Is(target error) bool { return target == ErrClientTooOld }

// checkPgDump refuses a pg_dump older than the server's major: pg_dump
// cannot dump a newer server and says so only after connecting.
func checkPgDump(dump, server pgVersion) error {
	if dump.major() >= server.major() {
		return nil
	}
	m := server.majorString()
	return &clientTooOldError{fmt.Sprintf("pg_dump %s cannot dump a PostgreSQL %s server: install postgresql-client-%s or set CEPJOBS_PG_DUMP", dump.majorString(), m, m)}
}

// checkPgRestore refuses a pg_restore older than the pg_dump that wrote
// the archive: new majors may bump the archive format, which old
// pg_restore rejects only after reading the header.
func checkPgRestore(restore, dump pgVersion) error {
	if restore.major() >= dump.major() {
		return nil
	}
	m := dump.majorString()
	return &clientTooOldError{fmt.Sprintf("pg_restore %s cannot read a dump made by pg_dump %s: install postgresql-client-%s or set CEPJOBS_PG_RESTORE", restore.majorString(), m, m)}
}

// tailWriter keeps the last bytes written to it: enough of a tool's stderr
// to explain a failure without holding a chatty one in memory.
type tailWriter struct {
	mu     sync.Mutex
	buf    []byte
	max    int
	secret string // scrubbed from the output, in case a tool echoes it
}

func newTailWriter(max int, secret string) *tailWriter {
	return &tailWriter{max: max, secret: secret}
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if over := len(w.buf) - w.max; over > 0 {
		w.buf = append(w.buf[:0], w.buf[over:]...)
	}
	return len(p), nil
}

func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := strings.TrimSpace(strings.ToValidUTF8(string(w.buf), "?"))
	if w.secret != "" {
		s = strings.ReplaceAll(s, w.secret, "xxxxx")
	}
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " | ")), " ")
}

// withStderr appends a tool's stderr tail to its error.
func withStderr(err error, tail *tailWriter) error {
	if s := tail.String(); s != "" {
		return fmt.Errorf("%w: %s", err, s)
	}
	return err
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
