package store

// StaleQueuedLeadsSQL is exported for the plan test.
const StaleQueuedLeadsSQL = staleQueuedLeadsSQL

// StalePendingDeliveriesSQL is exported for the plan test.
const StalePendingDeliveriesSQL = stalePendingDeliveriesSQL
