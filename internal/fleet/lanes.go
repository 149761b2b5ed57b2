package fleet

import (
	"fmt"
	"sync"

	"github.com/hibiken/asynq"
)

// Fetch lanes. asynq's processor takes tasks off Redis in one loop, one task
// per round trip (an EVALSHA of its dequeue script), so a server with many
// slots and short tasks is bound by that loop, not by its slots. A worker
// therefore runs several asynq servers ("lanes") in one process, its
// concurrency split between them. Each lane is a full asynq server with its
// own Redis connection pool (as the measured configuration had; a shared
// pool of go-redis's default size would make 50 slots wait for 20
// connections): it registers in the dashboard's Servers list, extends the
// leases of its own tasks, and polls empty queues on its own (idle Redis
// load grows with the number of lanes). bench/RESULTS.md has the
// measurements behind the default.

// laneSizes splits concurrency over lanes as evenly as possible, never
// giving a lane fewer than one slot (so never more lanes than slots).
func laneSizes(concurrency, lanes int) []int {
	lanes = max(1, min(lanes, concurrency))
	sizes := make([]int, lanes)
	for i := range sizes {
		sizes[i] = concurrency / lanes
		if i < concurrency%lanes {
			sizes[i]++
		}
	}
	return sizes
}

// newLanes builds one asynq server per lane, each with cfg and its share of
// cfg.Concurrency.
func newLanes(opt asynq.RedisConnOpt, cfg asynq.Config, lanes int) []*asynq.Server {
	var srvs []*asynq.Server
	for _, n := range laneSizes(cfg.Concurrency, lanes) {
		c := cfg
		c.Concurrency = n
		srvs = append(srvs, asynq.NewServer(opt, c))
	}
	return srvs
}

// startLanes starts every lane with h; if one fails the started ones are
// shut down.
func startLanes(srvs []*asynq.Server, h asynq.Handler) error {
	for i, s := range srvs {
		if err := s.Start(h); err != nil {
			shutdownLanes(srvs[:i])
			return fmt.Errorf("lane %d of %d: %w", i+1, len(srvs), err)
		}
	}
	return nil
}

// shutdownLanes stops every lane fetching first, so no lane takes new tasks
// while another drains, then shuts them down together: the process waits
// ShutdownTimeout once, not once per lane, and each lane hands its
// unfinished tasks back to Redis.
func shutdownLanes(srvs []*asynq.Server) {
	for _, s := range srvs {
		s.Stop()
	}
	var wg sync.WaitGroup
	for _, s := range srvs {
		wg.Go(s.Shutdown)
	}
	wg.Wait()
}
