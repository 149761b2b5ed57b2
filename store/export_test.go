package store

// StaleQueuedLeadsSQL is exported for the plan test.
const StaleQueuedLeadsSQL = staleQueuedLeadsSQL

// StalePendingDeliveriesSQL is exported for the plan test.
const StalePendingDeliveriesSQL = stalePendingDeliveriesSQL

// NewConns is how many connections the pool has opened so far.
func (s *Store) NewConns() int64 { return s.pool.Stat().NewConnsCount() }
