package main

// The soak suite: faults and load, measured. With PYRO_SOAK=1 it runs at
// full size (8 workspaces x 50 concurrent execs, 20 kills of each kind,
// 20 concurrent runs); without, a short version of each test runs in the
// default suite. Figures go to the test log (go test -v):
//
//	PYRO_SOAK=1 go test -count=1 -p 1 -v -timeout 4h -run 'TestSoak' ./cmd/pyro
//
// PYRO_SOAK_KILLS=N sets the rounds per kill target and phase.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/internal/guesttest"
)

// soakSizes are the sizes of one soak run.
type soakSizes struct {
	workspaces int // TestSoakConcurrentExecs
	execs      int // concurrent execs per workspace
	kills      int // rounds per kill target and phase
	runs       int // TestSoakConcurrentRuns
	pushMiB    int // size of the tree pushed while killing
}

func sizes() soakSizes {
	sz := soakSizes{workspaces: 1, execs: 8, kills: 1, runs: 3, pushMiB: 16}
	if full() {
		sz = soakSizes{workspaces: 8, execs: 50, kills: 20, runs: 20, pushMiB: 64}
	}
	// PYRO_SOAK_KILLS=N overrides the rounds per kill target and phase.
	if n, err := strconv.Atoi(os.Getenv("PYRO_SOAK_KILLS")); err == nil && n > 0 {
		sz.kills = n
	}
	return sz
}

func full() bool { return os.Getenv("PYRO_SOAK") == "1" }

// soakEnv is a private state and runtime directory over the shared cache.
type soakEnv struct {
	state, run string
	env        []string
}

func newSoakEnv(t *testing.T, state string) *soakEnv {
	t.Helper()
	run, err := os.MkdirTemp("", "pyro-sk-") // short: unix socket paths
	if err != nil {
		t.Fatal(err)
	}
	if state == "" {
		state = t.TempDir()
	}
	s := &soakEnv{state: state, run: run}
	s.env = append(os.Environ(), "PYRO_STATE_DIR="+state, "PYRO_RUNTIME_DIR="+run, "PYRO_CACHE_DIR="+testCacheDir(), "PYRO_LOG_LEVEL=warn")
	t.Cleanup(func() {
		killProcessesMentioning(state, run)
		os.RemoveAll(run)
	})
	return s
}

// result of one pyro process.
type result struct {
	code           int
	stdout, stderr string
	took           time.Duration
	err            error // set when it could not run or ran past its deadline
}

func (r result) String() string {
	return fmt.Sprintf("exit %d after %s: %s%s", r.code, r.took.Round(time.Millisecond), strings.TrimSpace(r.stderr), errSuffix(r.err))
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return " (" + err.Error() + ")"
}

// command prepares a pyro process in s.
func (s *soakEnv) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(pyroBinDir, "pyro"), args...)
	cmd.Env = s.env
	// After a kill, a descendant still holding the pipes must not hang the
	// test; but with 400 pyro processes on 2 CPUs this test process itself
	// can wait seconds for the CPU before it reads the pipes' EOF (48 of
	// 400 exits with correct output missed a 5 s delay), so the delay is
	// generous: a real hang still ends the call.
	cmd.WaitDelay = time.Minute
	return cmd
}

// pyro runs one pyro process; a process still running after limit is a
// hang and is killed.
func (s *soakEnv) pyro(limit time.Duration, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := s.command(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		r.code, r.err = -1, fmt.Errorf("still running after %s: a hang", limit)
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		r.code, r.err = -1, err
	}
	return r
}

func (s *soakEnv) must(t *testing.T, limit time.Duration, args ...string) string {
	t.Helper()
	r := s.pyro(limit, args...)
	if r.code != 0 || r.err != nil {
		t.Fatalf("pyro %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

func (s *soakEnv) createWorkspace(t *testing.T) string {
	t.Helper()
	var w struct {
		ID string `json:"workspace_id"`
	}
	out := s.must(t, 10*time.Minute, "workspace", "create", "debian:12", "--mem-mib", "384", "--json")
	if err := json.Unmarshal([]byte(out), &w); err != nil || w.ID == "" {
		t.Fatalf("workspace create: %v: %s", err, out)
	}
	return w.ID
}

// record reads a workspace's record from the state directory.
func (s *soakEnv) record(id string) (map[string]any, error) {
	b, err := os.ReadFile(filepath.Join(s.state, "workspaces", id, "record.json"))
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}

func (s *soakEnv) pidOf(id, field string) int {
	m, err := s.record(id)
	if err != nil {
		return 0
	}
	v, _ := m[field].(float64)
	return int(v)
}

// lockHeld reports whether a workspace's lock file is held by anyone.
func (s *soakEnv) lockHeld(id string) bool {
	f, err := os.Open(filepath.Join(s.state, "workspaces", id, "lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return true
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}

// stats summarises durations.
func stats(ds []time.Duration) string {
	if len(ds) == 0 {
		return "n=0"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration {
		return s[min(len(s)-1, int(q*float64(len(s))))].Round(10 * time.Millisecond)
	}
	return fmt.Sprintf("n=%d p50=%s p95=%s max=%s", len(s), at(0.5), at(0.95), s[len(s)-1].Round(10*time.Millisecond))
}

// TestSoakConcurrentExecs: W workspaces, E concurrent execs in each, every
// exec a separate pyro process. Every command must succeed, and each
// workspace's log must hold every command exactly once, in sequence order,
// sequences 1..E without duplicates or gaps.
func TestSoakConcurrentExecs(t *testing.T) {
	guesttest.Need(t)
	sz := sizes()
	s := newSoakEnv(t, "")
	start := time.Now()
	ids := make([]string, sz.workspaces)
	for i := range ids {
		ids[i] = s.createWorkspace(t)
	}
	t.Logf("soak: %d workspaces created in %s", len(ids), time.Since(start).Round(time.Second))

	var mu sync.Mutex
	var lat []time.Duration
	var failures []string
	var wg sync.WaitGroup
	start = time.Now()
	for _, id := range ids {
		for j := range sz.execs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				marker := fmt.Sprintf("m-%s-%d", id[:8], j)
				r := s.pyro(10*time.Minute, "workspace", "exec", id, "--", "echo", marker)
				mu.Lock()
				defer mu.Unlock()
				lat = append(lat, r.took)
				if r.code != 0 || r.err != nil || strings.TrimSpace(r.stdout) != marker {
					failures = append(failures, fmt.Sprintf("%s exec %d: %s; stdout %q", id[:8], j, r, r.stdout))
				}
			}()
		}
	}
	wg.Wait()
	wall := time.Since(start)
	t.Logf("soak: %d execs (%d workspaces x %d concurrent, separate processes) in %s; latency %s; %d failed",
		len(lat), len(ids), sz.execs, wall.Round(time.Millisecond), stats(lat), len(failures))
	for _, f := range failures {
		t.Error(f)
	}

	for _, id := range ids {
		var logs struct {
			Count   int `json:"count"`
			Entries []struct {
				Sequence int      `json:"sequence"`
				Command  []string `json:"command"`
				ExitCode int      `json:"exit_code"`
			} `json:"entries"`
		}
		out := s.must(t, 2*time.Minute, "workspace", "logs", id, "--json")
		if err := json.Unmarshal([]byte(out), &logs); err != nil {
			t.Fatalf("logs: %v", err)
		}
		seen := map[string]int{}
		for i, e := range logs.Entries {
			if e.Sequence != i+1 {
				t.Errorf("%s: entry %d has sequence %d (duplicate, gap or disorder)", id[:8], i, e.Sequence)
			}
			if n := len(e.Command); n > 0 {
				seen[e.Command[n-1]]++
			}
		}
		for j := range sz.execs {
			if m := fmt.Sprintf("m-%s-%d", id[:8], j); seen[m] != 1 {
				t.Errorf("%s: command %s logged %d times", id[:8], m, seen[m])
			}
		}
		if logs.Count != sz.execs || len(logs.Entries) != sz.execs {
			t.Errorf("%s: %d log entries (count %d), want %d", id[:8], len(logs.Entries), logs.Count, sz.execs)
		}
		s.must(t, 2*time.Minute, "workspace", "delete", id)
	}
	assertNoLeftovers(t, s)
}

// TestSoakConcurrentRuns: R `pyro run` at once. Each must succeed or fail
// with a clear "busy" error; none may hang.
func TestSoakConcurrentRuns(t *testing.T) {
	guesttest.Need(t)
	sz := sizes()
	s := newSoakEnv(t, "")
	var mu sync.Mutex
	var ok, busy int
	var lat []time.Duration
	var other []string
	var wg sync.WaitGroup
	start := time.Now()
	for i := range sz.runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := s.pyro(15*time.Minute, "run", "debian:12", "--mem-mib", "256", "--", "echo", fmt.Sprint("run-", i))
			mu.Lock()
			defer mu.Unlock()
			lat = append(lat, r.took)
			switch {
			case r.code == 0 && strings.TrimSpace(r.stdout) == fmt.Sprint("run-", i):
				ok++
			case r.code == 125 && strings.Contains(r.stderr, "busy"):
				busy++
			default:
				other = append(other, fmt.Sprintf("run %d: %s", i, r))
			}
		}()
	}
	wg.Wait()
	t.Logf("soak: %d concurrent pyro run: %d ok, %d busy, %d other failures in %s; latency %s",
		sz.runs, ok, busy, len(other), time.Since(start).Round(time.Millisecond), stats(lat))
	for _, o := range other {
		t.Error(o)
	}
	assertNoLeftovers(t, s)
}

// assertNoLeftovers: no process, socket or state of s remains once every
// object is gone.
func assertNoLeftovers(t *testing.T, s *soakEnv) {
	t.Helper()
	var left []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		left = left[:0]
		for _, p := range processesMentioning(s.run, s.state) {
			left = append(left, "process "+p)
		}
		ents, _ := os.ReadDir(s.run)
		for _, e := range ents {
			left = append(left, "runtime entry "+e.Name())
		}
		for _, kind := range []string{"vms", "workspaces"} {
			ents, _ := os.ReadDir(filepath.Join(s.state, kind))
			for _, e := range ents {
				left = append(left, kind+" entry "+e.Name())
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(left) > 0 {
		t.Errorf("left behind:\n%s", strings.Join(left, "\n"))
	}
}
