package backup

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// Config is the backup part of the configuration.
type Config struct {
	// Endpoint is the S3 server as host:port. Empty means backups are not
	// configured: Enabled reports false and New refuses.
	Endpoint  string `env:"S3_ENDPOINT"`
	AccessKey string `env:"S3_ACCESS_KEY"`
	SecretKey string `env:"S3_SECRET_KEY" secret:"true"`
	Region    string `env:"S3_REGION" default:"us-east-1"`
	UseTLS    bool   `env:"S3_USE_TLS" default:"false"`
	Bucket    string `env:"CEPJOBS_BACKUP_BUCKET" default:"cep-backups"`
	// Schedule is carried for the scheduler, which parses it; this package
	// never reads it.
	Schedule string `env:"CEPJOBS_BACKUP_SCHEDULE" default:"0 3 * * *"`
	// Retention is how long dumps are kept, beyond the KeepMin newest.
	Retention time.Duration `env:"CEPJOBS_BACKUP_RETENTION" default:"720h"`
	// KeepMin dumps are kept whatever their age, so a stopped schedule
	// never lets Prune delete the last good backups.
	KeepMin   int    `env:"CEPJOBS_BACKUP_KEEP_MIN" default:"7"`
	PgDump    string `env:"CEPJOBS_PG_DUMP" default:"pg_dump"`
	PgRestore string `env:"CEPJOBS_PG_RESTORE" default:"pg_restore"`
}

// Enabled reports whether backups are configured at all.
func (c Config) Enabled() bool { return c.Endpoint != "" }

// WithDefaults fills the zero fields that have a default, for configs built
// in code rather than loaded from the environment.
func (c Config) WithDefaults() Config {
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.Bucket == "" {
		c.Bucket = "cep-backups"
	}
	if c.Schedule == "" {
		c.Schedule = "0 3 * * *"
	}
	if c.Retention == 0 {
		c.Retention = 720 * time.Hour
	}
	if c.KeepMin == 0 {
		c.KeepMin = 7
	}
	if c.PgDump == "" {
		c.PgDump = "pg_dump"
	}
	if c.PgRestore == "" {
		c.PgRestore = "pg_restore"
	}
	return c
}

// Validate reports what is wrong with c. A config without an endpoint is
// valid (backups off), but its other settings are still checked so a typo
// surfaces before the day backups are switched on.
func (c Config) Validate() error {
	var errs []error
	if c.Enabled() {
		if strings.Contains(c.Endpoint, "://") || strings.Contains(c.Endpoint, "/") {
			errs = append(errs, fmt.Errorf("S3_ENDPOINT: want host:port without scheme or path (set S3_USE_TLS=true for https), got %q", c.Endpoint))
		}
		if c.AccessKey == "" {
			errs = append(errs, errors.New("S3_ACCESS_KEY: required when S3_ENDPOINT is set"))
		}
		if c.SecretKey == "" {
			errs = append(errs, errors.New("S3_SECRET_KEY: required when S3_ENDPOINT is set"))
		}
	}
	if err := s3utils.CheckValidBucketNameStrict(c.Bucket); err != nil {
		errs = append(errs, fmt.Errorf("CEPJOBS_BACKUP_BUCKET: %q is not a valid bucket name (3-63 lowercase letters, digits, dots, hyphens)", c.Bucket))
	}
	if c.Retention <= 0 {
		errs = append(errs, fmt.Errorf("CEPJOBS_BACKUP_RETENTION: must be positive, got %s", c.Retention))
	}
	if c.KeepMin < 1 {
		errs = append(errs, fmt.Errorf("CEPJOBS_BACKUP_KEEP_MIN: must be at least 1 so pruning never deletes every backup, got %d", c.KeepMin))
	}
	if c.PgDump == "" {
		errs = append(errs, errors.New("CEPJOBS_PG_DUMP: required"))
	}
	if c.PgRestore == "" {
		errs = append(errs, errors.New("CEPJOBS_PG_RESTORE: required"))
	}
	return errors.Join(errs...)
}
