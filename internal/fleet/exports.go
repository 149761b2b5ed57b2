package fleet

import (
	"fmt"

	"github.com/cepcomunicacion/cepjobs/handlers"
	"github.com/cepcomunicacion/cepjobs/internal/objstore"
)

// addExports registers export:leads on worker-stats. Exports go to the
// object storage backups use (S3_*), in a bucket of their own. Without it
// the handler is still registered, to fail each export with a message that
// says what to set rather than leave it queued; the intake refuses new
// exports with 503 in that case anyway.
func addExports(x statsExtras) error {
	ec := x.cfg.Exports.WithDefaults()
	d := handlers.ExportsDeps{Store: x.base.store, Config: ec, Logger: x.log}
	if b := x.cfg.Backup.WithDefaults(); b.Enabled() {
		objs, err := objstore.New(objstore.Config{
			Endpoint: b.Endpoint, AccessKey: b.AccessKey, SecretKey: b.SecretKey, Region: b.Region, UseTLS: b.UseTLS,
			Bucket: ec.Bucket,
		}, x.log)
		if err != nil {
			return fmt.Errorf("exports: %w", err)
		}
		d.Objects = objs
		x.log.Info("exports on", "bucket", objs.Bucket(), "url_ttl", ec.URLTTL.String())
	} else {
		x.log.Warn("exports off: set S3_ENDPOINT, S3_ACCESS_KEY and S3_SECRET_KEY")
	}
	h, err := handlers.NewExports(d)
	if err != nil {
		return fmt.Errorf("exports: %w", err)
	}
	h.Register(x.mux)
	return nil
}
