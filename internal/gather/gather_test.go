package gather_test

import (
	"testing"

	"github.com/cepcomunicacion/cepjobs/internal/gather"
)

func TestNext(t *testing.T) {
	in := make(chan int, 10)
	stop := make(chan struct{})
	buf := make([]int, 0, 3)
	for i := range 5 {
		in <- i
	}
	// Takes what waits, up to the buffer's capacity, in order.
	got, ok := gather.Next(in, stop, buf)
	if !ok || len(got) != 3 || got[0] != 0 || got[2] != 2 {
		t.Fatalf("first: %v %v, want [0 1 2] true", got, ok)
	}
	// Does not wait for the batch to fill.
	got, ok = gather.Next(in, stop, got)
	if !ok || len(got) != 2 || got[0] != 3 || got[1] != 4 {
		t.Fatalf("second: %v %v, want [3 4] true", got, ok)
	}
	// Waits for the first item, and gives up when stopped.
	done := make(chan struct{})
	go func() {
		defer close(done)
		got, ok = gather.Next(in, stop, got)
	}()
	close(stop)
	<-done
	if ok || len(got) != 0 {
		t.Fatalf("after stop: %v %v, want [] false", got, ok)
	}
}
