package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/progress"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// These tests drive the engine's policy over the host-compat backend: no
// guest, no environment, no QEMU. Each VM's supervisor is this test binary
// re-executed with the supervisor verb, as pyro re-executes itself.
func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == SuperviseCommand {
		if err := RunSupervisor(context.Background(), os.Args[2], slog.New(slog.NewTextHandler(os.Stderr, nil))); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// newEngine is an engine with private directories that runs everything on
// the host (backend host_compat).
func newEngine(t *testing.T, backend string) *Engine {
	t.Helper()
	run, err := os.MkdirTemp("", "pyro-engine-")
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Options{CacheDir: t.TempDir(), StateDir: t.TempDir(), RuntimeDir: run, Backend: backend, Binary: exe,
		BootTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, st := range []string{"vms", "workspaces"} {
			ids, _ := e.storeOf(strings.TrimSuffix(st, "s")).IDs()
			for _, id := range ids {
				e.remove(context.Background(), e.storeOf(strings.TrimSuffix(st, "s")), id)
			}
		}
		os.RemoveAll(run)
	})
	return e
}

// hostOnly is the shape of a VM these tests can run.
var hostOnly = api.Shape{AllowHostCompat: true}

func TestValidateCreateDefaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		ttl  int
		in   api.CreateVMOptions
		want api.CreateVMOptions
	}{
		{"vm", api.DefaultVMTTLSeconds, api.CreateVMOptions{Environment: "debian:12"},
			api.CreateVMOptions{Environment: "debian:12", Shape: api.Shape{VCPUCount: 1, MemMiB: 1024, TTLSeconds: 600}}},
		{"workspace", api.DefaultWorkspaceTTLSeconds, api.CreateVMOptions{Environment: "debian:12-base"},
			api.CreateVMOptions{Environment: "debian:12-base", Shape: api.Shape{VCPUCount: 1, MemMiB: 1024, TTLSeconds: 3600}}},
		{"kept", api.DefaultVMTTLSeconds, api.CreateVMOptions{Environment: "debian:12", Shape: api.Shape{VCPUCount: 1, MemMiB: 256, TTLSeconds: 5, Network: true}},
			api.CreateVMOptions{Environment: "debian:12", Shape: api.Shape{VCPUCount: 1, MemMiB: 256, TTLSeconds: 5, Network: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.in
			if err := validateCreate(&got, tc.ttl); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateCreateRejects(t *testing.T) {
	maxMem := vmm.MaxGuestMemMiB()
	for _, tc := range []struct {
		name  string
		in    api.CreateVMOptions
		class error
		text  string
	}{
		{"unknown environment", api.CreateVMOptions{Environment: "debian:11"}, errdefs.ErrNotFound, `unknown environment "debian:11"`},
		{"too many vcpus", api.CreateVMOptions{Environment: "debian:12", Shape: api.Shape{VCPUCount: runtime.NumCPU() + 1}}, errdefs.ErrInvalidArgument, "vcpu_count"},
		{"negative vcpus", api.CreateVMOptions{Environment: "debian:12", Shape: api.Shape{VCPUCount: -1}}, errdefs.ErrInvalidArgument, "vcpu_count -1"},
		{"too little memory", api.CreateVMOptions{Environment: "debian:12", Shape: api.Shape{MemMiB: api.MinMemMiB - 1}}, errdefs.ErrInvalidArgument, "mem_mib 127"},
		// One rule with the backends: what vmm offers one guest.
		{"too much memory", api.CreateVMOptions{Environment: "debian:12", Shape: api.Shape{MemMiB: maxMem + 1}}, errdefs.ErrInvalidArgument, fmt.Sprintf("mem_mib %d", maxMem+1)},
		{"negative ttl", api.CreateVMOptions{Environment: "debian:12", Shape: api.Shape{TTLSeconds: -5}}, errdefs.ErrInvalidArgument, "ttl_seconds -5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validateCreate(&tc.in, api.DefaultVMTTLSeconds)
			if !errors.Is(err, tc.class) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %v, want %v containing %q", err, tc.class, tc.text)
			}
		})
	}
	ok := api.CreateVMOptions{Environment: "debian:12", Shape: api.Shape{MemMiB: maxMem}}
	if err := validateCreate(&ok, 1); err != nil {
		t.Errorf("the maximum itself: %v", err)
	}
}

func TestValidateExec(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      api.ExecOptions
		text    string // "" means valid
		timeout int
	}{
		{"shell", api.ExecOptions{Command: "true"}, "", api.DefaultTimeoutSeconds},
		{"argv", api.ExecOptions{Argv: []string{"true"}, TimeoutSeconds: 5}, "", 5},
		{"both", api.ExecOptions{Command: "true", Argv: []string{"true"}}, "both a shell command and an argv", 0},
		{"none", api.ExecOptions{}, "empty command", 0},
		{"empty name", api.ExecOptions{Argv: []string{""}}, "empty command name", 0},
		{"negative timeout", api.ExecOptions{Command: "true", TimeoutSeconds: -1}, "timeout_seconds -1", 0},
		{"timeout too long", api.ExecOptions{Command: "true", TimeoutSeconds: api.MaxTimeoutSeconds + 1}, "out of range", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validateExec(&tc.in)
			if tc.text == "" {
				if err != nil || tc.in.TimeoutSeconds != tc.timeout {
					t.Errorf("err %v, timeout %d; want nil, %d", err, tc.in.TimeoutSeconds, tc.timeout)
				}
				return
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %v, want invalid argument containing %q", err, tc.text)
			}
		})
	}
}

// Host compatibility is a fallback only when allowed, and never when a
// guest backend was asked for by name.
func TestHostCompatFallback(t *testing.T) {
	t.Setenv("PYRO_QEMU_BIN", "/nonexistent/qemu-system-x86_64")
	t.Setenv("PATH", t.TempDir()) // no firecracker, no qemu-img
	for _, tc := range []struct {
		name, backend string
		allow         bool
		mode          string
		class         error
		hint          string
	}{
		{"auto, not allowed", BackendAuto, false, "", errdefs.ErrUnavailable, "`allow_host_compat`"},
		{"auto, allowed", BackendAuto, true, api.ModeHostCompat, nil, ""},
		{"qemu asked for", BackendQEMU, true, "", errdefs.ErrUnavailable, ""},
		{"host_compat, not allowed", BackendHostCompat, false, "", errdefs.ErrInvalidArgument, "`allow_host_compat`"},
		{"host_compat, allowed", BackendHostCompat, true, api.ModeHostCompat, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, tc.backend)
			vm, err := e.CreateVM(t.Context(), api.CreateVMOptions{Environment: "debian:12", Shape: api.Shape{AllowHostCompat: tc.allow}})
			if tc.class != nil {
				if !errors.Is(err, tc.class) || !strings.Contains(errdefs.HintOf(err), tc.hint) {
					t.Fatalf("error %v (hint %q), want %v with hint %q", err, errdefs.HintOf(err), tc.class, tc.hint)
				}
				if vms, _ := e.ListVMs(t.Context()); len(vms) != 0 {
					t.Errorf("a failed create left %d VM(s)", len(vms))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if vm.ExecutionMode != tc.mode || vm.Backend != "host_compat" || vm.State != api.StateCreated || vm.Running {
				t.Errorf("vm %+v", vm)
			}
		})
	}
}

func TestRunHostCompat(t *testing.T) {
	e := newEngine(t, BackendHostCompat)
	var events []api.Progress
	var mu sync.Mutex
	ctx := progress.WithFunc(t.Context(), func(p api.Progress) { mu.Lock(); events = append(events, p); mu.Unlock() })
	var out strings.Builder
	res, err := e.Run(ctx, api.RunOptions{Environment: "debian:12", Shape: hostOnly, Command: "echo hi; echo err >&2; exit 3", Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 3 || res.Stdout != "hi\n" || res.Stderr != "err\n" || out.String() != "hi\n" ||
		res.ExecutionMode != api.ModeHostCompat || res.VCPUCount != 1 || res.MemMiB != 1024 {
		t.Errorf("result %+v", res)
	}
	if diff := cmp.Diff([]string{"/bin/sh", "-c", "echo hi; echo err >&2; exit 3"}, res.Command); diff != "" {
		t.Errorf("command (-want +got):\n%s", diff)
	}
	// One-shot: the VM is gone.
	if vms, err := e.ListVMs(t.Context()); err != nil || len(vms) != 0 {
		t.Errorf("VMs left: %v %v", vms, err)
	}
	var phases []string
	for _, p := range events {
		if p.Op == "run" && (len(phases) == 0 || phases[len(phases)-1] != p.Phase) {
			phases = append(phases, p.Phase)
		}
	}
	if diff := cmp.Diff([]string{"environment", "disk", "boot", "exec", "done"}, phases); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
	if last := events[len(events)-1]; last.PhaseIndex != 0 || last.ID != res.VMID || last.ElapsedMs <= 0 {
		t.Errorf("last report %+v", last)
	}
}

func TestVMLifecycle(t *testing.T) {
	e := newEngine(t, BackendHostCompat)
	ctx := t.Context()
	vm, err := e.CreateVM(ctx, api.CreateVMOptions{Environment: "debian:12", Shape: hostOnly})
	if err != nil {
		t.Fatal(err)
	}
	if vm.TTLSeconds != api.DefaultVMTTLSeconds || !vm.ExpiresAt.Equal(vm.CreatedAt.Add(600*time.Second)) {
		t.Errorf("ttl %d, created %v, expires %v", vm.TTLSeconds, vm.CreatedAt, vm.ExpiresAt)
	}
	// Any unambiguous prefix names it.
	started, err := e.StartVM(ctx, vm.VMID[:6])
	if err != nil || !started.Running || started.State != api.StateRunning {
		t.Fatalf("start: %+v %v", started, err)
	}
	again, err := e.StartVM(ctx, vm.VMID)
	if err != nil || again.StartedAt == nil || !again.StartedAt.Equal(*started.StartedAt) {
		t.Errorf("starting a running VM booted it again: %+v %v", again, err)
	}
	stopped, err := e.StopVM(ctx, vm.VMID)
	if err != nil || stopped.Running || stopped.State != api.StateStopped {
		t.Errorf("stop: %+v %v", stopped, err)
	}
	// exec boots it and then deletes it.
	res, err := e.ExecVM(ctx, vm.VMID, api.ExecOptions{Argv: []string{"echo", "once"}})
	if err != nil || res.Stdout != "once\n" || !res.Cleaned {
		t.Fatalf("exec: %+v %v", res, err)
	}
	if _, err := e.StatusVM(ctx, vm.VMID); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("status after exec: %v, want not found", err)
	}
}

func TestIDPrefixes(t *testing.T) {
	e := newEngine(t, BackendHostCompat)
	for _, id := range []string{"ab12000000000001", "ab12000000000002", "cd34000000000003"} {
		if _, err := e.vms.Create(id); err != nil {
			t.Fatal(err)
		}
		if err := e.vms.Write(id, &vmRecord{ID: id, Kind: kindVM, Machine: api.Machine{Environment: "debian:12", State: api.StateStopped}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		ref   string
		id    string
		class error
	}{
		{"cd", "cd34000000000003", nil},
		{"ab12000000000002", "ab12000000000002", nil},
		{"ab12", "", errdefs.ErrConflict},
		{"ff", "", errdefs.ErrNotFound},
		{"", "", errdefs.ErrInvalidArgument},
		{"../x", "", errdefs.ErrInvalidArgument},
	} {
		vm, err := e.StatusVM(t.Context(), tc.ref)
		switch {
		case tc.class != nil && !errors.Is(err, tc.class):
			t.Errorf("status %q: %v, want %v", tc.ref, err, tc.class)
		case tc.class == nil && (err != nil || vm.VMID != tc.id):
			t.Errorf("status %q: %+v %v, want %s", tc.ref, vm, err, tc.id)
		}
	}
	// VMs and workspaces are apart: a VM id is no workspace.
	if _, err := e.StatusWorkspace(t.Context(), "cd34"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("workspace status of a VM id: %v", err)
	}
}

func TestReapExpired(t *testing.T) {
	e := newEngine(t, BackendHostCompat)
	ctx := t.Context()
	old, err := e.CreateVM(ctx, api.CreateVMOptions{Environment: "debian:12", Shape: api.Shape{AllowHostCompat: true, TTLSeconds: 1}})
	if err != nil {
		t.Fatal(err)
	}
	ws, err := e.CreateWorkspace(ctx, api.CreateWorkspaceOptions{Environment: "debian:12", Shape: api.Shape{AllowHostCompat: true, TTLSeconds: 1}})
	if err != nil {
		t.Fatal(err)
	}
	young, err := e.CreateVM(ctx, api.CreateVMOptions{Environment: "debian:12", Shape: hostOnly})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	r, err := e.ReapExpired(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{old.VMID, ws.WorkspaceID}
	slices.Sort(r.Reaped)
	slices.Sort(want)
	if diff := cmp.Diff(want, r.Reaped); diff != "" || r.Count != 2 {
		t.Errorf("reaped (-want +got):\n%s", diff)
	}
	if _, err := e.StatusVM(ctx, young.VMID); err != nil {
		t.Errorf("the young VM went too: %v", err)
	}
	// Creating reaps too, so a TTL holds even if nobody calls reap.
	third, err := e.CreateVM(ctx, api.CreateVMOptions{Environment: "debian:12", Shape: api.Shape{AllowHostCompat: true, TTLSeconds: 1}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, err := e.CreateVM(ctx, api.CreateVMOptions{Environment: "debian:12", Shape: hostOnly}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.StatusVM(ctx, third.VMID); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("expired VM still there after a create: %v", err)
	}
}

func TestWorkspaceHostCompat(t *testing.T) {
	e := newEngine(t, BackendHostCompat)
	ctx := t.Context()
	seed := t.TempDir()
	for i := range 300 {
		os.WriteFile(filepath.Join(seed, fmt.Sprintf("f%03d.txt", i)), []byte("x"), 0o644)
	}
	var mu sync.Mutex
	var events []api.Progress
	pctx := progress.WithFunc(ctx, func(p api.Progress) { mu.Lock(); events = append(events, p); mu.Unlock() })
	ws, err := e.CreateWorkspace(pctx, api.CreateWorkspaceOptions{Environment: "debian:12", Shape: hostOnly, SeedPath: seed})
	if err != nil {
		t.Fatal(err)
	}
	if ws.WorkspaceSeed.Mode != "directory" || ws.WorkspaceSeed.Entries != 300 || !ws.Running || ws.TTLSeconds != api.DefaultWorkspaceTTLSeconds {
		t.Errorf("workspace %+v", ws)
	}
	// Seeding counts files up to the total the check found.
	var files []int64
	for _, p := range events {
		if p.Phase == phaseSeed && p.Unit == api.UnitFiles {
			if p.Total != 300 || p.PhaseIndex != 4 || p.PhaseCount != 4 {
				t.Errorf("seed report %+v", p)
			}
			files = append(files, p.Done)
		}
	}
	if len(files) == 0 || files[len(files)-1] != 300 || !slices.IsSorted(files) {
		t.Errorf("seed counts %v", files)
	}

	// Concurrent commands get distinct sequence numbers, all logged.
	var wg sync.WaitGroup
	seqs := make([]int, 5)
	for i := range seqs {
		wg.Go(func() {
			r, err := e.ExecWorkspace(ctx, ws.WorkspaceID[:8], api.ExecOptions{Command: fmt.Sprintf("echo %d > n%d", i, i)})
			if err != nil {
				t.Error(err)
				return
			}
			seqs[i] = r.Sequence
		})
	}
	wg.Wait()
	slices.Sort(seqs)
	if diff := cmp.Diff([]int{1, 2, 3, 4, 5}, seqs); diff != "" {
		t.Errorf("sequences (-want +got):\n%s", diff)
	}
	r, err := e.ExecWorkspace(ctx, ws.WorkspaceID, api.ExecOptions{Command: "ls | wc -l; pwd"})
	if err != nil || r.Stdout != "305\n"+filepath.Join(e.wss.Path(ws.WorkspaceID), "hostroot", "workspace")+"\n" || r.Cwd != api.WorkspaceRoot {
		t.Errorf("exec %+v %v", r, err)
	}
	logs, err := e.LogsWorkspace(ctx, ws.WorkspaceID)
	if err != nil || logs.Count != 6 || logs.Entries[5].Sequence != 6 {
		t.Errorf("logs %+v %v", logs, err)
	}

	// A push lands under dest; a dest outside /workspace is refused first.
	more := t.TempDir()
	os.WriteFile(filepath.Join(more, "extra"), []byte("y"), 0o644)
	if _, err := e.PushWorkspaceSync(ctx, ws.WorkspaceID, more, "/etc"); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(errdefs.HintOf(err), "`dest`") {
		t.Errorf("push to /etc: %v", err)
	}
	sync, err := e.PushWorkspaceSync(ctx, ws.WorkspaceID, more, "sub")
	if err != nil || sync.Dest != "/workspace/sub" || sync.Entries != 1 {
		t.Errorf("push %+v %v", sync, err)
	}

	// The VM process dying is seen, and the next exec boots it again.
	rec, err := e.read(e.wss, ws.WorkspaceID)
	if err != nil {
		t.Fatal(err)
	}
	syscall.Kill(-rec.SupervisorPID, syscall.SIGKILL)
	for deadline := time.Now().Add(5 * time.Second); e.alive(rec) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	st, err := e.StatusWorkspace(ctx, ws.WorkspaceID)
	if err != nil || st.Running || st.State != api.StateExited || !strings.Contains(st.Note, "next exec boots it again") {
		t.Errorf("status after kill %+v %v", st, err)
	}
	r, err = e.ExecWorkspace(ctx, ws.WorkspaceID, api.ExecOptions{Argv: []string{"cat", "sub/extra", "n3"}})
	if err != nil || !r.Restarted || r.Stdout != "y3\n" {
		t.Errorf("exec after kill %+v %v", r, err)
	}

	if _, err := e.DeleteWorkspace(ctx, ws.WorkspaceID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ExecWorkspace(ctx, ws.WorkspaceID, api.ExecOptions{Command: "true"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("exec after delete: %v", err)
	}
}

// Wait returns once the calls in flight have returned.
func TestWait(t *testing.T) {
	e := newEngine(t, BackendHostCompat)
	done := make(chan struct{})
	// Wait once the command runs: the run is then surely in flight.
	running := make(chan struct{})
	var once sync.Once
	pctx := progress.WithFunc(t.Context(), func(p api.Progress) {
		if p.Phase == phaseExec {
			once.Do(func() { close(running) })
		}
	})
	go func() {
		defer close(done)
		e.Run(pctx, api.RunOptions{Environment: "debian:12", Shape: hostOnly, Command: "sleep 0.5"})
	}()
	select {
	case <-running:
	case <-done:
		t.Fatal("the run ended before its command ran")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := e.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	// The run's last work is deleting its VM: none may be left once Wait
	// returns. (The goroutine's own return may lag Run's by a moment.)
	if vms, err := e.ListVMs(ctx); err != nil || len(vms) != 0 {
		t.Errorf("Wait returned before the run: VMs %v, %v", vms, err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Error("the run did not return after Wait")
	}
}

// A record written by pyro 2.4 loads, and writes back with the same keys.
func TestRecord24(t *testing.T) {
	const old = `{"id":"0123456789abcdef","kind":"workspace","environment":"debian:12","vcpu_count":1,"mem_mib":512,
	"ttl_seconds":3600,"network":false,"allow_host_compat":false,"execution_mode":"guest","backend":"qemu-tcg",
	"state":"running","created_at":"2026-11-25T10:00:00Z","expires_at":"2026-11-25T11:00:00Z",
	"started_at":"2026-11-25T10:00:03Z","boot_ms":2900,"supervisor_pid":4242,"vmm_pid":4243,
	"env":{"name":"debian:12","version":"2.4.0-1","kernel_version":"6.1.0-41-cloud-amd64","kernel_path":"/k","modules_path":"/m",
	"rootfs_path":"/r","kernel_digest":"sha256:k","modules_digest":"sha256:m","rootfs_digest":"sha256:r"},
	"disk":"/s/disk.qcow2","workspace":{"seed":{"mode":"empty","entries":0,"bytes":0},"next_sequence":3,"command_count":2,"restarts":1}}`
	var rec vmRecord
	if err := json.Unmarshal([]byte(old), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.MemMiB != 512 || rec.ExecutionMode != api.ModeGuest || rec.VMMPid != 4243 || rec.SupervisorPID != 4242 ||
		rec.Env.RootfsPath != "/r" || rec.Workspace.NextSequence != 3 || rec.BackendKind != "" || rec.StartedAt == nil {
		t.Errorf("record %+v", rec)
	}
	data, _ := json.Marshal(&rec)
	var before, after map[string]any
	json.Unmarshal([]byte(old), &before)
	json.Unmarshal(data, &after)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("keys written back (-2.4 +now):\n%s", diff)
	}
	w := rec.workspaceView(false, "")
	if w.VMMPid != 0 || w.CommandCount != 2 || w.Restarts != 1 || w.MemMiB != 512 {
		t.Errorf("view %+v", w)
	}
}
