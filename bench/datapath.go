package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"syscall"
	"time"

	"github.com/pyro-mcp/pyro"
	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/agent"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/benchprof"
	"github.com/pyro-mcp/pyro/internal/engine"
)

// chanBytes is what each channel figure moves, per round.
const chanBytes = 100 << 20

// chanRounds is how many rounds each channel figure takes the median of.
const chanRounds = 3

// datapathSuite measures issue 19's channel, sync and exec figures, each
// beside its bound from the same run: bare virtio-serial (a guest that
// only copies its port to /dev/null, or zeros to it) for pyro's channel,
// pyro's channel for sync push, the steps of a workspace exec, and a
// 10,000-file seed against a plain tar of its tree.
func (b *benchEnv) datapathSuite(ctx context.Context) error {
	r := b.report
	r.line("\n## Data path (issue 19)\n\n")
	const env = "debian:12"
	if _, err := b.pyroCmd(ctx, nil, "env", "pull", env); err != nil {
		return err
	}
	bare, err := b.bareChannel(ctx, env)
	if err != nil {
		return err
	}
	b.enableProfiles()
	e, err := engine.New(engine.Options{})
	if err != nil {
		return err
	}
	ws, err := e.CreateWorkspace(ctx, api.CreateWorkspaceOptions{Environment: env})
	if err != nil {
		return err
	}
	defer e.DeleteWorkspace(context.WithoutCancel(ctx), ws.WorkspaceID)
	c, err := dialVM(ctx, ws.WorkspaceID)
	if err != nil {
		return err
	}
	defer c.Close()
	prof, err := b.newProfiler(c, ws.WorkspaceID)
	if err != nil {
		return err
	}
	toGuest := func() error {
		var stderr bytes.Buffer
		res, err := c.Exec(ctx, agentproto.ExecRequest{Argv: []string{"sh", "-c", "cat > /dev/null"}, TimeoutMs: 600000},
			io.LimitReader(zeroReader{}, chanBytes), io.Discard, &stderr)
		if err == nil && res.ExitCode != 0 {
			return fmt.Errorf("cat exited %d: %s", res.ExitCode, stderr.String())
		}
		return err
	}
	fromGuest := func() error {
		cw := &countingDiscard{}
		// dd writes 1 MiB at a time, as the bare guest does: the figure is
		// the channel's, not a small-write producer's.
		res, err := c.Exec(ctx, agentproto.ExecRequest{Argv: []string{"dd", "if=/dev/zero", "bs=1M", fmt.Sprintf("count=%d", chanBytes>>20), "status=none"},
			TimeoutMs: 600000, MaxOutput: chanBytes + 1}, nil, cw, io.Discard)
		if err == nil && cw.n != chanBytes {
			err = fmt.Errorf("guest→host: got %d bytes, want %d", cw.n, chanBytes)
		}
		return execErr("dd", res, err)
	}
	in, err := medianOf(chanRounds, timed(toGuest))
	if err != nil {
		return err
	}
	out, err := medianOf(chanRounds, timed(fromGuest))
	if err != nil {
		return err
	}
	if err := prof.run(ctx, "to-guest", toGuest); err != nil {
		return err
	}
	if err := prof.run(ctx, "from-guest", fromGuest); err != nil {
		return err
	}
	inMB, outMB := mbps(chanBytes, in), mbps(chanBytes, out)
	bareInMB, bareOutMB := mbps(chanBytes, bare.in), mbps(chanBytes, bare.out)
	r.line("- channel host→guest (%d MiB of exec stdin into `cat > /dev/null`, median of %d): **%.0f MB/s**; bare virtio-serial (a guest copying its port to /dev/null): %.0f MB/s; **ratio %.2f** (target ≥ 0.60)\n",
		chanBytes>>20, chanRounds, inMB, bareInMB, inMB/bareInMB)
	r.line("- channel guest→host (%d MiB of `dd if=/dev/zero bs=1M` as exec stdout, median of %d): **%.0f MB/s**; bare virtio-serial (a guest writing zeros to its port): %.0f MB/s; **ratio %.2f** (target ≥ 0.60)\n",
		chanBytes>>20, chanRounds, outMB, bareOutMB, outMB/bareOutMB)

	tree := filepath.Join(b.work, "tree100")
	size, files := makeTree(tree, 100<<20)
	t := time.Now()
	sr, err := e.PushWorkspaceSync(ctx, ws.WorkspaceID, tree, "/workspace/bench")
	if err != nil {
		return err
	}
	syncD := time.Since(t)
	if err := prof.run(ctx, "sync", func() error {
		_, err := e.PushWorkspaceSync(ctx, ws.WorkspaceID, tree, "/workspace/bench-profiled")
		return err
	}); err != nil {
		return err
	}
	r.line("- sync push of a %d MB tree of %d mixed-size files: %.2f s = **%.0f MB/s**; pyro's host→guest channel: %.0f MB/s; **ratio %.2f** (target ≥ 0.70); %d entries\n",
		size/1e6, files, syncD.Seconds(), mbps(size, syncD), inMB, mbps(size, syncD)/inMB, sr.Entries)

	if err := b.execBreakdown(ctx, e, c, ws.WorkspaceID, bare.rtt); err != nil {
		return err
	}
	if err := b.seedFigure(ctx, e); err != nil {
		return err
	}
	return prof.run(ctx, "exec", func() error {
		for i := 0; i < 50; i++ {
			if _, err := e.ExecWorkspace(ctx, ws.WorkspaceID, api.ExecOptions{Argv: []string{"true"}}); err != nil {
				return err
			}
		}
		return nil
	})
}

// execBreakdown splits a workspace exec of `true` into its steps by
// difference: the protocol (a ping through the supervisor), the guest's
// fork/exec (an exec without a flush), the flush, and the engine's own
// work (connecting, numbering, logging).
func (b *benchEnv) execBreakdown(ctx context.Context, e *engine.Engine, c *agentproto.Client, id string, bareRTT time.Duration) error {
	r := b.report
	n := b.n
	ping, err := timeIt(n, func() error { _, err := c.Ping(ctx); return err })
	if err != nil {
		return err
	}
	run := func(sync bool) func() error {
		return func() error {
			res, err := c.Exec(ctx, agentproto.ExecRequest{Argv: []string{"true"}, Cwd: api.WorkspaceRoot, Sync: sync}, nil, io.Discard, io.Discard)
			return execErr("true", res, err)
		}
	}
	noFlush, err := timeIt(n, run(false))
	if err != nil {
		return err
	}
	flushed, err := timeIt(n, run(true))
	if err != nil {
		return err
	}
	dial, err := timeIt(n, func() error {
		c, err := dialVM(ctx, id)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err != nil {
		return err
	}
	eng, err := timeIt(n, func() error {
		_, err := e.ExecWorkspace(ctx, id, api.ExecOptions{Argv: []string{"true"}})
		return err
	})
	if err != nil {
		return err
	}
	sdk, err := pyro.New(nil)
	if err != nil {
		return err
	}
	viaSDK, err := timeIt(n, func() error {
		_, err := sdk.ExecWorkspace(ctx, id, pyro.ExecOptions{Argv: []string{"true"}})
		return err
	})
	if err != nil {
		return err
	}
	cli, err := timeIt(30, func() error {
		_, err := b.pyroCmd(ctx, nil, "workspace", "exec", id, "--", "true")
		return err
	})
	if err != nil {
		return err
	}
	start, err := timeIt(30, func() error {
		_, err := b.pyroCmd(ctx, nil, "--version")
		return err
	})
	if err != nil {
		return err
	}
	p50 := func(ds []time.Duration) time.Duration { return pct(ds, .5) }
	r.line("- workspace exec of `true`, p50: **Go SDK %s** (%d calls, target ≤ 20 ms), **CLI %s** (30 calls, a pyro process each, target ≤ 30 ms), of which starting the pyro binary (`pyro --version`, p50 of 30) is %s; p95: SDK %s, CLI %s\n",
		ms(p50(viaSDK)), n, ms(p50(cli)), ms(p50(start)), ms(pct(viaSDK, .95)), ms(pct(cli, .95)))
	r.line("- its steps (p50 of %d each, by difference): protocol (a ping through the supervisor) %s, where bare virtio-serial's round trip is %s; guest fork/exec and output pipes %s; guest flush (syncfs) %s; engine: connect and handshake %s, record and log write %s\n",
		n, ms(p50(ping)), ms(bareRTT), ms(p50(noFlush)-p50(ping)), ms(p50(flushed)-p50(noFlush)), ms(p50(dial)), ms(p50(eng)-p50(flushed)-p50(dial)))
	return nil
}

func execErr(what string, res *agentproto.ExecResult, err error) error {
	if err == nil && res.ExitCode != 0 {
		err = fmt.Errorf("%s exited %d: %s", what, res.ExitCode, res.Message)
	}
	return err
}

// timed turns f into a timed run for medianOf.
func timed(f func() error) func() (time.Duration, error) {
	return func() (time.Duration, error) {
		t := time.Now()
		err := f()
		return time.Since(t), err
	}
}

// medianOf runs f n times and returns the median duration.
func medianOf(n int, f func() (time.Duration, error)) (time.Duration, error) {
	var ds []time.Duration
	for i := 0; i < n; i++ {
		d, err := f()
		if err != nil {
			return 0, err
		}
		ds = append(ds, d)
	}
	slices.Sort(ds)
	return ds[len(ds)/2], nil
}

type countingDiscard struct{ n int64 }

func (c *countingDiscard) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// bareFigures are the bounds bare virtio-serial gives: the median times of
// chanBytes each way, and of a one-byte round trip.
type bareFigures struct{ in, out, rtt time.Duration }

// bareChannel boots env's kernel with pyro's initramfs told to serve bench
// channel commands (agent.BenchChannelArg) and measures bareFigures.
func (b *benchEnv) bareChannel(ctx context.Context, env string) (bf bareFigures, err error) {
	qb, spec, err := b.rawMachine(ctx, env, "bare", agent.BenchChannelArg)
	if err != nil {
		return bf, err
	}
	bootCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	m, err := qb.Start(bootCtx, spec)
	if err != nil {
		return bf, err
	}
	defer m.Kill()
	conn, err := m.AgentConn(bootCtx)
	if err != nil {
		return bf, err
	}
	defer conn.Close()
	cmd := func(op byte, n int64) error {
		var hdr [9]byte
		hdr[0] = op
		binary.BigEndian.PutUint64(hdr[1:], uint64(n))
		_, err := conn.Write(hdr[:])
		return err
	}
	// The first command waits for the guest to boot: time a small one first.
	if err := cmd(agent.BenchSink, 1); err != nil {
		return bf, err
	}
	if _, err := conn.Write([]byte{0}); err != nil {
		return bf, err
	}
	var ack [1]byte
	if _, err := io.ReadFull(conn, ack[:]); err != nil {
		return bf, fmt.Errorf("bare channel guest did not answer: %w (see %s)", err, spec.Console)
	}
	rtts, err := timeIt(b.n, func() error {
		if err := cmd(agent.BenchSink, 1); err != nil {
			return err
		}
		if _, err := conn.Write([]byte{0}); err != nil {
			return err
		}
		_, err := io.ReadFull(conn, ack[:])
		return err
	})
	if err != nil {
		return bf, err
	}
	bf.rtt = pct(rtts, .5)
	buf := make([]byte, 1<<20)
	bf.in, err = medianOf(chanRounds, func() (time.Duration, error) {
		t := time.Now()
		if err := cmd(agent.BenchSink, chanBytes); err != nil {
			return 0, err
		}
		for left := int64(chanBytes); left > 0; {
			k := min(left, int64(len(buf)))
			if _, err := conn.Write(buf[:k]); err != nil {
				return 0, err
			}
			left -= k
		}
		_, err := io.ReadFull(conn, ack[:])
		return time.Since(t), err
	})
	if err != nil {
		return bf, err
	}
	bf.out, err = medianOf(chanRounds, func() (time.Duration, error) {
		t := time.Now()
		if err := cmd(agent.BenchSource, chanBytes); err != nil {
			return 0, err
		}
		for left := int64(chanBytes); left > 0; {
			k, err := conn.Read(buf[:min(left, int64(len(buf)))])
			if err != nil {
				return 0, err
			}
			left -= int64(k)
		}
		return time.Since(t), nil
	})
	return bf, err
}

// profiler takes CPU profiles of the three processes on the data path (this
// one, the workspace's supervisor and its guest agent) around a workload,
// when bench runs with -profile.
type profiler struct {
	dir    string // where the profiles go; "" when not profiling
	c      *agentproto.Client
	supPid int
	supOut string
}

// enableProfiles asks the workspaces created next to serve profiles.
func (b *benchEnv) enableProfiles() {
	if b.profile != "" {
		os.Setenv("PYRO_BENCH_GUEST_ARGS", agent.BenchProfileArg)
		os.Setenv(benchprof.EnvVar, "1")
	}
}

func (b *benchEnv) newProfiler(c *agentproto.Client, id string) (*profiler, error) {
	if b.profile == "" {
		return &profiler{}, nil
	}
	dir := filepath.Join(b.stateDir, "workspaces", id)
	data, err := os.ReadFile(filepath.Join(dir, "record.json"))
	if err != nil {
		return nil, err
	}
	var rec struct {
		SupervisorPID int `json:"supervisor_pid"`
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(b.profile, 0o755); err != nil {
		return nil, err
	}
	return &profiler{dir: b.profile, c: c, supPid: rec.SupervisorPID, supOut: filepath.Join(dir, engine.SupervisorProfile)}, nil
}

// run runs f once under the three profilers, writing NAME-client.pprof,
// NAME-supervisor.pprof and NAME-guest.pprof.
func (p *profiler) run(ctx context.Context, name string, f func() error) error {
	if p.dir == "" {
		return nil
	}
	guest := func(sig string) error {
		res, err := p.c.Exec(ctx, agentproto.ExecRequest{Argv: []string{"kill", "-" + sig, "1"}}, nil, io.Discard, io.Discard)
		return execErr("kill", res, err)
	}
	cf, err := os.Create(filepath.Join(p.dir, name+"-client.pprof"))
	if err != nil {
		return err
	}
	defer cf.Close()
	os.Remove(p.supOut)
	if err := guest("USR1"); err != nil {
		return err
	}
	syscall.Kill(p.supPid, syscall.SIGUSR1)
	pprof.StartCPUProfile(cf)
	ferr := f()
	pprof.StopCPUProfile()
	syscall.Kill(p.supPid, syscall.SIGUSR2)
	if err := guest("USR2"); err != nil {
		return err
	}
	var gp bytes.Buffer
	time.Sleep(200 * time.Millisecond) // the profilers write asynchronously
	res, err := p.c.Exec(ctx, agentproto.ExecRequest{Argv: []string{"cat", agent.BenchProfilePath}, MaxOutput: 64 << 20}, nil, &gp, io.Discard)
	if err := execErr("cat", res, err); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(p.dir, name+"-guest.pprof"), gp.Bytes(), 0o644); err != nil {
		return err
	}
	if data, err := os.ReadFile(p.supOut); err == nil {
		os.WriteFile(filepath.Join(p.dir, name+"-supervisor.pprof"), data, 0o644)
	}
	return ferr
}
