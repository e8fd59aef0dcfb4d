package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro/internal/aptsource"
	"github.com/pyro-mcp/pyro/internal/catalog"
)

// The peer (issue 18): gVisor (runsc) through podman, both Debian
// packages, running a Debian 12 root made with mmdebstrap from the same
// mirror and package set as pyro's debian:12-base.
const (
	peerImage = "localhost/pyro-bench-debian12:latest"
	peerEnv   = "debian:12-base"
	peerN     = 10
	// peerIdleFor is how long the idle CPU of the sleeping container and
	// the idle workspace is sampled.
	peerIdleFor = 20 * time.Second
)

// podmanGlobal are podman's own flags: this host has no systemd (cgroupfs,
// events to a file), and podman's defaults for those say so already on
// Debian, but a host whose containers.conf says otherwise would fail.
var podmanGlobal = []string{"--cgroup-manager=cgroupfs", "--events-backend=file"}

// peerRuntime are the flags that make runsc work in this sandbox (see
// bench/README.md): the command plus nothing else, kept in one
// place so that the README and the suite agree.
var peerRuntime = []string{"--runtime=runsc", "--runtime-flag=network=none"}

// peerSuite measures, in one run and interleaved (so that the host's load
// hits all alike), a one-shot `true` in a gVisor container against a warm
// and a cold `pyro run`, and an exec of `true` in a running container
// against `pyro workspace exec`.
func (b *benchEnv) peerSuite(ctx context.Context) error {
	r := b.report
	r.line("\n## The peer: gVisor through podman (issue 18)\n\n")
	if msg := peerMissing(); msg != "" {
		r.line("- skipped: %s\n", msg)
		return nil
	}
	if err := b.peerImage(ctx); err != nil {
		return err
	}
	if _, err := b.pyroCmd(ctx, nil, "env", "pull", peerEnv); err != nil {
		return err
	}
	if _, err := b.pyroCmd(ctx, nil, "prepare", peerEnv); err != nil {
		return err
	}
	r.line("- %s; %s, %s; runsc flags: %s\n", loadavg(), version("podman", "--version"), version("runsc", "--version"), strings.Join(peerRuntime, " "))

	podmanRun := append(append(slices.Clone(podmanGlobal), "run", "--rm", "--network=none"), peerRuntime...)
	podmanRun = append(podmanRun, peerImage, "true")
	var gv, warm, cold, warmBoot, coldBoot []time.Duration
	for i := 0; i < peerN; i++ {
		for _, step := range []struct {
			into *[]time.Duration
			f    func() error
		}{
			{&gv, func() error { return run(ctx, "podman", podmanRun...) }},
			{&warm, func() error {
				return b.runStart(ctx, "warm", &warmBoot, "run", peerEnv, "--json", "--", "true")
			}},
			{&cold, func() error {
				return b.runStart(ctx, "cold", &coldBoot, "run", peerEnv, "--cold", "--json", "--", "true")
			}},
		} {
			d, err := timeIt(1, step.f)
			if err != nil {
				return err
			}
			*step.into = append(*step.into, d...)
		}
	}
	for _, ds := range [][]time.Duration{gv, warm, cold, warmBoot, coldBoot} {
		slices.Sort(ds)
	}
	r.line("- one-shot `true`, median of %d each, interleaved: **podman+runsc %s**, **pyro run warm %s**, pyro run cold (`--cold`) %s; "+
		"**warm/podman = %.2f** (target ≤ 1), cold/podman = %.2f\n",
		peerN, ms(pct(gv, .5)), ms(pct(warm, .5)), ms(pct(cold, .5)), medianRatio(warm, gv), medianRatio(cold, gv))
	r.line("  - pyro's `boot_ms` (VMM start to ready, after the wait for a host-wide boot slot), median: warm %s, cold %s\n",
		ms(pct(warmBoot, .5)), ms(pct(coldBoot, .5)))
	r.line("  - `podman %s`\n  - `pyro run %s -- true`, `pyro run %s --cold -- true`\n", strings.Join(podmanRun, " "), peerEnv, peerEnv)
	r.line("- %s\n", loadavg())
	return b.peerExec(ctx)
}

// peerExec times `podman exec` of `true` into a running gVisor container
// against `pyro workspace exec ID -- true`: a new client process each.
func (b *benchEnv) peerExec(ctx context.Context) error {
	r := b.report
	name := fmt.Sprintf("pyro-bench-peer-%d", os.Getpid())
	start := append(append(slices.Clone(podmanGlobal), "run", "-d", "--name", name, "--network=none"), peerRuntime...)
	if err := run(ctx, "podman", append(start, peerImage, "sleep", "infinity")...); err != nil {
		return err
	}
	defer run(context.WithoutCancel(ctx), "podman", append(slices.Clone(podmanGlobal), "rm", "-f", "-t", "0", name)...)
	out, err := b.pyroCmd(ctx, nil, "workspace", "create", peerEnv, "--json")
	if err != nil {
		return err
	}
	id := jsonString(out, "workspace_id")
	defer b.pyroCmd(context.WithoutCancel(ctx), nil, "workspace", "delete", id)

	podmanExec := append(slices.Clone(podmanGlobal), "exec", name, "true")
	var gv, ws []time.Duration
	for i := 0; i < peerN; i++ {
		d, err := timeIt(1, func() error { return run(ctx, "podman", podmanExec...) })
		if err != nil {
			return err
		}
		gv = append(gv, d...)
		if d, err = timeIt(1, func() error {
			_, err := b.pyroCmd(ctx, nil, "workspace", "exec", id, "--", "true")
			return err
		}); err != nil {
			return err
		}
		ws = append(ws, d...)
	}
	slices.Sort(gv)
	slices.Sort(ws)
	r.line("- exec of `true` into a running sandbox, median of %d each, interleaved: **podman exec (runsc) %s**, **pyro workspace exec %s**; **pyro/podman = %.2f** (target < 1)\n",
		peerN, ms(pct(gv, .5)), ms(pct(ws, .5)), medianRatio(ws, gv))
	return b.peerIdle(ctx, name, id)
}

// peerIdle compares what the sleeping gVisor container and the idle
// workspace cost the host, side by side: memory and CPU over peerIdle of
// every process each runs (conmon and its descendants: runsc's sandbox,
// gofer and ptrace stubs; pyro's supervisor and its descendants: QEMU).
func (b *benchEnv) peerIdle(ctx context.Context, name, id string) error {
	out, err := exec.CommandContext(ctx, "podman", append(slices.Clone(podmanGlobal), "inspect", "--format", "{{.State.ConmonPid}}", name)...).Output()
	if err != nil {
		return fmt.Errorf("podman inspect %s: %v", name, err)
	}
	conmon, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	sup, err := b.supervisorPID(id)
	if err != nil {
		return err
	}
	gvPids, wsPids := processTree(conmon), processTree(sup)
	if len(gvPids) == 0 || len(wsPids) == 0 {
		return fmt.Errorf("no process found for the container (conmon %d) or the workspace (supervisor %d)", conmon, sup)
	}
	gvT, wsT, t := treeTicks(gvPids), treeTicks(wsPids), time.Now()
	select {
	case <-time.After(peerIdleFor):
	case <-ctx.Done():
		return ctx.Err()
	}
	secs := time.Since(t).Seconds()
	gvCPU := 100 * float64(treeTicks(gvPids)-gvT) / clkTck / secs
	wsCPU := 100 * float64(treeTicks(wsPids)-wsT) / clkTck / secs
	gvPSS, gvRSS := treeMem(gvPids)
	wsPSS, wsRSS := treeMem(wsPids)
	r := b.report
	r.line("- idle, after those execs, everything each runs on the host: **sleeping gVisor container PSS %d MiB** (RSS %d MiB, %d processes, CPU %.2f%% of one CPU over %.0f s); "+
		"**idle workspace PSS %d MiB** (RSS %d MiB, %d processes, CPU %.2f%%); workspace/gVisor PSS = %.1f (the only workspace on its template: it shares no page of the memory file; the density suite shares them)\n",
		gvPSS/1024, gvRSS/1024, len(gvPids), gvCPU, secs, wsPSS/1024, wsRSS/1024, len(wsPids), wsCPU, float64(wsPSS)/float64(max(gvPSS, 1)))
	r.line("- %s\n", loadavg())
	return nil
}

// peerMissing says what is missing to run the peer suite, or "".
func peerMissing() string {
	var missing []string
	for _, t := range []string{"podman", "runsc", "mmdebstrap"} {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) == 0 {
		return ""
	}
	return strings.Join(missing, ", ") + " not installed: run scripts/peer-setup.sh (as root; Debian packages podman, runsc, mmdebstrap)"
}

// peerImage makes the peer's image unless podman has it: a tarball of
// Debian 12 made by mmdebstrap (the variant and packages of pyro's
// debian:12-base, from the host apt's mirror), imported into podman.
func (b *benchEnv) peerImage(ctx context.Context) error {
	if msg := peerMissing(); msg != "" {
		return fmt.Errorf("%s", msg)
	}
	if exec.CommandContext(ctx, "podman", append(slices.Clone(podmanGlobal), "image", "exists", peerImage)...).Run() == nil {
		return nil
	}
	entry, err := catalog.Lookup(peerEnv)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "pyro-bench-peer-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	tarball := filepath.Join(dir, "rootfs.tar")
	args := []string{"--mode=auto", "--variant=" + entry.Variant, "--include=" + strings.Join(entry.Packages, ","), catalog.Suite, tarball}
	if m := aptsource.Mirror("", catalog.Suite); m != "" {
		args = append(args, m)
	}
	t := time.Now()
	fmt.Fprintf(os.Stderr, "peer: building %s with mmdebstrap (about a minute)\n", peerImage)
	if err := run(ctx, "mmdebstrap", args...); err != nil {
		return err
	}
	if err := run(ctx, "podman", append(slices.Clone(podmanGlobal), "import", tarball, peerImage)...); err != nil {
		return err
	}
	fi, _ := os.Stat(tarball)
	b.report.line("- peer image %s built (mmdebstrap %s %s, %s) and imported in %.0f s\n",
		peerImage, entry.Variant, strings.Join(entry.Packages, ","), fmtMB(fi), time.Since(t).Seconds())
	return nil
}

func fmtMB(fi os.FileInfo) string {
	if fi == nil {
		return "size unknown"
	}
	return fmt.Sprintf("%d MB", fi.Size()/1_000_000)
}

// run runs a command and returns its error with the end of its output.
func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		s := strings.TrimSpace(string(out))
		if len(s) > 2000 {
			s = "…" + s[len(s)-2000:]
		}
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, s)
	}
	return nil
}

// version is the first line a tool prints for its version flag.
func version(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return name + " (version unknown)"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}
