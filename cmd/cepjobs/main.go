// Command cepjobs is the ops CLI: run the whole fleet locally (dev), apply
// migrations, print the effective configuration, check the environment
// (doctor), and hash a dashboard password.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/cepcomunicacion/cepjobs/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Environ(), os.Stdin, os.Stdout, os.Stderr)
	stop()
	var ee exitError
	switch {
	case errors.As(err, &ee):
		os.Exit(int(ee))
	case err != nil:
		fmt.Fprintln(os.Stderr, "cepjobs:", err)
		os.Exit(1)
	}
}

// exitError ends the process with a status after the command has already
// said everything it had to say.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

const usage = `usage: cepjobs <command> [flags]

commands:
  dev            run intake, workers and scheduler in one process against local
                 (or private throwaway) Redis and PostgreSQL
  migrate        apply the database migrations
  config         print the effective configuration, secrets redacted
  doctor         check Redis, PostgreSQL, pg_dump and integrations
  backup         back up now, list, restore or verify database backups (backup help)
  schedule       print the schedule table with each entry's next and previous run
  hash-password  read a password on stdin and print its bcrypt hash
                 (for CEPJOBS_DASHBOARD_PASSWORD_HASH)
  version        print the version

Configuration comes from environment variables: see README.md.
`

type env struct {
	environ        []string
	stdin          io.Reader
	stdout, stderr io.Writer
}

func run(ctx context.Context, args, environ []string, stdin io.Reader, stdout, stderr io.Writer) error {
	e := env{environ: environ, stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return exitError(2)
	}
	cmd, rest := args[1], args[2:]
	switch cmd {
	case "dev":
		return runDev(ctx, e, rest)
	case "migrate":
		return runMigrate(ctx, e, rest)
	case "config":
		return runConfig(e, rest)
	case "doctor":
		return runDoctor(ctx, e, rest)
	case "hash-password":
		return runHashPassword(e, rest)
	case "backup":
		return runBackup(ctx, e, rest)
	case "schedule":
		return runSchedule(e, rest)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "cepjobs", version.String())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "cepjobs: unknown command %q\n\n%s", cmd, usage)
		return exitError(2)
	}
}

func noArgs(cmd string, rest []string) error {
	if len(rest) > 0 {
		return fmt.Errorf("%s takes no arguments, got %q (configuration comes from environment variables)", cmd, rest)
	}
	return nil
}
