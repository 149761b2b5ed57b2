package fleet

// addExports registers export:leads and stats:report on worker-stats
// (placeholder).
func addExports(x statsExtras) error { return nil }
