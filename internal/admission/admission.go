// Package admission limits how many guests boot at once on this host. A
// boot under TCG is CPU-bound: twenty at once on two cores all finish near
// the boot timeout (measured: 20 concurrent `pyro run`, p50 82 s against a
// 90 s timeout), so a little more load turns every one of them into a
// timeout. With a few boot slots the others wait their turn, each boot
// gets its share of the CPU, and a caller that waits too long gets a
// clear "host busy" error instead of a hang or a timeout.
//
// Slots are lock files under <cache dir>/locks, shared by every pyro that
// shares the environment cache (tests included); a slot is an flock, so a
// killed process gives its slot back at once.
//
// A restore from a warm-start template is not a boot: QEMU maps the
// template's memory and the guest runs on from "agent ready", a fraction
// of a second of CPU against a boot's seconds. Restores take slots of
// their own (Restore), RestoreFactor times as many, so that a warm start
// never queues behind the cold boots of the host (measured with 2 slots
// held by other boots: a warm `pyro run` waited 4-11 s for one).
//
//	release, err := admission.Boot(ctx, cacheDir)
//	if err != nil {
//		return err
//	}
//	defer release()
package admission

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/flock"
	"github.com/pyro-mcp/pyro/internal/paths"
)

// DefaultMaxWait is how long Boot waits for a slot before saying busy.
const DefaultMaxWait = 5 * time.Minute

// Limit is how many guests may boot at once: $PYRO_MAX_BOOTS, else the
// number of CPUs (at least 2). 0 or less from the environment means no limit.
func Limit() int {
	if v := os.Getenv("PYRO_MAX_BOOTS"); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return max(2, runtime.NumCPU())
}

// Boot waits until one of Limit() boot slots is free and takes it, for at
// most DefaultMaxWait (and never past ctx). release gives the slot back.
// A caller that waited too long gets an ErrUnavailable "host busy" error.
func Boot(ctx context.Context, cacheDir string) (release func(), err error) {
	return acquire(ctx, cacheDir, Limit(), DefaultMaxWait)
}

// RestoreFactor is how many restore slots there are per boot slot.
const RestoreFactor = 4

// Restore is Boot for a restore from a template: one of
// RestoreFactor*Limit() restore slots, which boots never hold. A restore
// that fails and falls back to a cold boot takes a boot slot for it.
func Restore(ctx context.Context, cacheDir string) (release func(), err error) {
	return acquireKind(ctx, cacheDir, "restore", RestoreFactor*Limit(), DefaultMaxWait)
}

// pollMax bounds the wait between two looks at the slots: a slot given
// back is taken within it.
const pollMax = 50 * time.Millisecond

func acquire(ctx context.Context, cacheDir string, limit int, maxWait time.Duration) (func(), error) {
	return acquireKind(ctx, cacheDir, "boot", limit, maxWait)
}

func acquireKind(ctx context.Context, cacheDir, kind string, limit int, maxWait time.Duration) (func(), error) {
	if limit <= 0 {
		return func() {}, nil
	}
	if cacheDir == "" {
		cacheDir = paths.CacheDir()
	}
	dir := filepath.Join(cacheDir, "locks")
	if err := paths.EnsurePrivate(dir); err != nil {
		// No place for slots: do not block the boot on it.
		return func() {}, nil
	}
	start := time.Now()
	wait := 5 * time.Millisecond
	for {
		for i := range limit {
			if l, ok, _ := flock.Try(filepath.Join(dir, fmt.Sprintf("%s-slot-%d.lock", kind, i)), flock.Exclusive); ok {
				return l.Unlock, nil
			}
		}
		if time.Since(start) >= maxWait {
			return nil, errdefs.New(errdefs.ErrUnavailable,
				"try again when fewer guests are starting, or raise PYRO_MAX_BOOTS",
				"host busy: %d guests were booting on this host for the %s this one waited", limit, maxWait.Round(time.Second))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, pollMax)
	}
}
