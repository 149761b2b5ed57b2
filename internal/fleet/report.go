package fleet

import (
	"fmt"
	"time"

	"github.com/cepcomunicacion/cepjobs/handlers"
	"github.com/cepcomunicacion/cepjobs/internal/objstore"
)

// addReport registers stats:report on worker-stats. The report's CSV goes
// to the exports bucket (CEPJOBS_EXPORTS_BUCKET) on the object storage
// backups use (S3_*); without it the report is mailed without the CSV.
// Without CEPJOBS_REPORT_RECIPIENTS the handler is still registered, so a
// scheduled task completes, and logs that reports are off.
func addReport(x statsExtras) error {
	rc := x.cfg.Report
	d := handlers.ReportDeps{
		Store: x.base.store,
		// Its own dispatcher, as the worker's is not in statsExtras. Its
		// counters go to a registry of their own: the worker's has the
		// outbox metrics already, and a report sends a handful of emails
		// a week; a row Redis does not take is still relayed.
		Dispatch: x.base.dispatcher(x.log),
		Config:   rc,
		Location: madrid(x),
		Logger:   x.log,
	}
	if b := x.cfg.Backup.WithDefaults(); b.Enabled() && len(rc.Recipients) > 0 {
		objs, err := objstore.New(objstore.Config{
			Endpoint: b.Endpoint, AccessKey: b.AccessKey, SecretKey: b.SecretKey, Region: b.Region, UseTLS: b.UseTLS,
			Bucket: x.cfg.Exports.WithDefaults().Bucket,
		}, x.log)
		if err != nil {
			return fmt.Errorf("weekly report: %w", err)
		}
		d.Objects = objs
	}
	switch {
	case len(rc.Recipients) == 0:
		x.log.Info("weekly report off: set CEPJOBS_REPORT_RECIPIENTS")
	case d.Objects == nil:
		x.log.Warn("weekly report on without its CSV: set S3_ENDPOINT, S3_ACCESS_KEY and S3_SECRET_KEY", "recipients", len(rc.Recipients))
	default:
		x.log.Info("weekly report on", "recipients", len(rc.Recipients), "bucket", x.cfg.Exports.WithDefaults().Bucket)
	}
	handlers.NewReport(d).Register(x.mux)
	return nil
}

// madrid is where the report shows times; the days it counts are UTC.
func madrid(x statsExtras) *time.Location {
	loc, err := time.LoadLocation("Europe/Madrid")
	if err != nil {
		x.log.Warn("no time zone data: the weekly report shows times in UTC", "err", err)
		return time.UTC
	}
	return loc
}
