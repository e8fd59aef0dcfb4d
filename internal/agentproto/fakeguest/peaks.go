package fakeguest

import (
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
)

// Peaks samples, until stop is called, the process's live heap and its
// resident set, and returns the highest of each. The live heap is what the
// last collection marked, read right after a forced one: what the host
// retains (queues, buffers)
// is what a guest could grow without bound, while garbage that the
// collector has not reached yet depends on how busy the machine is (under
// load the collector lags a flood by tens of MiB). The forced collections
// also pace the collector, which keeps the RSS a measure of the same thing.
func Peaks() (stop func() (liveHeap, rss uint64)) {
	done, finished := make(chan struct{}), make(chan struct{})
	var heap, res uint64
	go func() {
		defer close(finished)
		live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		for {
			runtime.GC()
			metrics.Read(live)
			heap = max(heap, live[0].Value.Uint64())
			res = max(res, RSS())
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return func() (uint64, uint64) { close(done); <-finished; return heap, res }
}

// RSS is the process's resident set size.
func RSS() uint64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
