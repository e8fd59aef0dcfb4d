package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/engine"
)

// workspaceSuite: exec round trips (CLI and in-process), sync push against
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
	inproc, err := timeIt(b.n, func() error {
		_, err := e.ExecWorkspace(ctx, ws.WorkspaceID, api.ExecOptions{Argv: []string{"true"}})
		return err
	})
	if err != nil {
		return err
	}
	cli, err := timeIt(30, func() error {
		_, err := b.pyroCmd(ctx, nil, "workspace", "exec", ws.WorkspaceID, "--", "true")
		return err
	})
	if err != nil {
		return err
	}
	r.line("- exec `true` in a running workspace, in-process through the engine (%d calls): p50 %s, p95 %s\n", b.n, ms(pct(inproc, .5)), ms(pct(inproc, .95)))
	r.line("- the same through the CLI (a new pyro process each, 30 calls): p50 %s, p95 %s\n", ms(pct(cli, .5)), ms(pct(cli, .95)))

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
