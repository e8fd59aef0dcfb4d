package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/engine"
	"github.com/pyro-mcp/pyro/internal/proctree"
)

// densityIdle is how long the CPU of the idle workspaces is sampled, and
// densitySettle how long they rest before (a warm clone's agent finishes
// its identity step and the guest kernel its first timers).
const (
	densityIdle   = 30 * time.Second
	densitySettle = 10 * time.Second
	// densityMaxUsed stops adding workspaces once this share of the host's
	// RAM is in use (MemTotal - MemAvailable).
	densityMaxUsed = 0.80
	// clkTck is the kernel's USER_HZ, the unit of /proc/PID/stat's times
	// (100 on every Linux architecture pyro runs on).
	clkTck = 100
)

// vmCost is what one workspace costs the host: every process of its tree
// (the supervisor, which also runs pyro's network stack when the guest has
// a network, and what it started: QEMU, and passt or virtiofsd if any).
type vmCost struct {
	id       string
	pids     []int
	pssKiB   int     // the tree's proportional set size
	rssKiB   int     // the tree's resident set size (shared pages counted in each process)
	qemuPSS  int     // QEMU's share of pssKiB
	supPSS   int     // the supervisor's share
	cpuTicks int64   // utime+stime of the tree at the start of the idle window
	cpuPct   float64 // CPU over the idle window, % of one CPU
}

// densitySuite (issue 18): how many idle workspaces started from one
// template this host holds at once, and what each costs in memory and
// CPU. It stops adding at densityMaxUsed of the RAM and deletes every
// workspace it made, on failure and on Ctrl-C or SIGTERM too.
func (b *benchEnv) densitySuite(ctx context.Context) error {
	r := b.report
	const env = "debian:12-base"
	want := b.density
	r.line("\n## Density (issue 18)\n\n")
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := b.pyroCmd(ctx, nil, "env", "pull", env); err != nil {
		return err
	}
	if _, err := b.pyroCmd(ctx, nil, "prepare", env); err != nil {
		return err
	}
	e, err := engine.New(engine.Options{})
	if err != nil {
		return err
	}
	var ids []string
	defer func() { b.densityCleanup(e, ids) }()

	before := readMeminfo()
	r.line("- host before: %s; MemAvailable %d MiB of %d MiB\n", loadavg(), before["MemAvailable"]/1024, before["MemTotal"]/1024)
	t := time.Now()
	warm, stopped := 0, ""
	for i := 0; i < want; i++ {
		if m := readMeminfo(); used(m) >= densityMaxUsed {
			stopped = fmt.Sprintf("stopped adding at %.0f%% of RAM in use", 100*used(m))
			break
		}
		if ctx.Err() != nil {
			stopped = "interrupted"
			break
		}
		ws, err := e.CreateWorkspace(ctx, api.CreateWorkspaceOptions{Environment: env})
		if err != nil {
			stopped = fmt.Sprintf("creating number %d failed: %v", i+1, err)
			if ctx.Err() != nil {
				stopped = "interrupted"
			}
			break
		}
		ids = append(ids, ws.WorkspaceID)
		if ws.Start == "warm" {
			warm++
		}
		if (i+1)%10 == 0 {
			m := readMeminfo()
			fmt.Fprintf(os.Stderr, "density: %d workspaces in %.0f s; RAM in use %.0f%%; load %s\n",
				i+1, time.Since(t).Seconds(), 100*used(m), loadavg())
		}
	}
	created := time.Since(t)
	if stopped != "" {
		r.line("- %s\n", stopped)
	}
	if len(ids) == 0 {
		return fmt.Errorf("no workspace started")
	}
	r.line("- %d workspaces of %s started (%d warm, from one template) in %.0f s, %.2f s each\n",
		len(ids), env, warm, created.Seconds(), created.Seconds()/float64(len(ids)))

	select {
	case <-time.After(densitySettle):
	case <-ctx.Done():
		return ctx.Err()
	}
	costs := make([]*vmCost, 0, len(ids))
	for _, id := range ids {
		c, err := b.vmTree(ctx, e, id)
		if err != nil {
			r.line("- workspace %s: %v\n", id, err)
			continue
		}
		c.cpuTicks = treeTicks(c.pids)
		costs = append(costs, c)
	}
	t0 := time.Now()
	select {
	case <-time.After(densityIdle):
	case <-ctx.Done():
		return ctx.Err()
	}
	secs := time.Since(t0).Seconds()
	for _, c := range costs {
		c.cpuPct = 100 * float64(treeTicks(c.pids)-c.cpuTicks) / clkTck / secs
		c.pssKiB, c.rssKiB = treeMem(c.pids)
	}
	held := readMeminfo()
	b.densityReport(costs, want, before, held, secs)
	if err := b.densityNetwork(ctx, e, env, &ids); err != nil {
		r.line("- with a network: %v\n", err)
	}

	b.densityCleanup(e, ids)
	ids = nil
	after := readMeminfo()
	r.line("- host after deleting them: %s; MemAvailable %d MiB (%+d MiB against before)\n",
		loadavg(), after["MemAvailable"]/1024, (after["MemAvailable"]-before["MemAvailable"])/1024)
	return nil
}

// densityReport prints the per-VM figures of costs, measured while all of
// them ran, and the target line.
func (b *benchEnv) densityReport(costs []*vmCost, want int, before, held map[string]int, secs float64) {
	r := b.report
	n := len(costs)
	if n == 0 {
		r.line("- no workspace was running after the settle time\n")
		return
	}
	var pss, rss, qemu, sup []int
	var cpu []float64
	var pssSum, procs int
	var cpuSum float64
	for _, c := range costs {
		pss, rss, qemu, sup = append(pss, c.pssKiB), append(rss, c.rssKiB), append(qemu, c.qemuPSS), append(sup, c.supPSS)
		cpu = append(cpu, c.cpuPct)
		pssSum += c.pssKiB
		cpuSum += c.cpuPct
		procs += len(c.pids)
	}
	slices.Sort(pss)
	slices.Sort(rss)
	slices.Sort(qemu)
	slices.Sort(sup)
	slices.Sort(cpu)
	mib := func(k int) float64 { return float64(k) / 1024 }
	r.line("- held at once and idle: **%d of %d** (%d processes: supervisor, QEMU and their children)\n", n, want, procs)
	r.line("- per VM, %.0f s idle, everything it runs on the host: **PSS median %.0f MiB** (min %.0f, max %.0f; medians: QEMU %.0f MiB, supervisor %.0f MiB), RSS median %.0f MiB (shared pages counted in every process), **idle CPU median %.2f%%** of one CPU (max %.2f%%)\n",
		densitySettle.Seconds()+secs, mib(pss[n/2]), mib(pss[0]), mib(pss[n-1]), mib(qemu[n/2]), mib(sup[n/2]), mib(rss[n/2]), cpu[n/2], cpu[n-1])
	drop := before["MemAvailable"] - held["MemAvailable"]
	r.line("- all %d together: PSS %.0f MiB, idle CPU %.1f%% of one CPU (of %d); host MemAvailable %d → %d MiB: **%.0f MiB per VM** as the host sees it (page cache, page tables and the kernel's share included); RAM in use %.0f%%; %s\n",
		n, mib(pssSum), cpuSum, numCPU(), before["MemAvailable"]/1024, held["MemAvailable"]/1024, mib(drop)/float64(n), 100*used(held), loadavg())
	verdict := "met"
	if n < 100 || mib(pss[n/2]) > 100 {
		verdict = "not met"
	}
	r.line("- target ≥ 100 at ≤ 100 MiB PSS each: **%s** (%d held, median %.0f MiB PSS each)\n", verdict, n, mib(pss[n/2]))
}

// densityNetwork starts one more workspace, with a network (egress), and
// prints what it costs: pyro's network stack runs in the supervisor, not
// in a process of its own, so it shows as the supervisor's share.
func (b *benchEnv) densityNetwork(ctx context.Context, e *engine.Engine, env string, ids *[]string) error {
	if _, err := b.pyroCmd(ctx, nil, "prepare", env, "--network"); err != nil {
		return err
	}
	ws, err := e.CreateWorkspace(ctx, api.CreateWorkspaceOptions{Environment: env, Shape: api.Shape{Network: true}})
	if err != nil {
		return err
	}
	*ids = append(*ids, ws.WorkspaceID)
	select {
	case <-time.After(densitySettle):
	case <-ctx.Done():
		return ctx.Err()
	}
	c, err := b.vmTree(ctx, e, ws.WorkspaceID)
	if err != nil {
		return err
	}
	c.pssKiB, _ = treeMem(c.pids)
	b.report.line("- one more with a network (egress, %s start; pyro's network stack runs in the supervisor; alone on its template, so it shares none of its memory file's pages): PSS %.0f MiB (QEMU %.0f MiB, supervisor %.0f MiB), %d processes\n",
		ws.Start, float64(c.pssKiB)/1024, float64(c.qemuPSS)/1024, float64(c.supPSS)/1024, len(c.pids))
	return nil
}

// vmTree finds the processes of workspace id: its supervisor (from the
// record) and the supervisor's descendants.
func (b *benchEnv) vmTree(ctx context.Context, e *engine.Engine, id string) (*vmCost, error) {
	st, err := e.StatusWorkspace(ctx, id)
	if err != nil {
		return nil, err
	}
	if !st.Running {
		return nil, fmt.Errorf("not running (%s)", st.Note)
	}
	sup, err := b.supervisorPID(id)
	if err != nil {
		return nil, err
	}
	c := &vmCost{id: id, pids: processTree(sup)}
	if !slices.Contains(c.pids, st.VMMPid) && st.VMMPid > 0 {
		c.pids = append(c.pids, st.VMMPid) // a VMM that is not the supervisor's child
	}
	if len(c.pids) == 0 {
		return nil, fmt.Errorf("no supervisor or VMM process in its record")
	}
	c.qemuPSS = pssKiB(st.VMMPid)
	c.supPSS = pssKiB(sup)
	return c, nil
}

// supervisorPID is the supervisor of workspace id, from its record.
func (b *benchEnv) supervisorPID(id string) (int, error) {
	data, err := os.ReadFile(filepath.Join(b.stateDir, "workspaces", id, "record.json"))
	if err != nil {
		return 0, err
	}
	var rec struct {
		SupervisorPID int `json:"supervisor_pid"`
	}
	err = json.Unmarshal(data, &rec)
	return rec.SupervisorPID, err
}

// processTree is pid and its live descendants (none for pid 0).
func processTree(pid int) []int {
	if pid <= 0 {
		return nil
	}
	return append([]int{pid}, proctree.Descendants(pid)...)
}

// treeMem is the PSS and RSS, in KiB, of the processes pids.
func treeMem(pids []int) (pss, rss int) {
	for _, p := range pids {
		pss += pssKiB(p)
		rss += rssKiB(p)
	}
	return pss, rss
}

// densityCleanup deletes the workspaces ids, a few at a time, whatever
// the context; a workspace that does not delete has its processes killed
// (its state goes with the bench's scratch directory).
func (b *benchEnv) densityCleanup(e *engine.Engine, ids []string) {
	if len(ids) == 0 {
		return
	}
	ctx := context.Background()
	fmt.Fprintf(os.Stderr, "density: deleting %d workspaces\n", len(ids))
	work := make(chan string)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				var pids []int
				if c, err := b.vmTree(ctx, e, id); err == nil {
					pids = c.pids
				}
				if _, err := e.DeleteWorkspace(ctx, id); err != nil {
					fmt.Fprintf(os.Stderr, "density: delete %s: %v; killing its processes\n", id, err)
					for _, p := range pids {
						proctree.KillDescendants(p)
						syscall.Kill(p, syscall.SIGKILL)
					}
				}
			}
		}()
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
}

// treeTicks is the CPU time (user+system, all threads, in clock ticks) of
// the live processes pids.
func treeTicks(pids []int) int64 {
	var sum int64
	for _, p := range pids {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/stat")
		if err != nil {
			continue
		}
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) {
			continue
		}
		f := strings.Fields(s[i+2:]) // f[0] is field 3 (state): utime is field 14, stime 15
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		sum += u + st
	}
	return sum
}

// readMeminfo is /proc/meminfo in KiB, by field name.
func readMeminfo() map[string]int {
	m := map[string]int{}
	data, _ := os.ReadFile("/proc/meminfo")
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) > 0 {
			m[k], _ = strconv.Atoi(f[0])
		}
	}
	return m
}

// used is the share of RAM in use: what is not available.
func used(m map[string]int) float64 {
	if m["MemTotal"] == 0 {
		return 0
	}
	return 1 - float64(m["MemAvailable"])/float64(m["MemTotal"])
}

// loadavg is the host's load average, "1-min 5-min 15-min".
func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "load average unknown"
	}
	return "load average " + strings.Join(strings.Fields(string(data))[:3], " ")
}
