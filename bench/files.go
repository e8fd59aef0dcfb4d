package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro"
	"github.com/pyro-mcp/pyro/internal/agentproto"
)

// filesSuite (issue 15): 4 KiB file read and write through the Go SDK
// against exec of `true`; an export of the mixed tree against the raw
// guest-to-host channel; a diff of a 10,000-file workspace with 10 changed
// files against `git diff --no-index --stat` of the same trees on the host.
func (b *benchEnv) filesSuite(ctx context.Context) error {
	r := b.report
	r.line("\n## Files in and out (issue 15)\n\n")
	r.line("- load average before: %s\n", loadAvg())
	c, err := pyro.New(nil)
	if err != nil {
		return err
	}
	ws, err := c.CreateWorkspace(ctx, pyro.CreateWorkspaceOptions{Environment: "debian:12"})
	if err != nil {
		return err
	}
	defer c.DeleteWorkspace(context.WithoutCancel(ctx), ws.WorkspaceID)
	id := ws.WorkspaceID

	// Interleaved, so that the machine's noise hits all three alike.
	page := bytes.Repeat([]byte("0123456789abcdef"), 256) // 4 KiB
	var execD, writeD, readD []time.Duration
	for i := 0; i < b.n; i++ {
		t := time.Now()
		if _, err := c.ExecWorkspace(ctx, id, pyro.ExecOptions{Argv: []string{"true"}}); err != nil {
			return err
		}
		execD = append(execD, time.Since(t))
		t = time.Now()
		if _, err := c.WriteWorkspaceFile(ctx, id, "page.txt", bytes.NewReader(page), nil); err != nil {
			return err
		}
		writeD = append(writeD, time.Since(t))
		t = time.Now()
		if _, err := c.ReadWorkspaceFile(ctx, id, "page.txt", 0); err != nil {
			return err
		}
		readD = append(readD, time.Since(t))
	}
	for _, ds := range [][]time.Duration{execD, writeD, readD} {
		sortDurations(ds)
	}
	ex := pct(execD, .5)
	r.line("- 4 KiB through the Go SDK, %d of each, interleaved: exec `true` p50 %s; file write p50 %s (**%.2f×** exec); file read p50 %s (**%.2f×** exec)\n",
		b.n, ms(ex), ms(pct(writeD, .5)), ratio(pct(writeD, .5), ex), ms(pct(readD, .5)), ratio(pct(readD, .5), ex))

	// The raw guest-to-host channel: 100 MiB of exec stdout.
	const raw = 100 << 20
	ac, err := dialVM(ctx, id)
	if err != nil {
		return err
	}
	t := time.Now()
	res, err := ac.Exec(ctx, agentproto.ExecRequest{Argv: []string{"head", "-c", fmt.Sprint(raw), "/dev/zero"}, MaxOutput: raw + 1, TimeoutMs: 600000},
		nil, io.Discard, io.Discard)
	ac.Close()
	if err != nil {
		return err
	}
	rawD := time.Since(t)
	if res.ExitCode != 0 {
		return fmt.Errorf("raw channel: head exited %d", res.ExitCode)
	}
	// And the other way, the workspace suite's reference: 100 MiB of stdin.
	if ac, err = dialVM(ctx, id); err != nil {
		return err
	}
	t = time.Now()
	if _, err := ac.Exec(ctx, agentproto.ExecRequest{Argv: []string{"sh", "-c", "cat > /dev/null"}, Stdin: true, TimeoutMs: 600000},
		io.LimitReader(zeroReader{}, raw), io.Discard, io.Discard); err != nil {
		ac.Close()
		return err
	}
	ac.Close()
	inD := time.Since(t)
	tree := filepath.Join(b.work, "tree-files")
	size, files := makeTree(tree, 100<<20)
	if _, err := c.PushWorkspaceSync(ctx, id, tree, &pyro.PushOptions{Dest: "/workspace/tree"}); err != nil {
		return err
	}
	out := filepath.Join(b.work, "exported")
	t = time.Now()
	xr, err := c.ExportWorkspace(ctx, id, "tree", out, nil)
	if err != nil {
		return err
	}
	exD := time.Since(t)
	if diff, err := exec.CommandContext(ctx, "diff", "-rq", tree, out).CombinedOutput(); err != nil {
		return fmt.Errorf("the export differs from the tree: %v %s", err, diff)
	}
	// One 100 MiB file of the tree's kind, read back as a stream: the channel as the file methods use it.
	if _, err := c.ExecWorkspace(ctx, id, pyro.ExecOptions{Command: "head -c 104857600 /dev/urandom > big.bin", TimeoutSeconds: 600}); err != nil {
		return err
	}
	t = time.Now()
	if _, err := c.StreamWorkspaceFile(ctx, id, "big.bin", io.Discard, raw); err != nil {
		return err
	}
	streamD := time.Since(t)
	r.line("- raw channel, 100 MiB: host→guest (exec stdin) %.0f MB/s; guest→host (exec stdout) %.0f MB/s; a 100 MiB file streamed out (`StreamWorkspaceFile`) %.0f MB/s\n",
		mbps(raw, inD), mbps(raw, rawD), mbps(raw, streamD))
	r.line("- export of the %d MB tree of %d mixed-size files (%d entries) to a host directory: %.2f s = %.0f MB/s; **%.0f%% of the raw guest→host channel**, %.0f%% of the host→guest one (target ≥ 50%%)\n",
		size/1e6, files, xr.Entries, exD.Seconds(), mbps(size, exD), 100*mbps(size, exD)/mbps(raw, rawD), 100*mbps(size, exD)/mbps(raw, inD))
	os.RemoveAll(out)

	// A diff of 10,000 files, 10 of them changed.
	seed := filepath.Join(b.work, "diff10k")
	makeSmallFiles(seed, 10000)
	dws, err := c.CreateWorkspace(ctx, pyro.CreateWorkspaceOptions{Environment: "debian:12", SeedPath: seed})
	if err != nil {
		return err
	}
	defer c.DeleteWorkspace(context.WithoutCancel(ctx), dws.WorkspaceID)
	changed := filepath.Join(b.work, "diff10k-changed")
	if out, err := exec.CommandContext(ctx, "cp", "-a", seed, changed).CombinedOutput(); err != nil {
		return fmt.Errorf("cp: %v %s", err, out)
	}
	var script strings.Builder
	for i := 0; i < 10; i++ {
		rel := fmt.Sprintf("pkg%03d/file%05d.go", i*10, i*1000)
		fmt.Fprintf(&script, "echo changed >> %s; ", rel)
		f, err := os.OpenFile(filepath.Join(changed, rel), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		f.WriteString("changed\n")
		f.Close()
	}
	if _, err := c.ExecWorkspace(ctx, dws.WorkspaceID, pyro.ExecOptions{Command: script.String()}); err != nil {
		return err
	}
	var diffD, gitD []time.Duration
	count := 0
	for i := 0; i < max(3, b.n/20); i++ {
		t := time.Now()
		d, err := c.DiffWorkspace(ctx, dws.WorkspaceID, nil)
		if err != nil {
			return err
		}
		diffD = append(diffD, time.Since(t))
		count = d.Count
		t = time.Now()
		cmd := exec.CommandContext(ctx, "git", "diff", "--no-index", "--stat", seed, changed)
		cmd.Stdout = io.Discard
		if err := cmd.Run(); err != nil && cmd.ProcessState.ExitCode() != 1 {
			return fmt.Errorf("git diff: %v", err)
		}
		gitD = append(gitD, time.Since(t))
	}
	sortDurations(diffD)
	sortDurations(gitD)
	r.line("- diff of a 10,000-file workspace with 10 changed files (%d entries), median of %d: %s (target < 1 s under TCG); `git diff --no-index --stat` of the same trees on the host: %s; **ratio %.1f×**\n",
		count, len(diffD), ms(pct(diffD, .5)), ms(pct(gitD, .5)), ratio(pct(diffD, .5), pct(gitD, .5)))
	r.line("- load average after: %s\n", loadAvg())
	return nil
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

func sortDurations(ds []time.Duration) { slices.Sort(ds) }

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
