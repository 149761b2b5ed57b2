package devenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pgInstallHint tells the user how to get PostgreSQL when nothing is found.
const pgInstallHint = "install PostgreSQL (Debian/Ubuntu: sudo apt-get install postgresql; macOS: brew install postgresql@16) " +
	"or run: docker compose up -d redis postgres, or set DATABASE_URL"

// pgBinGlobs are where packagers put the server binaries off PATH: Debian
// and Ubuntu, then Homebrew's keg-only formulae.
var pgBinGlobs = []string{
	"/usr/lib/postgresql/*/bin",
	"/opt/homebrew/opt/postgresql@*/bin",
	"/usr/local/opt/postgresql@*/bin",
}

// pgTools runs initdb and pg_ctl, as the postgres user when we are root,
// because both refuse to run as root.
type pgTools struct {
	initdb, pgCtl string
	// asRoot is set when commands go through runuser to the postgres user,
	// whose ids are uid and gid.
	asRoot   bool
	uid, gid int
}

// findPGTools looks for initdb and pg_ctl on PATH, then in the highest
// version of the packagers' directories.
func findPGTools() (pgTools, error) {
	var t pgTools
	initdb, errI := exec.LookPath("initdb")
	pgCtl, errC := exec.LookPath("pg_ctl")
	if errI == nil && errC == nil {
		t.initdb, t.pgCtl = initdb, pgCtl
	} else if dir, ok := findPGBinDir(); ok {
		t.initdb, t.pgCtl = filepath.Join(dir, "initdb"), filepath.Join(dir, "pg_ctl")
	} else {
		return pgTools{}, fmt.Errorf("postgresql binaries initdb and pg_ctl not found on PATH or in %s: %s",
			strings.Join(pgBinGlobs, ", "), pgInstallHint)
	}

	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return pgTools{}, fmt.Errorf("look up postgres user (initdb and pg_ctl refuse to run as root): %w; create the user, run as a normal user, or set DATABASE_URL", err)
		}
		uid, errU := strconv.Atoi(u.Uid)
		gid, errG := strconv.Atoi(u.Gid)
		if err := errors.Join(errU, errG); err != nil {
			return pgTools{}, fmt.Errorf("parse postgres user ids: %w", err)
		}
		if _, err := exec.LookPath("runuser"); err != nil {
			return pgTools{}, fmt.Errorf("runuser not found on PATH (needed to run initdb and pg_ctl as postgres when root): %w; run as a normal user or set DATABASE_URL", err)
		}
		t.asRoot, t.uid, t.gid = true, uid, gid
	}
	return t, nil
}

// findPGBinDir returns the newest directory from pgBinGlobs holding both
// initdb and pg_ctl.
func findPGBinDir() (string, bool) {
	var dirs []string
	for _, g := range pgBinGlobs {
		m, _ := filepath.Glob(g) // the patterns are constant and valid
		dirs = append(dirs, m...)
	}
	sortNewestFirst(dirs)
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "pg_ctl")) {
			return d, true
		}
	}
	return "", false
}

// sortNewestFirst orders PostgreSQL bin dirs by descending version.
func sortNewestFirst(binDirs []string) {
	slices.SortFunc(binDirs, func(a, b string) int {
		return slices.Compare(pgDirVersion(b), pgDirVersion(a))
	})
}

// pgDirVersion extracts the version from ".../15/bin" or
// ".../postgresql@16/bin" as numbers, so that 10 sorts above 9.6.
func pgDirVersion(binDir string) []int {
	name := filepath.Base(filepath.Dir(binDir))
	if i := strings.LastIndex(name, "@"); i >= 0 {
		name = name[i+1:]
	}
	var v []int
	for _, part := range strings.Split(name, ".") {
		n, err := strconv.Atoi(part)
		if err != nil {
			break
		}
		v = append(v, n)
	}
	return v
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// command builds name args, through runuser when root. dir is the working
// directory: it must be one the postgres user can enter, or initdb and the
// server complain about the current directory.
func (t pgTools) command(ctx context.Context, dir, name string, args ...string) *exec.Cmd {
	var cmd *exec.Cmd
	if t.asRoot {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, name, args...)
	}
	cmd.Dir = dir
	// pg_ctl hands the server its own log file, but if anything still held
	// our output pipe, Wait would hang without this.
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// run runs the command and returns its trimmed combined output for error
// messages.
func (t pgTools) run(ctx context.Context, dir, name string, args ...string) (string, error) {
	out, err := t.command(ctx, dir, name, args...).CombinedOutput()
	return string(bytes.TrimSpace(out)), err
}

// prepareDir creates dir and, when root, hands it to the postgres user and
// checks that user can reach it: a state dir under a private home such as
// /root would otherwise fail deep inside initdb with a vague message.
func (t pgTools) prepareDir(ctx context.Context, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create postgres dir: %w", err)
	}
	if !t.asRoot {
		return nil
	}
	// The state dir is ours; let other users pass through it (search
	// only, not list) so postgres can reach its own subdirectory.
	parent := filepath.Dir(dir)
	if fi, err := os.Stat(parent); err == nil && fi.Mode().Perm()&0o001 == 0 {
		if err := os.Chmod(parent, fi.Mode().Perm()|0o011); err != nil {
			return fmt.Errorf("open state dir to postgres user: %w", err)
		}
	}
	if err := t.chownTree(dir); err != nil {
		return err
	}
	if out, err := t.run(ctx, dir, "test", "-w", dir); err != nil {
		if out != "" {
			out = " (" + out + ")"
		}
		return fmt.Errorf("check state dir: postgres user cannot write %s%s: make each parent directory searchable by others (chmod o+x) or set DATABASE_URL",
			dir, out)
	}
	return nil
}

// chownTree gives dir and everything in it to the postgres user.
func (t pgTools) chownTree(dir string) error {
	err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, t.uid, t.gid)
	})
	if err != nil {
		return fmt.Errorf("chown postgres dir: %w", err)
	}
	return nil
}

// initCluster runs initdb unless dataDir already holds a cluster. It
// builds the cluster beside dataDir and renames it into place, because an
// interrupted initdb leaves a half-made cluster that would pass the
// PG_VERSION check forever after.
func (t pgTools) initCluster(ctx context.Context, dir, dataDir string, logger *slog.Logger) error {
	if _, err := os.Stat(filepath.Join(dataDir, "PG_VERSION")); err == nil {
		return nil
	}
	scratch := dataDir + ".init"
	if err := os.RemoveAll(scratch); err != nil {
		return fmt.Errorf("remove old scratch cluster: %w", err)
	}
	logger.InfoContext(ctx, "creating private postgres cluster", "data", dataDir)
	out, err := t.run(ctx, dir, t.initdb,
		"-D", scratch, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-instructions")
	if err != nil {
		return fmt.Errorf("run initdb: %w: %s", err, out)
	}
	// Rename replaces an empty dataDir but not a non-empty one, which is
	// not ours to delete.
	if err := os.Rename(scratch, dataDir); err != nil {
		return fmt.Errorf("move new cluster into place: %w (remove %s if it holds nothing you need)", err, dataDir)
	}
	return nil
}

// maxSocketPath is the longest Unix socket path we use: sun_path is 108
// bytes on Linux and 104 on macOS, including the terminating NUL.
const maxSocketPath = 103

// socketPathFits reports whether the server's socket file fits in dir.
func socketPathFits(dir string) bool {
	return len(filepath.Join(dir, ".s.PGSQL.65535")) <= maxSocketPath
}

// tempSocketDir makes a short-pathed directory for the server's socket,
// owned by whoever runs the server.
func (t pgTools) tempSocketDir() (string, error) {
	dir, err := os.MkdirTemp("", "cepjobs-pg-")
	if err != nil {
		return "", fmt.Errorf("create socket dir: %w", err)
	}
	if !socketPathFits(dir) {
		os.RemoveAll(dir)
		return "", fmt.Errorf("create socket dir: %s is too long for a unix socket path; set TMPDIR to a shorter one", dir)
	}
	if t.asRoot {
		if err := os.Lchown(dir, t.uid, t.gid); err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("chown socket dir: %w", err)
		}
	}
	return dir, nil
}

// postmasterPID returns the pid of the live server recorded in dataDir's
// postmaster.pid, or 0 if there is none. A crash leaves the file behind,
// so its presence alone proves nothing.
func postmasterPID(dataDir string) int {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		return 0
	}
	defer proc.Release()
	// Signal 0 checks existence without disturbing the process; EPERM
	// (someone else's process) still means it exists.
	err = proc.Signal(syscall.Signal(0))
	if err != nil && errors.Is(err, os.ErrProcessDone) {
		return 0
	}
	return pid
}

// shellQuote quotes s for /bin/sh, which is how pg_ctl runs the server
// with the -o options.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
