package firecracker

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/internal/catalog"
)

// TestRealFirecracker boots real guests through the pyro binary with
// --backend firecracker: a one-shot run, and a workspace that is written,
// stopped (suspended), started again and read back. It needs a
// firecracker binary, a KVM that really runs a guest, and debian:12
// installed; it skips, naming what is missing, otherwise (realPyro).
func TestRealFirecracker(t *testing.T) {
	run := realPyro(t)
	r := run("run", "--backend", "firecracker", "debian:12", "--", "sh", "-c", "cat /proc/cmdline; echo hello")
	if r["backend"] != "firecracker" || r["exit_code"] != float64(0) || !strings.Contains(r["stdout"].(string), "hello") {
		t.Fatalf("run: %v", r)
	}
	if !strings.Contains(r["stdout"].(string), "pyro_rootmode=overlay") {
		t.Errorf("guest cmdline lacks the overlay root: %v", r["stdout"])
	}

	ws := run("workspace", "create", "--backend", "firecracker", "debian:12")
	id, _ := ws["workspace_id"].(string)
	if id == "" || ws["backend"] != "firecracker" {
		t.Fatalf("workspace create: %v", ws)
	}
	defer run("workspace", "delete", id)
	if e := run("workspace", "exec", id, "--", "sh", "-c", "echo persisted > /workspace/f && echo x > /etc/pyro-test"); e["exit_code"] != float64(0) {
		t.Fatalf("workspace exec: %v", e)
	}
	run("workspace", "stop", id)
	run("workspace", "start", id)
	e := run("workspace", "exec", id, "--", "cat", "/workspace/f", "/etc/pyro-test")
	if e["exit_code"] != float64(0) || e["stdout"] != "persisted\nx\n" {
		t.Fatalf("after restart: %v", e)
	}
	if st := run("workspace", "status", id); st["backend"] != "firecracker" {
		t.Errorf("restarted workspace backend %v", st["backend"])
	}
}

// TestRealFirecrackerWarm starts from a Firecracker template: the first
// run saves it on its way (pause, full snapshot), the next ones load it
// (a fresh Firecracker, load, resume) and run the identity step before
// the command: two clones differ in their kernel's uuid and hostname, and
// their clock is the host's.
func TestRealFirecrackerWarm(t *testing.T) {
	run := realPyro(t, "PYRO_TEMPLATES=auto")
	cmd := []string{"run", "--backend", "firecracker", "debian:12", "--", "sh", "-c", "cat /proc/sys/kernel/random/uuid; hostname; date +%s"}
	first := run(cmd...)
	if first["exit_code"] != float64(0) {
		t.Fatalf("first run: %v", first)
	}
	var outs []string
	for i := range 2 {
		r := run(cmd...)
		if r["start"] != "warm" || r["exit_code"] != float64(0) {
			t.Fatalf("run %d: %v, want a warm start", i, r)
		}
		f := strings.Fields(fmt.Sprint(r["stdout"]))
		if len(f) != 3 {
			t.Fatalf("run %d: stdout %q", i, r["stdout"])
		}
		var guest int64
		fmt.Sscan(f[2], &guest)
		if d := time.Now().Unix() - guest; d < -1 || d > 1 {
			t.Errorf("run %d: guest clock %d s off the host's", i, d)
		}
		outs = append(outs, f[0]+" "+f[1])
	}
	if a, b := strings.Fields(outs[0]), strings.Fields(outs[1]); a[0] == b[0] || a[1] == b[1] {
		t.Errorf("two clones share their uuid or hostname: %q and %q", outs[0], outs[1])
	}
}

// realPyro builds pyro and returns a runner of its --json commands, or
// skips, naming what is missing: a firecracker binary, a KVM that really
// runs a guest (not this project's build host: its /dev/kvm cannot), and
// debian:12 installed.
func realPyro(t *testing.T, extraEnv ...string) func(args ...string) map[string]any {
	t.Helper()
	if testing.Short() {
		t.Skip("boots real guests")
	}
	bin, err := FindBinary("")
	if err != nil {
		t.Skipf("firecracker is not installed (PATH or PYRO_FIRECRACKER_BIN): %v", err)
	}
	s, err := catalog.Open(catalog.Options{Registry: "none"})
	if err != nil {
		t.Skipf("no pyro cache: %v", err)
	}
	inst, err := s.Resolve(context.Background(), "debian:12")
	if err != nil {
		t.Skipf("debian:12 is not installed (pyro env pull debian:12): %v", err)
	}
	if k := ProbeKVM(t.Context(), inst.KernelPath); !k.Usable {
		t.Skipf("firecracker found at %s but KVM cannot run a guest here (%s: %s)", bin, k.Verdict, k.Reason)
	}

	root := repoRoot(t)
	tmp := shortDir(t)
	pyro := filepath.Join(tmp, "pyro")
	build := exec.Command("go", "build", "-o", pyro, "./cmd/pyro")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building pyro: %v\n%s", err, out)
	}
	env := append(os.Environ(), "PYRO_BIN="+pyro, "PYRO_AGENT_BIN="+pyro,
		"PYRO_STATE_DIR="+filepath.Join(tmp, "state"), "PYRO_RUNTIME_DIR="+filepath.Join(tmp, "run"), "PYRO_BACKEND=")
	env = append(env, extraEnv...)
	return func(args ...string) map[string]any {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, pyro, append([]string{"--json"}, args...)...)
		cmd.Env = env
		out, err := cmd.Output()
		var m map[string]any
		if jerr := json.Unmarshal(out, &m); jerr != nil {
			t.Fatalf("pyro %s: %v %v\n%s", strings.Join(args, " "), err, jerr, out)
		}
		return m
	}
}

// TestRealFirecrackerSuspend suspends a workspace through Firecracker's
// snapshot API (pause, full snapshot, the VMM ended) and resumes it (a
// fresh Firecracker, load, resume): a process started before the stop is
// still counting after the start, the clock is the host's, and the agent
// answers over a vsock connection made after the device's reset. Where
// Firecracker cannot run (this project's build host) it skips.
func TestRealFirecrackerSuspend(t *testing.T) {
	run := realPyro(t)
	ws := run("workspace", "create", "--backend", "firecracker", "debian:12")
	id, _ := ws["workspace_id"].(string)
	if id == "" {
		t.Fatalf("workspace create: %v", ws)
	}
	defer run("workspace", "delete", id)
	if e := run("workspace", "exec", id, "--", "sh", "-c", "nohup sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done' >/dev/null 2>&1 &"); e["exit_code"] != float64(0) {
		t.Fatalf("starting the counter: %v", e)
	}
	time.Sleep(time.Second)
	run("workspace", "stop", id)
	if st := run("workspace", "status", id); st["state"] != "suspended" {
		t.Fatalf("after stop: state %v, want suspended (%v)", st["state"], st)
	}
	time.Sleep(2 * time.Second)
	if st := run("workspace", "start", id); st["start"] != "resume" {
		t.Fatalf("start: %v, want a resume", st)
	}
	e := run("workspace", "exec", id, "--", "sh", "-c", "a=$(cat /tmp/count); sleep 0.5; b=$(cat /tmp/count); echo $a $b $(date +%s)")
	var a, b, guest int64
	if _, err := fmt.Sscan(fmt.Sprint(e["stdout"]), &a, &b, &guest); err != nil || a == 0 || b <= a {
		t.Fatalf("the counter did not survive suspend/resume: %v", e)
	}
	if d := time.Now().Unix() - guest; d < -1 || d > 1 {
		t.Errorf("guest clock %d s off the host's after resume", d)
	}
}

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Dir(file)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		if filepath.Dir(dir) == dir {
			t.Fatal("repository root not found")
		}
		dir = filepath.Dir(dir)
	}
}
