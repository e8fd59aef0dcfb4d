package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/catalog"
	"github.com/pyro-mcp/pyro/internal/engine"
	"github.com/pyro-mcp/pyro/internal/initramfs"
	"github.com/pyro-mcp/pyro/internal/paths"
	"github.com/pyro-mcp/pyro/internal/vmm"
	"github.com/pyro-mcp/pyro/internal/vmm/qemu"
)

const floorMarker = "PYRO-BENCH-MARKER"

// vmSuite: (a) raw QEMU floor, (b) pyro run end to end, (c) exec round trip
// in a booted VM, (d) idle RSS of the VMM.
func (b *benchEnv) vmSuite(ctx context.Context) error {
	r := b.report
	r.line("\n## microVMs (issue 3)\n\n")
	const env = "debian:12-base"
	if _, err := b.pyroCmd(ctx, nil, "env", "pull", env); err != nil {
		return err
	}
	floor, err := b.floor(ctx, env, 5)
	if err != nil {
		return err
	}
	runs, err := timeIt(5, func() error {
		_, err := b.pyroCmd(ctx, nil, "run", env, "--cold", "--", "true")
		return err
	})
	if err != nil {
		return err
	}
	r.line("- (a) floor: raw QEMU, same kernel and initramfs, to a marker printed by /init and power-off (median of 5): %s\n", ms(pct(floor, .5)))
	r.line("- (b) `pyro run %s --cold -- true` end to end (median of 5): %s; **(b)/(a) = %.2f** (target ≤ 1.15)\n",
		env, ms(pct(runs, .5)), float64(pct(runs, .5))/float64(pct(floor, .5)))

	e, err := engine.New(engine.Options{})
	if err != nil {
		return err
	}
	vm, err := e.CreateVM(ctx, api.CreateVMOptions{Environment: env, Cold: true})
	if err != nil {
		return err
	}
	defer e.DeleteVM(context.WithoutCancel(ctx), vm.VMID)
	vm, err = e.StartVM(ctx, vm.VMID)
	if err != nil {
		return err
	}
	c, err := dialVM(ctx, vm.VMID)
	if err != nil {
		return err
	}
	defer c.Close()
	rt, err := timeIt(b.n, func() error {
		res, err := c.Exec(ctx, agentproto.ExecRequest{Argv: []string{"true"}}, nil, io.Discard, io.Discard)
		if err == nil && res.ExitCode != 0 {
			err = fmt.Errorf("true exited %d", res.ExitCode)
		}
		return err
	})
	if err != nil {
		return err
	}
	pings, err := timeIt(b.n, func() error {
		_, err := c.Ping(ctx)
		return err
	})
	if err != nil {
		return err
	}
	r.line("- (c) exec `true` round trip in a booted VM over %d calls: **p50 %s**, p95 %s (target p50 ≤ 20 ms under TCG); a protocol ping (no process) through the same supervisor: p50 %s\n",
		b.n, ms(pct(rt, .5)), ms(pct(rt, .95)), ms(pct(pings, .5)))
	time.Sleep(5 * time.Second)
	rss := rssKiB(vm.VMMPid)
	r.line("- (d) idle QEMU RSS, 1 vCPU / 1024 MiB guest, 5 s after boot: **%d MiB**\n", rss/1024)
	return nil
}

// dialVM connects to a VM's supervisor the way the engine does.
func dialVM(ctx context.Context, id string) (*agentproto.Client, error) {
	conn, err := net.Dial("unix", filepath.Join(paths.RuntimeDir(), id[:12], "ctl.sock"))
	if err != nil {
		return nil, err
	}
	return agentproto.NewClient(ctx, conn)
}

// rawMachine is a bare QEMU machine for a bound: env's kernel and pyro's
// initramfs with the agent told (by cmdline) to do one bench job instead
// of serving pyro's protocol, 1 vCPU and 1024 MiB, in a scratch directory
// named name. The raw-QEMU floor and the bare virtio-serial channel both
// start from it.
func (b *benchEnv) rawMachine(ctx context.Context, env, name, cmdline string) (*qemu.Backend, vmm.MachineSpec, error) {
	s, err := catalog.Open(catalog.Options{Dir: paths.CacheDir()})
	if err != nil {
		return nil, vmm.MachineSpec{}, err
	}
	inst, err := s.Resolve(ctx, env)
	if err != nil {
		return nil, vmm.MachineSpec{}, err
	}
	initrd, err := initramfs.Build(ctx, paths.CacheDir(), b.pyro, inst.ModulesPath)
	if err != nil {
		return nil, vmm.MachineSpec{}, err
	}
	qb, err := qemu.New(qemu.Options{ProbeKernel: inst.KernelPath})
	if err != nil {
		return nil, vmm.MachineSpec{}, err
	}
	dir := filepath.Join(b.work, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, vmm.MachineSpec{}, err
	}
	return qb, vmm.MachineSpec{ID: name, Dir: dir, Kernel: inst.KernelPath, Initrd: initrd,
		Cmdline: cmdline, VCPUs: 1, MemMiB: 1024, Console: filepath.Join(dir, "console.log")}, nil
}

// floor boots QEMU with env's kernel and pyro's initramfs, with the agent
// told to print a marker and power off as soon as it starts.
func (b *benchEnv) floor(ctx context.Context, env string, n int) ([]time.Duration, error) {
	qb, spec, err := b.rawMachine(ctx, env, "floor", "pyro_bench_marker=1")
	if err != nil {
		return nil, err
	}
	args, err := qb.Args(spec)
	if err != nil {
		return nil, err
	}
	return timeIt(n, func() error {
		// QEMU writes the console to its descriptor 3 (pyro hands it the
		// write end of a capped pipe; the floor, a plain file).
		f, err := os.Create(spec.Console)
		if err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, qb.Binary(), args...)
		cmd.ExtraFiles = []*os.File{f}
		out, err := cmd.CombinedOutput()
		f.Close()
		if err != nil {
			return fmt.Errorf("qemu: %v: %s", err, out)
		}
		data, _ := os.ReadFile(spec.Console)
		if !strings.Contains(string(data), floorMarker) {
			return fmt.Errorf("no marker on the console:\n%s", data)
		}
		return nil
	})
}

func rssKiB(pid int) int {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			n, _ := strconv.Atoi(strings.Fields(line)[1])
			return n
		}
	}
	return 0
}
