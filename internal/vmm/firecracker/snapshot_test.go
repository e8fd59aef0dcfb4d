package firecracker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/kvm"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// fakeBackend is a Backend whose firecracker is this test binary
// (fake_test.go), recording the requests of the next Start to a file.
func fakeBackend(t *testing.T) *Backend {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PYRO_FAKE_FIRECRACKER", "1")
	t.Setenv("PYRO_FIRECRACKER_JAILER", "")
	b, err := New(Options{Bin: exe, KVM: &kvm.Result{Verdict: kvm.Usable, Usable: true}, CacheDir: shortDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeMachineSpec is a machine in its own directory with its own disk
// files, as the engine hands one over; record is where the fake
// firecracker started for it records its requests.
func fakeMachineSpec(t *testing.T) (spec vmm.MachineSpec, record string) {
	t.Helper()
	dir := shortDir(t)
	exe, _ := os.Executable()
	spec = vmmSpec(dir)
	spec.Kernel = exe // an ELF: used as is
	for _, d := range spec.Disks {
		os.WriteFile(d.Path, nil, 0o600)
	}
	os.WriteFile(spec.Initrd, nil, 0o600)
	record = filepath.Join(dir, "requests.jsonl")
	t.Setenv("PYRO_FAKE_FC_RECORD", record)
	return spec, record
}

// recordedSteps validates every request the fake recorded against the API
// description and returns them as "METHOD /path", with their bodies.
func recordedSteps(t *testing.T, record string) ([]string, []json.RawMessage) {
	t.Helper()
	s := loadSpec(t)
	f, err := os.Open(record)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var steps []string
	var bodies []json.RawMessage
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r recorded
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if r.Method == http.MethodGet {
			continue // readiness polls of /version
		}
		for _, e := range s.ValidateRequest(r.Method, r.Path, r.Body) {
			t.Errorf("%s %s: %v (body %s)", r.Method, r.Path, e, r.Body)
		}
		if err := checkPathIDs(s, r.Path, r.Body); err != nil {
			t.Error(err)
		}
		if r.Status != http.StatusNoContent {
			t.Errorf("%s %s answered %d", r.Method, r.Path, r.Status)
		}
		steps = append(steps, r.Method+" "+r.Path)
		bodies = append(bodies, r.Body)
	}
	return steps, bodies
}

// echo runs one command in m's agent and checks its output.
func echo(ctx context.Context, t *testing.T, c *agentproto.Client, word string) {
	t.Helper()
	var out bytes.Buffer
	r, err := c.Exec(ctx, agentproto.ExecRequest{Argv: []string{"echo", word}}, nil, &out, nil)
	if err != nil || r.ExitCode != 0 || strings.TrimSpace(out.String()) != word {
		t.Fatalf("exec echo %s: %v %+v %q", word, err, r, out.String())
	}
}

func agentClient(ctx context.Context, t *testing.T, m vmm.Machine) *agentproto.Client {
	t.Helper()
	conn, err := m.AgentConn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := agentproto.NewClient(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestSnapshotAgainstFakeFirecracker drives a template's life through the
// fake API server: a machine booted and saved (pause, full snapshot, its
// files where the caller asked, its vsock connections reset), a clone
// restored from it in another directory with other disk files (load,
// resume, a fresh agent connection), the clone suspended and resumed in a
// third. Every request is checked against the API description.
func TestSnapshotAgainstFakeFirecracker(t *testing.T) {
	b := fakeBackend(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tdir := shortDir(t) // the template's files
	state, memory := filepath.Join(tdir, "state"), filepath.Join(tdir, "memory")

	// The template's machine: booted cold, saved.
	build, rec := fakeMachineSpec(t)
	build.Memory = &vmm.MemoryFile{Path: memory, Shared: true}
	m, err := b.Start(ctx, build)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Kill()
	c := agentClient(ctx, t, m)
	echo(ctx, t, c, "booted")
	if err := b.Save(ctx, build.Dir, vmm.SaveOptions{State: state, Memory: memory, IgnoreShared: true}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{state, memory} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want a 0600 file", p, err, fi)
		}
	}
	// The snapshot reset the vsock device: the open connection is gone.
	if _, err := c.Exec(ctx, agentproto.ExecRequest{Argv: []string{"true"}}, nil, nil, nil); err == nil {
		t.Error("the agent connection survived the snapshot's vsock reset")
	}
	m.Kill()
	m.Wait()
	steps, _ := recordedSteps(t, rec)
	want := []string{"PUT /machine-config", "PUT /boot-source", "PUT /drives/rootfs", "PUT /drives/scratch", "PUT /vsock", "PUT /actions",
		"PATCH /vm", "PUT /snapshot/create"}
	if !reflect.DeepEqual(steps, want) {
		t.Errorf("template requests\n got %q\nwant %q", steps, want)
	}

	// A clone: its own directory and disks, the template's memory, private.
	clone, rec := fakeMachineSpec(t)
	clone.Memory = &vmm.MemoryFile{Path: memory}
	clone.Restore = &vmm.Restore{State: state, IgnoreShared: true}
	m2, err := b.Start(ctx, clone)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Kill()
	c2 := agentClient(ctx, t, m2)
	echo(ctx, t, c2, "cloned")
	steps, bodies := recordedSteps(t, rec)
	if want := []string{"PUT /snapshot/load", "PATCH /vm"}; !reflect.DeepEqual(steps, want) {
		t.Fatalf("clone requests\n got %q\nwant %q", steps, want)
	}
	var load SnapshotLoadParams
	json.Unmarshal(bodies[0], &load)
	if load.SnapshotPath != state || load.MemBackend.BackendPath != memory || load.MemBackend.BackendType != MemoryBackendFile || load.ResumeVM {
		t.Errorf("load %s", bodies[0])
	}
	if con, _ := os.ReadFile(clone.Console); !strings.Contains(string(con), "resumed from its snapshot") {
		t.Errorf("clone console %q", con)
	}

	// The clone suspended (its RAM in its own file) and resumed elsewhere.
	sdir := shortDir(t)
	sstate, smem := filepath.Join(sdir, "suspend.state"), filepath.Join(sdir, "suspend.mem")
	if err := Save(ctx, clone.Dir, vmm.SaveOptions{State: sstate, Memory: smem}); err != nil {
		t.Fatal(err)
	}
	m2.Kill()
	m2.Wait()
	resumed, rec := fakeMachineSpec(t)
	resumed.Restore = &vmm.Restore{State: sstate, Memory: smem}
	m3, err := b.Start(ctx, resumed)
	if err != nil {
		t.Fatal(err)
	}
	defer m3.Kill()
	echo(ctx, t, agentClient(ctx, t, m3), "resumed")
	steps, bodies = recordedSteps(t, rec)
	if want := []string{"PUT /snapshot/load", "PATCH /vm"}; !reflect.DeepEqual(steps, want) {
		t.Errorf("resume requests\n got %q\nwant %q", steps, want)
	}
	json.Unmarshal(bodies[0], &load)
	if load.MemBackend.BackendPath != smem {
		t.Errorf("resume loaded memory %q, want %q", load.MemBackend.BackendPath, smem)
	}
}

// TestSnapshotFailures: every failure is classed, with a hint, and a
// failed restore is vmm.ErrNotRestorable (the caller boots cold).
func TestSnapshotFailures(t *testing.T) {
	b := fakeBackend(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tdir := shortDir(t)
	state, memory := filepath.Join(tdir, "state"), filepath.Join(tdir, "memory")
	build, _ := fakeMachineSpec(t)
	m, err := b.Start(ctx, build)
	if err != nil {
		t.Fatal(err)
	}
	agentClient(ctx, t, m)
	if err := Save(ctx, build.Dir, vmm.SaveOptions{State: state, Memory: memory}); err != nil {
		t.Fatal(err)
	}
	m.Kill()
	m.Wait()
	netDir := shortDir(t)
	writeMachine(netDir, machineRecord{APISocket: filepath.Join(netDir, APISocket), Network: true})

	restore := func(edit func(*vmm.MachineSpec)) error {
		spec, _ := fakeMachineSpec(t)
		spec.Restore = &vmm.Restore{State: state, Memory: memory}
		edit(&spec)
		m, err := b.Start(ctx, spec)
		if err == nil {
			m.Kill()
		}
		return err
	}
	for _, tc := range []struct {
		name        string
		err         error
		class       error
		restorable  bool // false: vmm.ErrNotRestorable
		msg, hintIn string
	}{
		{"a clone's drive is missing", restore(func(s *vmm.MachineSpec) { os.Remove(s.Disks[1].Path) }),
			errdefs.ErrUnavailable, false, "block device scratch", "boots the machine afresh"},
		{"the state file is missing", restore(func(s *vmm.MachineSpec) { s.Restore.State = filepath.Join(tdir, "gone") }),
			errdefs.ErrUnavailable, false, "no such file", "boots the machine afresh"},
		{"no memory file named", restore(func(s *vmm.MachineSpec) { s.Restore.Memory = "" }),
			errdefs.ErrUnavailable, false, "names no memory file", "boots the machine afresh"},
		{"a network", restore(func(s *vmm.MachineSpec) { s.Network = true }),
			errdefs.ErrUnavailable, false, "with a network", "boots the machine afresh"},
		{"shared memory", restore(func(s *vmm.MachineSpec) { s.Memory = &vmm.MemoryFile{Path: memory, Shared: true} }),
			errdefs.ErrInvalidArgument, true, "shared memory", "bug"},
		{"save without a memory file", Save(ctx, build.Dir, vmm.SaveOptions{State: state}),
			errdefs.ErrInvalidArgument, true, "two files", "bug"},
		{"save of no machine", Save(ctx, shortDir(t), vmm.SaveOptions{State: state, Memory: memory}),
			errdefs.ErrFailedPrecondition, true, "no firecracker machine", "still running"},
		{"save of a networked machine", Save(ctx, netDir, vmm.SaveOptions{State: state, Memory: memory}),
			errdefs.ErrFailedPrecondition, true, "with a network", "--cold"},
		{"save of a machine that is gone", Save(ctx, build.Dir, vmm.SaveOptions{State: state, Memory: memory}),
			errdefs.ErrUnavailable, true, "saving the machine (pause)", "firecracker.log"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err
			switch {
			case err == nil:
				t.Fatal("no error")
			case !errors.Is(err, tc.class):
				t.Errorf("class %v, want %v: %v", errdefs.ClassOf(err), tc.class, err)
			case errors.Is(err, vmm.ErrNotRestorable) == tc.restorable:
				t.Errorf("ErrNotRestorable %v, want %v: %v", !tc.restorable, tc.restorable, err)
			case !strings.Contains(strings.ToLower(err.Error()), tc.msg):
				t.Errorf("error %q lacks %q", err, tc.msg)
			case !strings.Contains(errdefs.HintOf(err), tc.hintIn):
				t.Errorf("hint %q lacks %q", errdefs.HintOf(err), tc.hintIn)
			}
		})
	}
}

// TestJailerStagesSnapshotFiles: under the jailer a restore stages the
// state and memory files and the drives under the fixed names the
// snapshot refers to, never the kernel.
func TestJailerStagesSnapshotFiles(t *testing.T) {
	dir := shortDir(t)
	spec := vmmSpec(dir)
	spec.Memory = &vmm.MemoryFile{Path: filepath.Join(dir, "memory")}
	spec.Restore = &vmm.Restore{State: filepath.Join(dir, "state"), IgnoreShared: true}
	for _, p := range []string{spec.Kernel, spec.Memory.Path, spec.Restore.State, spec.Disks[0].Path, spec.Disks[1].Path} {
		os.WriteFile(p, []byte(p), 0o600)
	}
	root := filepath.Join(dir, "jail")
	os.MkdirAll(root, 0o700)
	j := &Jailer{Bin: "/bin/false", UID: os.Getuid(), GID: os.Getgid()}
	in, err := j.stageAll(root, spec)
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]string{spec.Restore.State: "/" + jailState, spec.Memory.Path: "/" + jailMemory,
		spec.Disks[0].Path: "/drive-rootfs", spec.Disks[1].Path: "/drive-scratch"} {
		if got := in(host); got != want {
			t.Errorf("%s is %q in the jail, want %q", host, got, want)
		}
		if data, _ := os.ReadFile(filepath.Join(root, want)); string(data) != host {
			t.Errorf("%s in the jail holds %q", want, data)
		}
	}
	if _, err := os.Stat(filepath.Join(root, filepath.Base(spec.Kernel))); err == nil {
		t.Error("a restore staged the kernel")
	}
}

// A template's key names the machine by its boot requests: the same
// spec the same digest; another shape, kernel argument or the jailer
// another.
func TestMachineDigest(t *testing.T) {
	t.Setenv("PYRO_FIRECRACKER_JAILER", "")
	base := vmmSpec("/pyro-template/run")
	d0, err := MachineDigest(base, 0)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := MachineDigest(base, 0); again != d0 {
		t.Error("the digest of one spec changed")
	}
	more := base
	more.VCPUs = 4
	args := base
	args.Cmdline += " pyro_x=1"
	for name, spec := range map[string]vmm.MachineSpec{"vcpus": more, "cmdline": args} {
		if d, _ := MachineDigest(spec, 0); d == d0 {
			t.Errorf("%s: same digest", name)
		}
	}
	t.Setenv("PYRO_FIRECRACKER_JAILER", "/usr/bin/jailer")
	t.Setenv("PYRO_FIRECRACKER_UID", "123")
	t.Setenv("PYRO_FIRECRACKER_GID", "123")
	if d, _ := MachineDigest(base, 0); d == d0 {
		t.Error("jailed: same digest")
	}
}
