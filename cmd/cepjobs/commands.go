package main

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cepcomunicacion/cepjobs/api"
	"github.com/cepcomunicacion/cepjobs/internal/config"
	"github.com/cepcomunicacion/cepjobs/internal/doctor"
	"github.com/cepcomunicacion/cepjobs/store"
)

func runMigrate(ctx context.Context, e env, rest []string) error {
	if err := noArgs("migrate", rest); err != nil {
		return err
	}
	cfg, err := config.Load(e.environ)
	if err != nil {
		return err
	}
	s, err := store.Open(ctx, cfg.Store)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Ping(ctx); err != nil {
		return fmt.Errorf("postgres at %s: %w", config.RedactURL(cfg.Store.URL), err)
	}
	before, _, err := s.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	v, err := s.Migrate(ctx)
	if err != nil {
		return err
	}
	if v == before {
		fmt.Fprintf(e.stdout, "schema cepjobs already at version %d\n", v)
	} else {
		fmt.Fprintf(e.stdout, "schema cepjobs migrated from version %d to %d\n", before, v)
	}
	return nil
}

func runConfig(e env, rest []string) error {
	if err := noArgs("config", rest); err != nil {
		return err
	}
	cfg, err := config.Load(e.environ)
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tVALUE\tSOURCE")
	for _, v := range cfg.Vars() {
		src := "default"
		if v.FromEnv {
			src = "env"
		}
		val := v.Value
		if val == "" {
			val = "(unset)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Name, val, src)
	}
	tw.Flush()
	if err != nil {
		fmt.Fprintln(e.stderr)
		return err
	}
	return nil
}

func runDoctor(ctx context.Context, e env, rest []string) error {
	if err := noArgs("doctor", rest); err != nil {
		return err
	}
	cfg, err := config.Load(e.environ)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r := doctor.Run(ctx, doctor.Params{Config: cfg, Environ: e.environ})
	r.Print(e.stdout)
	if r.Failed() {
		return exitError(1)
	}
	return nil
}

func runHashPassword(e env, rest []string) error {
	if err := noArgs("hash-password", rest); err != nil {
		return err
	}
	fmt.Fprintln(e.stderr, "password (read from stdin, one line):")
	line, err := bufio.NewReader(e.stdin).ReadString('\n')
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		if err != nil {
			return fmt.Errorf("read password: %w", err)
		}
		return fmt.Errorf("empty password")
	}
	if len(pw) < 12 {
		return fmt.Errorf("password too short: use at least 12 characters")
	}
	if len(pw) > 72 {
		return fmt.Errorf("password too long: bcrypt uses at most 72 bytes")
	}
	h, err := api.HashPassword(pw)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, h)
	return nil
}
