package firecracker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/internal/agent"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/kvm"
)

// The test binary doubles as a fake firecracker: with
// PYRO_FAKE_FIRECRACKER=1 it serves the API on --api-sock like Firecracker
// (204 on accepted PUTs, 400 + fault_message otherwise, pre-boot-only
// resources refused after InstanceStart), records every request, and after
// InstanceStart serves the vsock device with the real agent handler.
func TestMain(m *testing.M) {
	if os.Getenv("PYRO_FAKE_FIRECRACKER") == "1" {
		fakeFirecracker(os.Args[1:])
		return
	}
	os.Exit(m.Run())
}

type recorded struct {
	Method string          `json:"method"`
	Path   string          `json:"path"`
	Body   json.RawMessage `json:"body,omitempty"`
	Status int             `json:"status"`
}

func fakeFirecracker(args []string) {
	if slices.Contains(args, "--version") {
		fmt.Println("Firecracker v1.12.0-fake")
		return
	}
	var sock string
	for i, a := range args {
		if a == "--api-sock" && i+1 < len(args) {
			sock = args[i+1]
		}
	}
	recf, _ := os.OpenFile(os.Getenv("PYRO_FAKE_FC_RECORD"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake firecracker:", err)
		os.Exit(1)
	}
	fsRoot, _ := os.MkdirTemp("", "fcroot")
	f := &fakeFC{configured: map[string]json.RawMessage{}, fsRoot: fsRoot}
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		status, fault := f.handle(r.Method, r.URL.Path, body)
		rec, _ := json.Marshal(recorded{Method: r.Method, Path: r.URL.Path, Body: body, Status: status})
		recf.Write(append(rec, '\n'))
		switch {
		case status == http.StatusOK:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			w.Write([]byte(`{"firecracker_version":"1.12.0-fake"}`))
		case fault != "":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			json.NewEncoder(w).Encode(map[string]string{"fault_message": fault})
		default:
			w.WriteHeader(status)
		}
		if f.exit {
			// Firecracker ends itself after a failed snapshot load.
			w.(http.Flusher).Flush()
			go func() { time.Sleep(20 * time.Millisecond); os.Exit(1) }()
		}
	}))
}

// fakeFC is the fake's API state. Its snapshot is a JSON file of the
// configured resources; its "memory" a line naming the machine.
type fakeFC struct {
	mu         sync.Mutex
	configured map[string]json.RawMessage // PUT path -> body, pre-boot
	started    bool                       // booted or loaded
	loaded     bool
	paused     bool
	vsock      *fakeVsock
	fsRoot     string
	exit       bool
}

const fakeMemory = "fake guest memory\n"

const notAfterStart = "The requested operation is not supported after starting the microVM."

func (f *fakeFC) handle(method, path string, body []byte) (int, string) {
	bad := func(msg string) (int, string) { return http.StatusBadRequest, msg }
	switch {
	case method == http.MethodGet && path == "/version":
		return http.StatusOK, ""
	case method == http.MethodPatch && path == "/vm":
		var v VMState
		json.Unmarshal(body, &v)
		if !f.started {
			return bad("The requested operation is not supported before starting the microVM.")
		}
		f.paused = v.State == VMPaused
		if !f.paused && f.vsock == nil {
			f.serveVsock() // a loaded machine runs from here
			fmt.Println("fake firecracker: guest resumed from its snapshot")
		}
		return http.StatusNoContent, ""
	case method != http.MethodPut:
		return bad("unsupported method")
	case path == "/snapshot/create":
		var c SnapshotCreateParams
		json.Unmarshal(body, &c)
		if !f.started || !f.paused {
			return bad("Create snapshot error: the microVM must be paused")
		}
		state, _ := json.Marshal(f.configured)
		if err := os.WriteFile(c.SnapshotPath, state, 0o644); err != nil {
			return bad("Create snapshot error: " + err.Error())
		}
		if err := os.WriteFile(c.MemFilePath, []byte(fakeMemory), 0o644); err != nil {
			return bad("Create snapshot error: " + err.Error())
		}
		// VIRTIO_VSOCK_EVENT_TRANSPORT_RESET: open connections end.
		if f.vsock != nil {
			f.vsock.reset()
		}
		return http.StatusNoContent, ""
	case path == "/snapshot/load":
		if f.started || len(f.configured) > 0 {
			return bad("Loading a microVM snapshot not allowed after configuring boot-specific resources.")
		}
		var l SnapshotLoadParams
		json.Unmarshal(body, &l)
		f.exit = true // from here, a failure ends the process
		state, err := os.ReadFile(l.SnapshotPath)
		if err != nil || json.Unmarshal(state, &f.configured) != nil {
			return bad(fmt.Sprintf("Load snapshot error: Cannot open snapshot file: %v", err))
		}
		if l.MemBackend == nil || l.MemBackend.BackendType != MemoryBackendFile {
			return bad("Load snapshot error: only the File memory backend is faked")
		}
		if mem, err := os.ReadFile(l.MemBackend.BackendPath); err != nil || string(mem) != fakeMemory {
			return bad(fmt.Sprintf("Load snapshot error: Cannot load the memory file: %v", err))
		}
		// The drives and the vsock socket are where the snapshot says,
		// relative to this process's working directory.
		for p, b := range f.configured {
			if !strings.HasPrefix(p, "/drives/") {
				continue
			}
			var d Drive
			json.Unmarshal(b, &d)
			if _, err := os.Stat(d.PathOnHost); err != nil {
				return bad(fmt.Sprintf("Load snapshot error: Failed to restore from snapshot: block device %s: %v", d.DriveID, err))
			}
		}
		var v Vsock
		json.Unmarshal(f.configured["/vsock"], &v)
		if _, err := os.Stat(v.UDSPath); err == nil {
			return bad("Load snapshot error: VsockUnixBackend: Error binding to host-side Unix socket: Address in use (os error 98)")
		}
		f.exit = false
		f.started, f.loaded, f.paused = true, true, !l.ResumeVM
		if l.ResumeVM {
			f.serveVsock()
		}
		return http.StatusNoContent, ""
	case path == "/actions":
		var a InstanceActionInfo
		json.Unmarshal(body, &a)
		switch {
		case a.ActionType != ActionInstanceStart:
		case f.started:
			return bad(notAfterStart)
		case f.configured["/boot-source"] == nil:
			return bad("Cannot start microvm without kernel configuration.")
		default:
			f.started = true
			f.serveVsock()
			fmt.Println("fake firecracker: guest booted")
		}
		return http.StatusNoContent, ""
	case f.started:
		return bad(notAfterStart)
	}
	f.configured[path] = body
	return http.StatusNoContent, ""
}

// serveVsock brings up the vsock device the configuration names, with the
// real agent handler behind it.
func (f *fakeFC) serveVsock() {
	var v Vsock
	json.Unmarshal(f.configured["/vsock"], &v)
	if v.UDSPath == "" {
		return
	}
	vl, err := net.Listen("unix", v.UDSPath)
	if err != nil {
		return
	}
	f.vsock = &fakeVsock{ln: vl, port: DefaultVsockPort, dropFirst: 1, handler: agent.NewHandler(agent.Config{FSRoot: f.fsRoot})}
	go f.vsock.serve()
}

type cmdLog struct {
	mu   sync.Mutex
	cmds []string
}

func (l *cmdLog) run(_ context.Context, stdin string, argv []string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.Join(argv, " ")
	if stdin != "" {
		s += " <ruleset>"
	}
	l.cmds = append(l.cmds, s)
	return nil
}

func (l *cmdLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.cmds)
}

func TestStartAgainstFakeFirecracker(t *testing.T) {
	s := loadSpec(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := shortDir(t)
	rec := filepath.Join(dir, "requests.jsonl")
	t.Setenv("PYRO_FAKE_FIRECRACKER", "1")
	t.Setenv("PYRO_FAKE_FC_RECORD", rec)
	t.Setenv("PYRO_FIRECRACKER_JAILER", "")
	b, err := New(Options{Bin: exe, KVM: &kvm.Result{Verdict: kvm.Usable, Usable: true}, CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if b.FirecrackerVersion() != "Firecracker v1.12.0-fake" {
		t.Errorf("version %q", b.FirecrackerVersion())
	}
	var cmds cmdLog
	b.run = cmds.run
	b.leases = netLeases{dir: filepath.Join(dir, "leases"), tapExists: func(string) bool { return false }}

	spec := vmmSpec(dir)
	spec.Kernel = exe // an ELF: used as is, no vmlinux derivation
	spec.Network = true
	for _, d := range spec.Disks {
		os.WriteFile(d.Path, nil, 0o600)
	}
	os.WriteFile(spec.Initrd, nil, 0o600)

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	m, err := b.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Kill()
	conn, err := m.AgentConn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	client, err := agentproto.NewClient(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out bytes.Buffer
			r, err := client.Exec(ctx, agentproto.ExecRequest{Argv: []string{"echo", fmt.Sprint(i)}}, nil, &out, io.Discard)
			if err != nil || r.ExitCode != 0 || strings.TrimSpace(out.String()) != fmt.Sprint(i) {
				t.Errorf("exec %d: %v %+v %q", i, err, r, out.String())
			}
		}()
	}
	wg.Wait()
	client.Close()
	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	m.Wait()

	// Every request valid against the API description, accepted, in order.
	f, err := os.Open(rec)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var steps []string
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
			t.Errorf("%s %s: %v", r.Method, r.Path, e)
		}
		if err := checkPathIDs(s, r.Path, r.Body); err != nil {
			t.Error(err)
		}
		if r.Status != http.StatusNoContent {
			t.Errorf("%s %s answered %d", r.Method, r.Path, r.Status)
		}
		steps = append(steps, r.Method+" "+r.Path)
	}
	want := []string{"PUT /machine-config", "PUT /boot-source", "PUT /drives/rootfs", "PUT /drives/scratch",
		"PUT /network-interfaces/eth0", "PUT /vsock", "PUT /actions"}
	if !reflect.DeepEqual(steps, want) {
		t.Errorf("requests\n got %q\nwant %q", steps, want)
	}

	plan := PlanNetwork(spec.ID)
	wantCmds := []string{
		"ip tuntap add dev " + plan.Tap + " mode tap",
		"ip addr add " + plan.HostIP + " dev " + plan.Tap,
		"sysctl -q -w net.ipv4.conf." + plan.Tap + ".route_localnet=0",
		"ip link set " + plan.Tap + " up",
		"sysctl -q -w net.ipv4.ip_forward=1",
		"nft -f - <ruleset>",
		"nft delete element inet pyro_fc guests { " + plan.element() + " }",
		"ip link del " + plan.Tap,
	}
	if got := cmds.list(); !reflect.DeepEqual(got, wantCmds) {
		t.Errorf("host network commands\n got %q\nwant %q", got, wantCmds)
	}
	if con, _ := os.ReadFile(spec.Console); !strings.Contains(string(con), "guest booted") {
		t.Errorf("console log %q lacks Firecracker's stdout", con)
	}
	// Torn down with the machine: the lease is free again, the FIFO gone
	// from view only in the jail (here it stays beside the capped log).
	if ents, _ := os.ReadDir(filepath.Join(dir, "leases")); len(ents) != 1 || ents[0].Name() != "lock" {
		t.Errorf("leases left after exit: %v", ents)
	}
}

func TestStartReportsAPIFaults(t *testing.T) {
	exe, _ := os.Executable()
	dir := shortDir(t)
	t.Setenv("PYRO_FAKE_FIRECRACKER", "1")
	t.Setenv("PYRO_FAKE_FC_RECORD", filepath.Join(dir, "r.jsonl"))
	t.Setenv("PYRO_FIRECRACKER_JAILER", "")
	// InstanceStart without a boot source is refused; the fault message
	// reaches the caller with the step that failed.
	api := NewClient(filepath.Join(dir, "x.sock"))
	defer api.Close()
	ln := filepath.Join(dir, "x.sock")
	p, err := os.StartProcess(exe, []string{exe, "--api-sock", ln}, &os.ProcAttr{Env: os.Environ(), Files: []*os.File{nil, os.Stdout, os.Stderr}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { p.Kill(); p.Wait() }()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := api.WaitReady(ctx, nil); err != nil {
		t.Fatal(err)
	}
	err = Boot(ctx, api, []Request{{Step: "start", Method: http.MethodPut, Path: "/actions", Body: InstanceActionInfo{ActionType: ActionInstanceStart}}})
	if err == nil || !strings.Contains(err.Error(), "without kernel configuration") || !strings.Contains(err.Error(), "step start") {
		t.Fatalf("err = %v", err)
	}
}
