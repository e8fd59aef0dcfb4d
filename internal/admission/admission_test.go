package admission

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// At most limit holders at once; the others wait their turn.
func TestSlotsBoundConcurrency(t *testing.T) {
	dir := t.TempDir()
	var now, peak atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := acquire(t.Context(), dir, 2, time.Minute)
			if err != nil {
				t.Error(err)
				return
			}
			n := now.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			time.Sleep(30 * time.Millisecond)
			now.Add(-1)
			release()
		}()
	}
	wg.Wait()
	if p := peak.Load(); p != 2 {
		t.Errorf("peak %d holders, want 2", p)
	}
}

// A caller that cannot get a slot in time gets a clear busy error; a
// cancelled one gets its context's error.
func TestBusyAndCancel(t *testing.T) {
	dir := t.TempDir()
	release, err := acquire(t.Context(), dir, 1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	_, err = acquire(t.Context(), dir, 1, 100*time.Millisecond)
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "host busy") || errdefs.HintOf(err) == "" {
		t.Errorf("busy: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := acquire(ctx, dir, 1, time.Minute); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled: %v", err)
	}
}

// A restore never waits behind boots: with every boot slot held, it gets
// a restore slot at once; restore slots are bounded in their turn.
func TestRestoreSlotsAreTheirOwn(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PYRO_MAX_BOOTS", "1")
	boot, err := Boot(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer boot()
	var held []func()
	defer func() {
		for _, r := range held {
			r()
		}
	}()
	for range RestoreFactor {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		r, err := Restore(ctx, dir)
		cancel()
		if err != nil {
			t.Fatalf("restore with the boot slot held: %v", err)
		}
		held = append(held, r)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := Restore(ctx, dir); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("restore past %d slots: %v, want to wait", RestoreFactor, err)
	}
}
