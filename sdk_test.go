package pyro_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro"
	"github.com/pyro-mcp/pyro/internal/guesttest"
)

// TestMain builds the static pyro binary the engine re-executes as each
// VM's supervisor and puts into the guest as its agent.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pyro-sdk-bin-")
	if err != nil {
		panic(err)
	}
	bin := filepath.Join(dir, "pyro")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/pyro")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		panic("building pyro: " + err.Error())
	}
	os.Setenv("PYRO_BIN", bin)
	os.Setenv("PYRO_AGENT_BIN", bin)
	// Cold boots, as before warm starts: sdk_warm_test.go turns them on.
	os.Setenv("PYRO_TEMPLATES", "off")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// newClient uses the shared environment cache (guesttest's) and private state.
func newClient(t *testing.T) *pyro.Client {
	t.Helper()
	run, err := os.MkdirTemp("", "pyro-sdk-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	c, err := pyro.New(&pyro.Options{CacheDir: guesttest.CacheDir(), StateDir: t.TempDir(), RuntimeDir: run})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestErrors(t *testing.T) {
	c := newClient(t)
	ctx := t.Context()
	for _, tc := range []struct {
		name  string
		call  func() error
		class error
		text  string
	}{
		{"unknown environment", func() error {
			_, err := c.RunInVM(ctx, pyro.RunOptions{Environment: "debian:11", Command: "true"})
			return err
		}, pyro.ErrNotFound, "debian:12, debian:12-base, debian:12-build"},
		{"command and argv", func() error {
			_, err := c.RunInVM(ctx, pyro.RunOptions{Environment: "debian:12", Command: "true", Argv: []string{"true"}})
			return err
		}, pyro.ErrInvalidArgument, "not both"},
		{"no command", func() error {
			_, err := c.ExecWorkspace(ctx, "abc", pyro.ExecOptions{})
			return err
		}, pyro.ErrInvalidArgument, "Argv"},
		{"unknown vm", func() error { _, err := c.StatusVM(ctx, "0123456789abcdef"); return err }, pyro.ErrNotFound, ""},
		{"unknown workspace", func() error { _, err := c.LogsWorkspace(ctx, "nope"); return err }, pyro.ErrNotFound, ""},
		{"too many vcpus", func() error {
			_, err := c.CreateVM(ctx, pyro.CreateVMOptions{Environment: "debian:12", Shape: pyro.Shape{VCPUCount: 4096}})
			return err
		}, pyro.ErrInvalidArgument, "vcpu_count"},
		{"unknown environment to inspect", func() error { _, err := c.InspectEnvironment(ctx, "arch"); return err }, pyro.ErrNotFound, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, tc.class) {
				t.Fatalf("error %v, want class %v", err, tc.class)
			}
			if !strings.Contains(err.Error()+" "+pyro.ErrorHint(err), tc.text) {
				t.Errorf("error %q (hint %q) does not mention %q", err, pyro.ErrorHint(err), tc.text)
			}
		})
	}
}

func TestRunInVM(t *testing.T) {
	c := newClient(t)
	guesttest.Need(t)
	var streamed bytes.Buffer
	res, err := c.RunInVM(t.Context(), pyro.RunOptions{Environment: "debian:12", Command: "git --version; echo oops >&2; exit 3", Stdout: &streamed})
	if err != nil {
		t.Fatalf("%v (hint: %s)", err, pyro.ErrorHint(err))
	}
	if res.ExitCode != 3 || !strings.HasPrefix(res.Stdout, "git version 2.39") || res.Stderr != "oops\n" || res.ExecutionMode != pyro.ModeGuest {
		t.Errorf("result %+v", res)
	}
	if streamed.String() != res.Stdout {
		t.Errorf("streamed %q, result %q", streamed.String(), res.Stdout)
	}
	if res.VCPUCount != pyro.DefaultVCPUCount || res.MemMiB != pyro.DefaultMemMiB {
		t.Errorf("shape %d vCPU %d MiB, want the defaults", res.VCPUCount, res.MemMiB)
	}
	// The JSON is the CLI's.
	b, _ := json.Marshal(res)
	for _, k := range []string{`"exit_code":3`, `"vm_id":`, `"execution_mode":"guest"`, `"boot_ms":`, `"command":["/bin/sh","-c",`} {
		if !bytes.Contains(b, []byte(k)) {
			t.Errorf("JSON %s lacks %s", b, k)
		}
	}
	// One-shot: nothing is left.
	if vms, err := c.ListVMs(t.Context()); err != nil || len(vms) != 0 {
		t.Errorf("vms left: %v %v", vms, err)
	}
}

func TestWorkspace(t *testing.T) {
	c := newClient(t)
	guesttest.Need(t)
	ctx := t.Context()
	seed, more := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(seed, "hello.txt"), []byte("hello from the host\n"), 0o644)
	os.WriteFile(filepath.Join(more, "extra.txt"), []byte("pushed later\n"), 0o644)

	ws, err := c.CreateWorkspace(ctx, pyro.CreateWorkspaceOptions{Environment: "debian:12", SeedPath: seed, Shape: pyro.Shape{MemMiB: 512}})
	if err != nil {
		t.Fatalf("%v (hint: %s)", err, pyro.ErrorHint(err))
	}
	t.Cleanup(func() { c.DeleteWorkspace(context.Background(), ws.WorkspaceID) })
	if ws.WorkspaceSeed.Mode != "directory" || ws.WorkspaceSeed.Entries < 1 || !ws.Running {
		t.Errorf("workspace %+v", ws)
	}
	exec := func(cmd pyro.ExecOptions) *pyro.WorkspaceExecResult {
		t.Helper()
		r, err := c.ExecWorkspace(ctx, ws.WorkspaceID, cmd)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := exec(pyro.ExecOptions{Command: "cat hello.txt && pwd && echo state > made.txt"}); r.Stdout != "hello from the host\n/workspace\n" {
		t.Errorf("first exec %+v", r)
	}
	sync, err := c.PushWorkspaceSync(ctx, ws.WorkspaceID, more, &pyro.PushOptions{Dest: "/workspace/sub"})
	if err != nil || sync.Dest != "/workspace/sub" || sync.Entries < 1 {
		t.Fatalf("sync %+v %v", sync, err)
	}
	if r := exec(pyro.ExecOptions{Argv: []string{"cat", "made.txt", "sub/extra.txt"}}); r.Stdout != "state\npushed later\n" || r.Sequence != 3 {
		t.Errorf("second exec %+v", r)
	}
	st, err := c.StatusWorkspace(ctx, ws.WorkspaceID)
	if err != nil || st.CommandCount != 2 || st.LastCommand == nil || st.LastCommand.Sequence != 3 {
		t.Errorf("status %+v %v", st, err)
	}
	logs, err := c.LogsWorkspace(ctx, ws.WorkspaceID)
	if err != nil || logs.Count != 3 || logs.Entries[1].Kind != pyro.LogSync || logs.Entries[2].Stdout != "state\npushed later\n" {
		t.Errorf("logs %+v %v", logs, err)
	}
	del, err := c.DeleteWorkspace(ctx, ws.WorkspaceID)
	if err != nil || !del.Deleted {
		t.Fatalf("delete %+v %v", del, err)
	}
	if _, err := c.StatusWorkspace(ctx, ws.WorkspaceID); !errors.Is(err, pyro.ErrNotFound) {
		t.Errorf("status after delete: %v", err)
	}
}

// Example_workspace runs for real where a guest can boot: its seed and
// push directories are in ./testdata.
func TestExampleWorkspace(t *testing.T) {
	guesttest.Need(t)
	run, err := os.MkdirTemp("", "pyro-ex-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(run)
	t.Setenv("PYRO_STATE_DIR", t.TempDir())
	t.Setenv("PYRO_RUNTIME_DIR", run)
	if d := os.Getenv("PYRO_TEST_CACHE_DIR"); d != "" {
		t.Setenv("PYRO_CACHE_DIR", d)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() { b, _ := io.ReadAll(r); done <- string(b) }()
	func() {
		defer func() { os.Stdout = stdout; w.Close() }()
		Example_workspace()
	}()
	want := "hello from /workspace\npushed after the workspace was created\nexit 0 after 2 commands and 1 other entry\n"
	if got := <-done; got != want {
		t.Errorf("Example_workspace printed %q, want %q", got, want)
	}
}
