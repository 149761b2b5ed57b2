package outbox

import (
	"context"

	"github.com/redis/go-redis/v9"

	"github.com/cepcomunicacion/cepjobs/tasks"
)

// allQueuesKey is asynq's set of known queue names (base.AllQueues), which
// its Inspector and the dashboard list queues from.
const allQueuesKey = "asynq:queues"

// AnnounceQueues registers every cepjobs queue with asynq, so the dashboard
// lists all of them from the first start, and again after Redis lost its data
// (a restart without persistence): asynq's client adds a queue to that set
// only on its first enqueue per process, so tasks relayed into an emptied
// Redis would otherwise sit in a queue no dashboard shows.
func AnnounceQueues(ctx context.Context, c redis.UniversalClient) error {
	members := make([]any, len(tasks.Queues))
	for i, q := range tasks.Queues {
		members[i] = q
	}
	return c.SAdd(ctx, allQueuesKey, members...).Err()
}
