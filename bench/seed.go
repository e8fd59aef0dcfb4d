package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/engine"
)

// seedRounds is how many seeded and unseeded creates the seed figure
// takes the median of.
const seedRounds = 3

// seedFigure measures what a 10,000-file seed adds to workspace create
// (seeded and unseeded creates in turn, so that both see the same load),
// beside its bound: a plain `tar` of the same tree on the host, its
// output piped on (GNU tar skips reading the files when it writes to
// /dev/null itself).
func (b *benchEnv) seedFigure(ctx context.Context, e *engine.Engine) error {
	seed := filepath.Join(b.work, "seed10k-datapath")
	seedSize := makeSmallFiles(seed, 10000)
	t := time.Now()
	if out, err := exec.CommandContext(ctx, "sh", "-c", "tar -cf - -C '"+seed+"' . | cat > /dev/null").CombinedOutput(); err != nil {
		return fmt.Errorf("tar: %v %s", err, out)
	}
	tarD := time.Since(t)
	create := func(o api.CreateWorkspaceOptions) (time.Duration, error) {
		t := time.Now()
		ws, err := e.CreateWorkspace(ctx, o)
		if err != nil {
			return 0, err
		}
		d := time.Since(t)
		_, err = e.DeleteWorkspace(ctx, ws.WorkspaceID)
		return d, err
	}
	var seeded, plain, added []time.Duration
	for range seedRounds {
		p, err := create(api.CreateWorkspaceOptions{Environment: "debian:12"})
		if err != nil {
			return err
		}
		d, err := create(api.CreateWorkspaceOptions{Environment: "debian:12", SeedPath: seed})
		if err != nil {
			return err
		}
		seeded, plain, added = append(seeded, d), append(plain, p), append(added, d-p)
	}
	b.report.line("- create with a 10,000-file seed (%d KB), median of %d: %.2f s, against %.2f s unseeded in turn: the seed adds **%.2f s** (median of the differences; target ≤ 1.5 s); plain `tar` of the same tree on the host: %.3f s\n",
		seedSize/1000, seedRounds, median(seeded).Seconds(), median(plain).Seconds(), median(added).Seconds(), tarD.Seconds())
	return nil
}
