package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/engine"
)

// warmN is how many times each warm and cold figure is measured; the two
// sides alternate, so that a change in the host's load hits both alike.
const warmN = 5

// runN is how many times each side of `pyro run` warm vs cold is
// measured: issue 18's targets are medians of 10.
const runN = 10

// Issue 18's targets for a warm `pyro run -- true`.
const (
	targetWarmRatio = 0.15
	targetWarmWall  = 500 * time.Millisecond
)

// warmSuite (issue 18): the template build, `pyro run -- true` warm vs
// cold, workspace create warm vs cold, suspend/resume vs a cold stop and
// start, and what an idle warm clone costs in memory next to a cold guest.
func (b *benchEnv) warmSuite(ctx context.Context) error {
	r := b.report
	r.line("\n## Warm start (issue 18)\n\n")
	const env = "debian:12-base"
	if _, err := b.pyroCmd(ctx, nil, "env", "pull", env); err != nil {
		return err
	}
	out, err := b.pyroCmd(ctx, nil, "prepare", env, "--json")
	if err != nil {
		return err
	}
	var prep struct {
		Templates []struct {
			Kind        string `json:"kind"`
			Built       bool   `json:"built"`
			BuildMs     int64  `json:"build_ms"`
			SaveMs      int64  `json:"save_ms"`
			StateBytes  int64  `json:"state_bytes"`
			MemoryBytes int64  `json:"memory_bytes"`
			RootBytes   int64  `json:"root_bytes"`
		} `json:"templates"`
	}
	if err := json.Unmarshal([]byte(out), &prep); err != nil {
		return err
	}
	for _, t := range prep.Templates {
		how := "kept from an earlier build"
		if t.Built {
			how = fmt.Sprintf("built in %d ms (save %d ms)", t.BuildMs, t.SaveMs)
		}
		r.line("- template (%s, 1 vCPU, 1024 MiB): %s; state %d KB, memory file %d MB allocated, root layer %.1f MB\n",
			t.Kind, how, t.StateBytes/1000, t.MemoryBytes/1_000_000, float64(t.RootBytes)/1e6)
	}

	loadBefore := loadAvg()
	var warmBoot, coldBoot []time.Duration
	warm, cold, err := b.alternateN(ctx, runN,
		func() error { return b.runStart(ctx, "warm", &warmBoot, "run", env, "--json", "--", "true") },
		func() error { return b.runStart(ctx, "cold", &coldBoot, "run", env, "--cold", "--json", "--", "true") })
	if err != nil {
		return err
	}
	slices.Sort(warmBoot)
	slices.Sort(coldBoot)
	ratio := medianRatio(warm, cold)
	r.line("- `pyro run %s -- true`, wall clock of the whole command, median of %d each (alternating): **warm %s, cold (`--cold`) %s, warm/cold = %.2f**; "+
		"targets: warm/cold ≤ %.2f (%s), warm < %s (%s); warm p90 %s, cold p90 %s\n",
		env, runN, ms(pct(warm, .5)), ms(pct(cold, .5)), ratio, targetWarmRatio, met(ratio <= targetWarmRatio),
		ms(targetWarmWall), met(pct(warm, .5) < targetWarmWall), ms(pct(warm, .9)), ms(pct(cold, .9)))
	r.line("- of which `boot_ms` (VMM start to the guest ready, identity step included): warm %s, cold %s, warm/cold = %.2f\n",
		ms(pct(warmBoot, .5)), ms(pct(coldBoot, .5)), medianRatio(warmBoot, coldBoot))
	r.line("- host load average (1, 5, 15 min) before: %s; after: %s\n", loadBefore, loadAvg())

	var ids []string
	defer func() {
		for _, id := range ids {
			b.pyroCmd(context.WithoutCancel(ctx), nil, "workspace", "delete", id)
		}
	}()
	create := func(want string, extra ...string) func() error {
		return func() error {
			args := append([]string{"workspace", "create", env, "--json"}, extra...)
			out, err := b.pyroCmd(ctx, nil, args...)
			if err != nil {
				return err
			}
			id := jsonString(out, "workspace_id")
			ids = append(ids, id)
			if got := jsonString(out, "start"); got != want {
				return fmt.Errorf("workspace create started %q, want %q", got, want)
			}
			return nil
		}
	}
	wsWarm, wsCold, err := b.alternate(ctx, create("warm"), create("cold", "--cold"))
	if err != nil {
		return err
	}
	r.line("- `pyro workspace create %s` (no seed), median of %d: **warm %s, cold %s, warm/cold = %.2f**\n",
		env, warmN, ms(pct(wsWarm, .5)), ms(pct(wsCold, .5)), medianRatio(wsWarm, wsCold))

	id := ids[0]
	cycle := func(want string, stop ...string) func() error {
		return func() error {
			if _, err := b.pyroCmd(ctx, nil, append([]string{"workspace", "stop", id}, stop...)...); err != nil {
				return err
			}
			out, err := b.pyroCmd(ctx, nil, "workspace", "start", id, "--json")
			if err == nil && jsonString(out, "start") != want {
				err = fmt.Errorf("workspace start started %q, want %q", jsonString(out, "start"), want)
			}
			return err
		}
	}
	susp, coldCycle, err := b.alternate(ctx, cycle("resume"), cycle("cold", "--cold"))
	if err != nil {
		return err
	}
	r.line("- workspace stop+start, median of %d: **suspend/resume %s, cold stop/start %s, ratio %.2f**\n",
		warmN, ms(pct(susp, .5)), ms(pct(coldCycle, .5)), medianRatio(susp, coldCycle))
	return b.warmMemory(ctx, env)
}

// warmMemory compares an idle warm clone's VMM with a cold guest's, 5 s
// after each came up (both running at once, under the same load).
func (b *benchEnv) warmMemory(ctx context.Context, env string) error {
	e, err := engine.New(engine.Options{})
	if err != nil {
		return err
	}
	var pids [2]int
	for i, cold := range []bool{false, true} {
		vm, err := e.CreateVM(ctx, api.CreateVMOptions{Environment: env, Cold: cold})
		if err != nil {
			return err
		}
		defer e.DeleteVM(context.WithoutCancel(ctx), vm.VMID)
		if vm, err = e.StartVM(ctx, vm.VMID); err != nil {
			return err
		}
		pids[i] = vm.VMMPid
	}
	time.Sleep(5 * time.Second)
	wr, cr := rssKiB(pids[0]), rssKiB(pids[1])
	wp, cp := pssKiB(pids[0]), pssKiB(pids[1])
	b.report.line("- idle QEMU of a 1 vCPU / 1024 MiB guest, 5 s after start: **warm clone RSS %d MiB (PSS %d MiB), cold guest RSS %d MiB (PSS %d MiB)**; RSS warm/cold = %.2f\n",
		wr/1024, wp/1024, cr/1024, cp/1024, float64(wr)/float64(max(cr, 1)))
	return nil
}

// alternate times a and b warmN times each, one after the other.
func (b *benchEnv) alternate(ctx context.Context, fa, fb func() error) (da, db []time.Duration, err error) {
	return b.alternateN(ctx, warmN, fa, fb)
}

// alternateN times a and b n times each, one after the other.
func (b *benchEnv) alternateN(ctx context.Context, n int, fa, fb func() error) (da, db []time.Duration, err error) {
	for i := 0; i < n; i++ {
		d, err := timeIt(1, fa)
		if err != nil {
			return nil, nil, err
		}
		da = append(da, d...)
		if d, err = timeIt(1, fb); err != nil {
			return nil, nil, err
		}
		db = append(db, d...)
	}
	slices.Sort(da)
	slices.Sort(db)
	return da, db, ctx.Err()
}

// runStart runs pyro with args, checks the result's start and adds its
// boot_ms to boots.
func (b *benchEnv) runStart(ctx context.Context, want string, boots *[]time.Duration, args ...string) error {
	out, err := b.pyroCmd(ctx, nil, args...)
	if err != nil {
		return err
	}
	if got := jsonString(out, "start"); got != want {
		return fmt.Errorf("pyro %s started %q, want %q", strings.Join(args, " "), got, want)
	}
	var m struct {
		BootMs int64 `json:"boot_ms"`
	}
	json.Unmarshal([]byte(out), &m)
	*boots = append(*boots, time.Duration(m.BootMs)*time.Millisecond)
	return nil
}

// jsonString is one top-level string field of a JSON object ("" if none).
func jsonString(out, key string) string {
	var m map[string]any
	json.Unmarshal([]byte(out), &m)
	s, _ := m[key].(string)
	return s
}

// met says whether a target was met.
func met(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

func medianRatio(a, b []time.Duration) float64 {
	return float64(pct(a, .5)) / float64(max(pct(b, .5), 1))
}

// pssKiB is a process's proportional set size: its share of the pages it
// maps with others (a template's memory file, through the page cache).
func pssKiB(pid int) int {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "Pss:") {
			n, _ := strconv.Atoi(strings.Fields(line)[1])
			return n
		}
	}
	return 0
}
