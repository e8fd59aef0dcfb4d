package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/internal/guesttest"
)

// victim is a call in flight that a kill interrupts: a CLI process or an
// MCP server handling a tool call.
type victim struct {
	pid  int                // the process that reads the source (CLI or MCP server)
	done chan result        // the call's outcome
	kill func()             // kill -9 the victim's own process
	stop func()             // clean up after the round
	mcp  *mcp.ClientSession // set for MCP victims
}

// startCLI runs `pyro ARGS...` in the background.
func (s *soakEnv) startCLI(t *testing.T, args ...string) *victim {
	t.Helper()
	cmd := s.command(context.Background(), args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	v := &victim{pid: cmd.Process.Pid, done: make(chan result, 1)}
	go func() {
		err := cmd.Wait()
		r := result{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
		if ee, ok := err.(*exec.ExitError); ok {
			r.code = ee.ExitCode()
		}
		v.done <- r
	}()
	v.kill = func() { cmd.Process.Kill() }
	v.stop = v.kill
	return v
}

// startMCPCall starts `pyro mcp serve` and calls tool on it in the background.
func (s *soakEnv) startMCPCall(t *testing.T, tool string, args map[string]any) *victim {
	t.Helper()
	// The pushed sources live in the test's temporary directory.
	cmd := exec.Command(filepath.Join(pyroBinDir, "pyro"), "mcp", "serve", "--allow-path", os.TempDir())
	cmd.Env = s.env
	session, err := mcp.NewClient(&mcp.Implementation{Name: "soak", Version: "0"}, nil).Connect(t.Context(), &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := &victim{pid: cmd.Process.Pid, done: make(chan result, 1), mcp: session}
	go func() {
		start := time.Now()
		res, err := session.CallTool(context.Background(), &mcp.CallToolParams{Name: tool, Arguments: args})
		r := result{took: time.Since(start), err: err}
		if err == nil && res.IsError {
			r.code, r.stderr = 1, contentText(res)
		}
		v.done <- r
	}()
	v.kill = func() { cmd.Process.Kill() }
	v.stop = func() { session.Close(); cmd.Process.Kill() }
	return v
}

// rchar is how many bytes pid has read so far.
// ioCount reads one counter of /proc/PID/io (-1 when it cannot).
func ioCount(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+": "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return -1
}

// killFigures are one kill target's and phase's counts.
type killFigures struct {
	rounds, missed, usable, damaged, intact, hangs, orphans int
	retried, whole, absent                                  int // pushes: retried to success; landed whole; failed and left nothing
	recover                                                 []time.Duration
}

// TestSoakKill kills, in turn, the VMM, the supervisor, the CLI and the
// MCP server in the middle of an exec and of a sync push. Afterwards the
// workspace must be usable (or report a clear damaged state with what to
// do), the /workspace content written by completed calls must be intact,
// the interrupted call must end (no hang), and no orphan process, guest
// command, socket or lock may remain.
func TestSoakKill(t *testing.T) {
	guesttest.Need(t)
	sz := sizes()
	phases := []string{"exec"}
	if full() {
		phases = append(phases, "push")
	}
	src := t.TempDir()
	for i := range 4 {
		data := make([]byte, sz.pushMiB<<20/4)
		rand.Read(data)
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("blob-%d", i)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, target := range []string{"vmm", "supervisor", "cli", "mcp"} {
		for _, phase := range phases {
			t.Run(target+"_mid_"+phase, func(t *testing.T) {
				s := newSoakEnv(t, "")
				id := s.createWorkspace(t)
				var f killFigures
				for round := range sz.kills {
					killRound(t, s, id, target, phase, round, src, &f)
				}
				t.Logf("soak: kill -9 %s mid-%s: %d rounds, %d missed (call ended first), %d usable after, %d damaged with a hint, %d content intact, %d hangs, %d orphans; recovery %s",
					target, phase, f.rounds, f.missed, f.usable, f.damaged, f.intact, f.hangs, f.orphans, stats(f.recover))
				if phase == "push" {
					t.Logf("soak: kill -9 %s mid-push: %d pushes sent again and succeeded, %d trees whole, %d absent (failed), 0 partial", target, f.retried, f.whole, f.absent)
				}
				s.must(t, 5*time.Minute, "workspace", "delete", id)
				assertNoLeftovers(t, s)
			})
		}
	}
}

func killRound(t *testing.T, s *soakEnv, id, target, phase string, round int, src string, f *killFigures) {
	t.Helper()
	f.rounds++
	// The last completed call before the kill writes this round's file.
	s.must(t, 5*time.Minute, "workspace", "exec", id, "--", "sh", "-c", fmt.Sprintf("echo %d > /workspace/r-%d && sync", round, round))

	busy := fmt.Sprintf("busy-%d", round)
	pushed := false
	// A push is in the middle once the supervisor has written more than
	// 1 MiB on towards the guest (the client reads the whole tree once to
	// check it before it sends anything).
	sup := s.pidOf(id, "supervisor_pid")
	sent := ioCount(sup, "wchar")
	var v *victim
	switch {
	case phase == "exec" && target == "mcp":
		v = s.startMCPCall(t, "workspace_exec", map[string]any{"workspace_id": id, "command": "touch /workspace/." + busy + "; sleep 1000", "timeout_seconds": 2000})
	case phase == "exec":
		v = s.startCLI(t, "workspace", "exec", id, "--timeout-seconds", "2000", "--", "sh", "-c", "touch /workspace/."+busy+"; sleep 1000")
	case target == "mcp":
		v = s.startMCPCall(t, "workspace_sync_push", map[string]any{"workspace_id": id, "source_path": src, "dest": "/workspace/push-" + strconv.Itoa(round)})
	default:
		v = s.startCLI(t, "workspace", "sync", "push", id, src, "--dest", "/workspace/push-"+strconv.Itoa(round))
	}
	defer v.stop()

	// Wait until the call is in the middle: the guest command runs, or the
	// source is being read.
	inFlight := func() bool {
		if phase == "exec" {
			return s.pyro(time.Minute, "workspace", "exec", id, "--", "test", "-e", "/workspace/."+busy).code == 0
		}
		return ioCount(sup, "wchar") > sent+1<<20
	}
	deadline := time.Now().Add(5 * time.Minute)
	missed := false
	for !inFlight() {
		select {
		case r := <-v.done:
			v.done <- r
			missed = true
		default:
		}
		if missed || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if missed {
		f.missed++
	}

	switch target {
	case "vmm":
		syscall.Kill(s.pidOf(id, "vmm_pid"), syscall.SIGKILL)
	case "supervisor":
		syscall.Kill(s.pidOf(id, "supervisor_pid"), syscall.SIGKILL)
	default:
		v.kill()
	}
	select {
	case r := <-v.done:
		pushed = r.code == 0
		if target == "vmm" || target == "supervisor" {
			// A push whose VM died is sent again once on a fresh boot (by
			// design: the staging tree is only moved into place whole);
			// an exec's command died with its VM and must not succeed.
			if r.code == 0 && !missed && phase == "exec" {
				t.Errorf("round %d: the interrupted call succeeded: %s", round, r)
			}
			if r.code == 0 && !missed && phase == "push" {
				f.retried++
			}
		}
	case <-time.After(3 * time.Minute):
		f.hangs++
		t.Errorf("round %d: the interrupted call did not end within 3 min after kill -9 %s", round, target)
	}

	// Usable again, with every completed call's content.
	start := time.Now()
	r := s.pyro(10*time.Minute, "workspace", "exec", id, "--", "sh", "-c", "cat /workspace/r-*")
	switch {
	case r.code == 0:
		f.usable++
		f.recover = append(f.recover, time.Since(start))
		want := ""
		for i := 0; i <= round; i++ {
			want += strconv.Itoa(i) + "\n"
		}
		if r.stdout == want || sortedLines(r.stdout) == sortedLines(want) {
			f.intact++
		} else {
			t.Errorf("round %d: /workspace content %q, want %q", round, r.stdout, want)
		}
		if phase == "push" {
			checkPushed(t, s, id, round, src, pushed, f)
		}
	case strings.Contains(r.stderr, "hint:"):
		f.damaged++
		t.Logf("round %d: damaged, with a hint: %s", round, r)
	default:
		t.Errorf("round %d: workspace unusable without a hint: %s", round, r)
	}

	// No orphans: one supervisor and one VMM for the workspace, no guest
	// command of the interrupted call, no held lock.
	if n := len(processesMentioning(s.run)); n > 2 {
		f.orphans++
		t.Errorf("round %d: %d processes in the runtime dir after recovery: %v", round, n, processesMentioning(s.run))
	}
	if phase == "exec" {
		pattern := "busy-[" + strconv.Itoa(round)[:1] + "]" + strconv.Itoa(round)[1:]
		g := s.pyro(5*time.Minute, "workspace", "exec", id, "--", "sh", "-c", "grep -l '"+pattern+"' /proc/[0-9]*/cmdline 2>/dev/null | wc -l")
		if strings.TrimSpace(g.stdout) != "0" {
			f.orphans++
			t.Errorf("round %d: the interrupted guest command still runs (%s processes)", round, strings.TrimSpace(g.stdout))
		}
	}
	if s.lockHeld(id) {
		f.orphans++
		t.Errorf("round %d: the workspace lock is still held", round)
	}
}

// checkPushed: the destination of a push is either absent (a failed push) or
// holds the source's exact bytes, never a half tree; a push that reported
// success must have landed. (A push whose client was killed may have landed
// whole before the kill.)
func checkPushed(t *testing.T, s *soakEnv, id string, round int, src string, pushed bool, f *killFigures) {
	t.Helper()
	dest := "/workspace/push-" + strconv.Itoa(round)
	if r := s.pyro(5*time.Minute, "workspace", "exec", id, "--", "test", "-e", dest); r.code != 0 {
		if pushed {
			t.Errorf("round %d: the push succeeded but %s is missing: %s", round, dest, r)
			return
		}
		f.absent++
		return
	}
	var want strings.Builder
	for i := range 4 {
		b, err := os.ReadFile(filepath.Join(src, fmt.Sprintf("blob-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&want, "%x\n", sha256.Sum256(b))
	}
	r := s.pyro(5*time.Minute, "workspace", "exec", id, "--", "sh", "-c", "cd "+dest+" && sha256sum blob-0 blob-1 blob-2 blob-3 | cut -d' ' -f1")
	if r.code != 0 || r.stdout != want.String() {
		t.Errorf("round %d: %s is a partial or different tree: %s; got %q want %q", round, dest, r, r.stdout, want.String())
		return
	}
	f.whole++
}

func sortedLines(s string) string {
	l := strings.Fields(s)
	slices.Sort(l)
	return strings.Join(l, " ")
}

// TestSoakDiskFull fills the state directory's disk (a small tmpfs): create,
// exec and sync must fail with a clear error and leave no half-written
// record; once space returns, everything works again. The short version
// checks create on a full disk; the full one (PYRO_SOAK=1) also exec and
// sync on a running workspace whose disk lives there.
func TestSoakDiskFull(t *testing.T) {
	guesttest.Need(t)
	if os.Geteuid() != 0 {
		guesttest.Missing(t, "mounting a small tmpfs needs root")
	}
	state := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=48m,mode=0700", "pyro-soak", state).CombinedOutput(); err != nil {
		guesttest.Missing(t, fmt.Sprintf("mount tmpfs: %v: %s", err, out))
	}
	t.Cleanup(func() { exec.Command("umount", "-l", state).Run() })
	s := newSoakEnv(t, state)
	var id string
	if full() {
		id = s.createWorkspace(t)
		s.must(t, 5*time.Minute, "workspace", "exec", id, "--", "sh", "-c", "echo before > /workspace/before && sync")
	}

	filler := filepath.Join(state, "filler")
	exec.Command("dd", "if=/dev/zero", "of="+filler, "bs=1M").Run() // ends with "no space left on device"
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), make([]byte, 1<<20), 0o644)

	calls := map[string][]string{
		"create": {"workspace", "create", "debian:12", "--json"},
		"exec":   {"workspace", "exec", id, "--", "sh", "-c", "echo during > /workspace/during && sync"},
		"sync":   {"workspace", "sync", "push", id, src, "--dest", "/workspace/synced"},
	}
	names := []string{"create"}
	if full() {
		names = append(names, "exec", "sync")
	}
	for _, name := range names {
		r := s.pyro(5*time.Minute, calls[name]...)
		t.Logf("soak: disk full: %s: %s", name, r)
		switch {
		case r.err != nil:
			t.Errorf("disk full: %s hung: %s", name, r)
		case r.code == 0:
			t.Errorf("disk full: %s succeeded, so what it wrote cannot be on disk", name)
		case !strings.Contains(strings.ToLower(r.stderr), "no space left"):
			t.Errorf("disk full: %s failed without saying the disk is full: %s", name, r)
		case !strings.Contains(r.stderr, "hint: free disk space"):
			t.Errorf("disk full: %s failed without saying what to do: %s", name, r)
		}
	}
	checkRecords(t, state)

	os.Remove(filler)
	if full() {
		for _, name := range []string{"exec", "sync"} {
			if r := s.pyro(10*time.Minute, calls[name]...); r.code != 0 {
				t.Errorf("after space returned: %s: %s", name, r)
			}
		}
		if r := s.pyro(5*time.Minute, "workspace", "exec", id, "--", "cat", "/workspace/before"); r.stdout != "before\n" {
			t.Errorf("content written before the disk was full: %s", r)
		}
		s.must(t, 5*time.Minute, "workspace", "delete", id)
	}
	id2 := s.createWorkspace(t)
	s.must(t, 5*time.Minute, "workspace", "exec", id2, "--", "true")
	s.must(t, 5*time.Minute, "workspace", "delete", id2)
	assertNoLeftovers(t, s)
}

// checkRecords: every record and log line in the state dir parses.
func checkRecords(t *testing.T, state string) {
	t.Helper()
	recs, _ := filepath.Glob(filepath.Join(state, "*", "*", "record.json"))
	for _, r := range recs {
		b, err := os.ReadFile(r)
		var m map[string]any
		if err != nil || json.Unmarshal(b, &m) != nil {
			t.Errorf("half-written record %s: %v: %q", r, err, b)
		}
	}
	logs, _ := filepath.Glob(filepath.Join(state, "workspaces", "*", "logs.jsonl"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			var m map[string]any
			if line != "" && json.Unmarshal([]byte(line), &m) != nil {
				t.Errorf("half-written log line %d of %s: %q", i+1, l, line)
			}
		}
	}
}
