package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pyro-mcp/pyro"
	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/engine"
)

// workspaceSuite: exec round trips (execFigures), sync push against
// the raw channel, a 10,000-file seed against plain tar, and how many idle
// workspaces fit.
func (b *benchEnv) workspaceSuite(ctx context.Context) error {
	r := b.report
	r.line("\n## Workspaces (issue 4)\n\n")
	e, err := engine.New(engine.Options{})
	if err != nil {
		return err
	}
	ws, err := e.CreateWorkspace(ctx, api.CreateWorkspaceOptions{Environment: "debian:12"})
	if err != nil {
		return err
	}
	defer e.DeleteWorkspace(context.WithoutCancel(ctx), ws.WorkspaceID)
	if err := b.execFigures(ctx, ws.WorkspaceID); err != nil {
		return err
	}

	// Raw channel: 100 MB of stdin into `cat > /dev/null`.
	const raw = 100 << 20
	c, err := dialVM(ctx, ws.WorkspaceID)
	if err != nil {
		return err
	}
	t := time.Now()
	res, err := c.Exec(ctx, agentproto.ExecRequest{Argv: []string{"sh", "-c", "cat > /dev/null"}, Stdin: true, TimeoutMs: 600000},
		io.LimitReader(zeroReader{}, raw), io.Discard, io.Discard)
	c.Close()
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("raw channel: cat exited %d", res.ExitCode)
	}
	rawD := time.Since(t)
	tree := filepath.Join(b.work, "tree100")
	size, files := makeTree(tree, 100<<20)
	t = time.Now()
	sr, err := e.PushWorkspaceSync(ctx, ws.WorkspaceID, tree, "/workspace/bench")
	if err != nil {
		return err
	}
	syncD := time.Since(t)
	r.line("- raw host→guest channel (100 MiB through exec stdin): %.0f MB/s\n", mbps(raw, rawD))
	r.line("- sync push of a %d MB tree of %d mixed-size files: %.2f s = %.0f MB/s; **%.0f%% of the raw channel** (target ≥ 50%%); %d entries\n",
		size/1e6, files, syncD.Seconds(), mbps(size, syncD), 100*mbps(size, syncD)/mbps(raw, rawD), sr.Entries)

	seed := filepath.Join(b.work, "seed10k")
	seedSize := makeSmallFiles(seed, 10000)
	t = time.Now()
	if out, err := exec.CommandContext(ctx, "sh", "-c", "tar -cf - -C "+seed+" . > /dev/null").CombinedOutput(); err != nil {
		return fmt.Errorf("tar: %v %s", err, out)
	}
	tarD := time.Since(t)
	t = time.Now()
	ws2, err := e.CreateWorkspace(ctx, api.CreateWorkspaceOptions{Environment: "debian:12", SeedPath: seed})
	if err != nil {
		return err
	}
	seededD := time.Since(t)
	e.DeleteWorkspace(ctx, ws2.WorkspaceID)
	t = time.Now()
	ws3, err := e.CreateWorkspace(ctx, api.CreateWorkspaceOptions{Environment: "debian:12"})
	if err != nil {
		return err
	}
	emptyD := time.Since(t)
	e.DeleteWorkspace(ctx, ws3.WorkspaceID)
	r.line("- create with a 10,000-file seed (%d KB): %.2f s (an unseeded create: %.2f s, so the seed costs %.2f s); plain `tar` of the same tree: %.3f s\n",
		seedSize/1000, seededD.Seconds(), emptyD.Seconds(), (seededD - emptyD).Seconds(), tarD.Seconds())

	const want = 20
	var ids []string
	defer func() {
		for _, id := range ids {
			e.DeleteWorkspace(context.WithoutCancel(ctx), id)
		}
	}()
	t = time.Now()
	for i := 0; i < want; i++ {
		w, err := e.CreateWorkspace(ctx, api.CreateWorkspaceOptions{Environment: "debian:12-base"})
		if err != nil {
			r.line("- idle workspaces: creating number %d failed: %v\n", i+1, err)
			break
		}
		ids = append(ids, w.WorkspaceID)
	}
	time.Sleep(5 * time.Second)
	var total, alive int
	for _, id := range ids {
		st, err := e.StatusWorkspace(ctx, id)
		if err != nil || !st.Running {
			continue
		}
		alive++
		total += rssKiB(st.VMMPid)
	}
	if alive > 0 {
		r.line("- idle workspaces held at once: **%d of %d** (target 20), created in %.0f s; mean QEMU RSS %d MiB each, %d MiB in all\n",
			alive, want, time.Since(t).Seconds(), total/alive/1024, total/1024)
	}
	return nil
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// makeTree writes about total bytes as a mix of large, medium and small
// files of random (incompressible) content.
func makeTree(dir string, total int64) (int64, int) {
	rng := rand.New(rand.NewSource(1))
	var written int64
	files := 0
	sizes := []struct {
		size  int
		share float64
	}{{8 << 20, .5}, {256 << 10, .3}, {8 << 10, .2}}
	for _, s := range sizes {
		budget := int64(float64(total) * s.share)
		for i := 0; budget > 0; i++ {
			d := filepath.Join(dir, fmt.Sprintf("d%d", s.size), fmt.Sprintf("%02d", i%50))
			os.MkdirAll(d, 0o755)
			buf := make([]byte, s.size)
			rng.Read(buf)
			os.WriteFile(filepath.Join(d, fmt.Sprintf("f%d", i)), buf, 0o644)
			budget -= int64(s.size)
			written += int64(s.size)
			files++
		}
	}
	return written, files
}

// makeSmallFiles writes n small source-like files in a nested tree.
func makeSmallFiles(dir string, n int) int64 {
	var total int64
	for i := 0; i < n; i++ {
		d := filepath.Join(dir, fmt.Sprintf("pkg%03d", i/100))
		os.MkdirAll(d, 0o755)
		body := bytes.Repeat([]byte(fmt.Sprintf("line %d of a source file\n", i)), 20)
		os.WriteFile(filepath.Join(d, fmt.Sprintf("file%05d.go", i)), body, 0o644)
		total += int64(len(body))
	}
	return total
}

// execSuite is issue 19's exec target on its own: one workspace, and
// execFigures.
func (b *benchEnv) execSuite(ctx context.Context) error {
	b.report.line("\n## Workspace exec (issue 19)\n\n")
	c, err := pyro.New(nil)
	if err != nil {
		return err
	}
	ws, err := c.CreateWorkspace(ctx, pyro.CreateWorkspaceOptions{Environment: "debian:12"})
	if err != nil {
		return err
	}
	defer c.DeleteWorkspace(context.WithoutCancel(ctx), ws.WorkspaceID)
	return b.execFigures(ctx, ws.WorkspaceID)
}

// execFigures times an exec of `true` in a running workspace through the
// Go SDK (in-process) and the CLI (a pyro process each) against their
// targets, and splits it into steps: the protocol (a ping through the
// supervisor), the guest's fork/exec (an exec without a flush), the
// guest's flush (the same with one), and the engine's own steps as its
// debug line times them (engine.ExecTimings): preparing (finding and
// numbering the command), the rest of running it (connection and
// request), and the history entry. The steps are taken in turn within
// each round, so that a change of load reaches them all alike; what is
// around the engine's steps is taken call by call.
func (b *benchEnv) execFigures(ctx context.Context, id string) error {
	r := b.report
	steps := &execSteps{}
	sdk, err := pyro.New(&pyro.Options{Logger: slog.New(steps)})
	if err != nil {
		return err
	}
	c, err := dialVM(ctx, id)
	if err != nil {
		return err
	}
	defer c.Close()
	raw := func(sync bool) error {
		res, err := c.Exec(ctx, agentproto.ExecRequest{Argv: []string{"true"}, Cwd: api.WorkspaceRoot, Sync: sync}, nil, io.Discard, io.Discard)
		if err == nil && res.ExitCode != 0 {
			err = fmt.Errorf("true exited %d", res.ExitCode)
		}
		return err
	}
	var ping, bare, flushed, viaSDK []time.Duration
	for i := 0; i < b.n; i++ {
		for _, s := range []struct {
			ds *[]time.Duration
			f  func() error
		}{
			{&ping, func() error { _, err := c.Ping(ctx); return err }},
			{&bare, func() error { return raw(false) }},
			{&flushed, func() error { return raw(true) }},
			{&viaSDK, func() error {
				_, err := sdk.ExecWorkspace(ctx, id, pyro.ExecOptions{Argv: []string{"true"}})
				return err
			}},
		} {
			t := time.Now()
			if err := s.f(); err != nil {
				return err
			}
			*s.ds = append(*s.ds, time.Since(t))
		}
	}
	sdkSteps := steps.take(viaSDK)
	const nCLI = 30
	var version, cli, debugged []time.Duration
	for i := 0; i < nCLI; i++ {
		t := time.Now()
		if _, err := b.pyroCmd(ctx, nil, "--version"); err != nil {
			return err
		}
		version = append(version, time.Since(t))
		t = time.Now()
		if _, err := b.pyroCmd(ctx, nil, "workspace", "exec", id, "--", "true"); err != nil {
			return err
		}
		cli = append(cli, time.Since(t))
		// The same with the engine's debug line, kept apart from the
		// figure: the CLI's engine steps.
		d, err := steps.fromCLI(b.pyro, id)
		if err != nil {
			return err
		}
		debugged = append(debugged, d)
	}
	cliSteps := steps.take(debugged)
	for _, ds := range [][]time.Duration{ping, bare, flushed, viaSDK, version, cli} {
		slices.Sort(ds)
	}
	p50 := func(ds []time.Duration) time.Duration { return pct(ds, .5) }
	sdk50, cli50, start50 := p50(viaSDK), p50(cli), p50(version)
	r.line("- workspace exec of `true`: **Go SDK p50 %s** (p95 %s, %d calls; target ≤ 20 ms: **%.2f×**), **CLI p50 %s** (p95 %s, %d calls, a pyro process each; target ≤ 30 ms: **%.2f×**); beside them a protocol ping p50 %s and `pyro --version` p50 %s\n",
		ms(sdk50), ms(pct(viaSDK, .95)), b.n, float64(sdk50)/float64(20*time.Millisecond), ms(cli50), ms(pct(cli, .95)), nCLI,
		float64(cli50)/float64(30*time.Millisecond), ms(p50(ping)), ms(start50))
	r.line("\n| step (p50; by difference where it says less) | Go SDK | CLI |\n|---|---|---|\n")
	r.line("| starting the pyro binary (`pyro --version`) | | %s |\n", ms(start50))
	r.line("| engine: finding the workspace, numbering the command (one record read and write) | %s | %s |\n", ms(sdkSteps.p50("prepare")), ms(cliSteps.p50("prepare")))
	r.line("| protocol: a ping through the supervisor | %s | |\n", ms(p50(ping)))
	r.line("| guest: fork/exec of `true` (an exec without a flush, less the ping) | %s | |\n", ms(p50(bare)-p50(ping)))
	r.line("| guest: flush (`syncfs` of its disks; with, less without) | %s | |\n", ms(p50(flushed)-p50(bare)))
	r.line("| engine: the exec's connection and request (its run, less the flushed exec) | %s | %s |\n",
		ms(sdkSteps.p50("run")-p50(flushed)), ms(cliSteps.p50("run")-p50(flushed)))
	r.line("| engine: the history entry (one `fdatasync`'d append) | %s | %s |\n", ms(sdkSteps.p50("log")), ms(cliSteps.p50("log")))
	r.line("| around the engine's steps, call by call (CLI: less `pyro --version`: opening the engine, output, exit) | %s | %s |\n",
		ms(sdkSteps.p50("around")), ms(cliSteps.p50("around")-start50))
	r.line("| **total** | **%s** | **%s** |\n\n", ms(sdk50), ms(cli50))
	return nil
}

// execSteps collects the engine's ExecTimings lines, in order, from the
// bench's own engine (as an slog.Handler) or a pyro process's stderr.
type execSteps struct {
	mu    sync.Mutex
	lines []map[string]time.Duration
}

func (s *execSteps) Enabled(context.Context, slog.Level) bool { return true }
func (s *execSteps) WithAttrs([]slog.Attr) slog.Handler       { return s }
func (s *execSteps) WithGroup(string) slog.Handler            { return s }

func (s *execSteps) Handle(_ context.Context, rec slog.Record) error {
	if rec.Message != engine.ExecTimings {
		return nil
	}
	line := map[string]time.Duration{}
	rec.Attrs(func(a slog.Attr) bool {
		if a.Value.Kind() == slog.KindDuration {
			line[a.Key] = a.Value.Duration()
		}
		return true
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, line)
	return nil
}

// fromCLI runs `pyro workspace exec ID -- true` with the debug log, takes
// its timings line and returns how long the process took.
func (s *execSteps) fromCLI(pyroBin, id string) (time.Duration, error) {
	t := time.Now()
	out, err := exec.Command(pyroBin, "--log-level", "debug", "workspace", "exec", id, "--", "true").CombinedOutput()
	took := time.Since(t)
	if err != nil {
		return 0, fmt.Errorf("pyro workspace exec: %v: %s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if !strings.Contains(l, engine.ExecTimings) {
			continue
		}
		line := map[string]time.Duration{}
		for _, f := range strings.Fields(l) {
			k, v, ok := strings.Cut(f, "=")
			if d, err := time.ParseDuration(v); ok && err == nil {
				line[k] = d
			}
		}
		s.mu.Lock()
		s.lines = append(s.lines, line)
		s.mu.Unlock()
		return took, nil
	}
	return 0, fmt.Errorf("no %q line from pyro workspace exec --log-level debug: %s", engine.ExecTimings, out)
}

// take returns the steps collected, with "around" (each call's total,
// from totals in the same order, less its steps), and starts again.
func (s *execSteps) take(totals []time.Duration) stepTimes {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := stepTimes{}
	for i, line := range s.lines {
		around := time.Duration(0)
		if i < len(totals) {
			around = totals[i]
		}
		for k, d := range line {
			out[k] = append(out[k], d)
			around -= d
		}
		if i < len(totals) {
			out["around"] = append(out["around"], around)
		}
	}
	for _, ds := range out {
		slices.Sort(ds)
	}
	s.lines = nil
	return out
}

// stepTimes are the sorted durations of each step.
type stepTimes map[string][]time.Duration

func (st stepTimes) p50(step string) time.Duration { return pct(st[step], .5) }
