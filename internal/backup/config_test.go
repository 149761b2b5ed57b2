package backup_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/cepcomunicacion/cepjobs/internal/backup"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	good := backup.Config{Endpoint: "minio:9000", AccessKey: "ak", SecretKey: "super-secret"}.WithDefaults()
	if err := good.Validate(); err != nil {
		t.Errorf("got %v for a good config, want nil", err)
	}
	if err := (backup.Config{}).WithDefaults().Validate(); err != nil {
		t.Errorf("got %v for backups off, want nil", err)
	}
	if (backup.Config{}).Enabled() || !good.Enabled() {
		t.Error("Enabled does not follow S3_ENDPOINT")
	}

	bad := good
	bad.Endpoint = "https://minio:9000"
	bad.AccessKey = ""
	bad.SecretKey = ""
	bad.Bucket = "Bad_Bucket"
	bad.Retention = -1
	bad.KeepMin = 0
	bad.PgDump = ""
	err := bad.Validate()
	var lines []string
	for _, l := range strings.Split(err.Error(), "\n") {
		name, _, _ := strings.Cut(l, ":")
		lines = append(lines, name)
	}
	diff(t, "variables named", []string{
		"S3_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY", "CEPJOBS_BACKUP_BUCKET",
		"CEPJOBS_BACKUP_RETENTION", "CEPJOBS_BACKUP_KEEP_MIN", "CEPJOBS_PG_DUMP",
	}, lines)

	if _, err := backup.New(backup.Config{}, nil); !errors.Is(err, backup.ErrNotConfigured) {
		t.Errorf("got %v from New without endpoint, want ErrNotConfigured", err)
	}
	withSecret := good
	withSecret.Bucket = "x"
	if _, err := backup.New(withSecret, nil); err == nil || strings.Contains(err.Error(), "super-secret") {
		t.Errorf("got %v from New with a bad bucket, want an error without the secret", err)
	}
}

func TestDatabaseName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://u:p@h:5432/shop?sslmode=disable": "shop",
		"host=h user=u password='a b' dbname=leads":  "leads",
	} {
		got, err := backup.DatabaseName(in)
		if err != nil || got != want {
			t.Errorf("DatabaseName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := backup.DatabaseName("postgres://u:hunter2@h:bad/x"); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("got %v for a bad URL, want an error without the password", err)
	}
}
