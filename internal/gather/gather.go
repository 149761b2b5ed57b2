// Package gather collects work for group commits: the intake's lead batches
// (store) and its Redis pipelines (redisconn) take every item waiting at the
// moment they are free, without waiting for a batch to fill.
package gather

// Next waits for one item on in, then takes every item already waiting, up
// to cap(buf), and returns them in buf (reused). It returns false, and no
// items, once stop is closed while it waits for the first.
func Next[T any](in <-chan T, stop <-chan struct{}, buf []T) ([]T, bool) {
	select {
	case v := <-in:
		buf = append(buf[:0], v)
	case <-stop:
		return buf[:0], false
	}
	for len(buf) < cap(buf) {
		select {
		case v := <-in:
			buf = append(buf, v)
		default:
			return buf, true
		}
	}
	return buf, true
}
