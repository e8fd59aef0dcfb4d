package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/internal/agentproto"
)

// floodSeconds bounds the flood by time, not bytes: the emulated serial
// console moved 35-100 KB/s under TCG on the 2-core development machine
// (less while stdout floods too), stdout over virtio-serial much more.
const floodSeconds = 30

// consoleCap is set lower than the default (vmm.ConsoleMaxBytes, 4 MiB)
// so that the console passes it several times within floodSeconds.
const consoleCap = 256 << 10

// A real guest writes to its stdout and to its serial console as fast as it
// can for floodSeconds. The host keeps to its caps: the exec's output stops
// at 1 MiB per stream (truncated), the console log on disk never passes its
// cap (keeping the latest output), and neither the supervisor nor the exec
// client grows with what the guest sends.
func TestGuestFloodStaysBounded(t *testing.T) {
	needGuestHere(t)
	runDir, err := os.MkdirTemp("", "pyro-fl-")
	if err != nil {
		t.Fatal(err)
	}
	stateDir := t.TempDir()
	defer func() {
		killProcessesMentioning(runDir, stateDir)
		os.RemoveAll(runDir)
	}()
	env := append(os.Environ(), "PYRO_RUNTIME_DIR="+runDir, "PYRO_STATE_DIR="+stateDir, "PYRO_CACHE_DIR="+testCacheDir(),
		fmt.Sprintf("PYRO_CONSOLE_MAX_BYTES=%d", consoleCap))
	pyro := filepath.Join(pyroBinDir, "pyro")
	run := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(pyro, args...)
		cmd.Env = env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("pyro %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return out
	}
	var ws struct {
		ID     string `json:"workspace_id"`
		VMMPid int    `json:"vmm_pid"`
	}
	json.Unmarshal(run("workspace", "create", "debian:12", "--json"), &ws)
	defer func() {
		del := exec.Command(pyro, "workspace", "delete", ws.ID)
		del.Env = env
		del.Run()
	}()
	if ws.VMMPid == 0 {
		json.Unmarshal(run("workspace", "status", ws.ID, "--json"), &ws)
	}
	supervisor := parentOf(ws.VMMPid)
	if supervisor <= 1 {
		t.Fatalf("no supervisor above qemu %d", ws.VMMPid)
	}
	console := filepath.Join(stateDir, "workspaces", ws.ID, "console.log")
	rssBefore := rss(supervisor)

	script := fmt.Sprintf(`end=$(($(date +%%s)+%d))
flood() { while [ $(date +%%s) -lt $end ]; do cat /usr/share/common-licenses/GPL-3; done; }
flood > /dev/ttyS0 &
flood
wait
echo CONSOLE-FLOOD-END > /dev/ttyS0`, floodSeconds)
	exe := exec.Command(pyro, "workspace", "exec", ws.ID, "--json", "--timeout-seconds", strconv.Itoa(floodSeconds+60), "--", "sh", "-c", script)
	exe.Env = env
	var out, stderr bytes.Buffer
	exe.Stdout, exe.Stderr = &out, &stderr
	if err := exe.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var peakSup, peakCLI, peakConsole int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			mu.Lock()
			peakSup = max(peakSup, rss(supervisor))
			peakCLI = max(peakCLI, rss(exe.Process.Pid))
			if fi, err := os.Stat(console); err == nil {
				peakConsole = max(peakConsole, fi.Size())
			}
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	err = exe.Wait()
	close(stop)
	<-sampled
	if err != nil {
		t.Fatalf("exec: %v\n%s", err, stderr.String())
	}
	var res struct {
		ExitCode        int    `json:"exit_code"`
		Stdout          string `json:"stdout"`
		StdoutTruncated bool   `json:"stdout_truncated"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("exec output: %v\n%.300s", err, out.String())
	}
	con, _ := os.ReadFile(console)
	t.Logf("stdout kept %d bytes (truncated %v); console.log peak %d bytes, now %d, rotated %v; RSS peak: supervisor %d MiB (idle %d MiB), exec client %d MiB",
		len(res.Stdout), res.StdoutTruncated, peakConsole, len(con), bytes.Contains(con, []byte("earlier bytes of console output dropped")),
		peakSup>>20, rssBefore>>20, peakCLI>>20)
	if res.ExitCode != 0 || !res.StdoutTruncated || len(res.Stdout) > agentproto.DefaultMaxOutput {
		t.Errorf("exec: exit %d, truncated %v, %d bytes of stdout", res.ExitCode, res.StdoutTruncated, len(res.Stdout))
	}
	if peakConsole > consoleCap+200 {
		t.Errorf("console.log reached %d bytes, cap %d", peakConsole, consoleCap)
	}
	if !bytes.Contains(con, []byte("CONSOLE-FLOOD-END")) {
		t.Errorf("console.log (%d bytes) does not hold the guest's last output", len(con))
	}
	if !bytes.Contains(con, []byte("earlier bytes of console output dropped")) {
		t.Errorf("the console never passed its cap: the flood did not happen")
	}
	const supervisorBound, clientBound = 64 << 20, 96 << 20
	if peakSup > supervisorBound || peakCLI > clientBound {
		t.Errorf("RSS over the bound: supervisor %d MiB (bound %d), client %d MiB (bound %d)",
			peakSup>>20, supervisorBound>>20, peakCLI>>20, clientBound>>20)
	}
}

func parentOf(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	// pid (comm) state ppid ...: comm may hold spaces, so cut after ')'.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		f := strings.Fields(s[i+1:])
		if len(f) > 1 {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// rss is a process's resident set in bytes (0 when it is gone).
func rss(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
