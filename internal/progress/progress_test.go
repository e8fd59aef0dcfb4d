package progress

import (
	"context"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pyro-mcp/pyro/api"
)

type recorder struct {
	mu  sync.Mutex
	got []api.Progress
}

func (r *recorder) add(p api.Progress) { r.mu.Lock(); r.got = append(r.got, p); r.mu.Unlock() }

func TestOp(t *testing.T) {
	var call, global recorder
	ctx := WithFunc(context.Background(), call.add)
	ctx, op := Start(ctx, "workspace create", global.add, "environment", "disk", "boot", "seed")
	op.Describe("debian:12", "")
	op.Phase("environment")
	// A nested operation reports to the same receivers under its own name.
	_, pull := Start(ctx, "pull", global.add)
	pull.Report(api.Progress{Phase: "resolve", Environment: "debian:12"})
	op.Describe("", "abc")
	op.Phase("seed")
	for i := range int64(1000) {
		op.Count(api.UnitFiles, i+1, 1000)
	}
	From(ctx).Done()

	if len(call.got) != len(global.got) {
		t.Errorf("the call heard %d reports, the global receiver %d", len(call.got), len(global.got))
	}
	var seen []string
	for _, p := range call.got {
		seen = append(seen, p.Op+" "+p.Phase)
	}
	// 1000 counts in a tight loop: the first and the last only.
	want := []string{"workspace create environment", "pull resolve", "workspace create seed", "workspace create seed",
		"workspace create seed", "workspace create done"}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("reports (-want +got):\n%s", diff)
	}
	seed := call.got[4]
	if seed.Done != 1000 || seed.Total != 1000 || seed.PhaseIndex != 4 || seed.PhaseCount != 4 || seed.ID != "abc" || seed.Environment != "debian:12" {
		t.Errorf("last count %+v", seed)
	}
	if p := call.got[1]; p.Op != "pull" || p.PhaseCount != 0 {
		t.Errorf("nested report %+v", p)
	}
	// Without an operation in the context, reports go nowhere.
	From(context.Background()).Phase("boot")
}
