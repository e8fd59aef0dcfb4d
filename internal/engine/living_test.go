package engine

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// Names, labels, update and the one resolver, over host-compat.
func TestNamesLabelsUpdate(t *testing.T) {
	e := newEngine(t, BackendHostCompat)
	ctx := t.Context()
	a, err := e.CreateWorkspace(ctx, api.CreateWorkspaceOptions{Environment: "debian:12", Shape: hostOnly, Name: "alpha",
		Labels: map[string]string{"team": "core", "env": "dev"}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.CreateWorkspace(ctx, api.CreateWorkspaceOptions{Environment: "debian:12", Shape: hostOnly, Labels: map[string]string{"team": "web"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		o     api.CreateWorkspaceOptions
		class error
	}{
		{"taken name", api.CreateWorkspaceOptions{Name: "alpha"}, errdefs.ErrAlreadyExists},
		{"name like an id", api.CreateWorkspaceOptions{Name: "0123456789abcdef"}, errdefs.ErrInvalidArgument},
		{"name with a slash", api.CreateWorkspaceOptions{Name: "a/b"}, errdefs.ErrInvalidArgument},
		{"bad label", api.CreateWorkspaceOptions{Labels: map[string]string{"=": "x"}}, errdefs.ErrInvalidArgument},
		{"secret name with =", api.CreateWorkspaceOptions{Secrets: []api.Secret{{Name: "A=B", Value: "xxxxx"}}}, errdefs.ErrInvalidArgument},
		{"short secret", api.CreateWorkspaceOptions{Secrets: []api.Secret{{Name: "A", Value: "x"}}}, errdefs.ErrInvalidArgument},
		{"secret twice", api.CreateWorkspaceOptions{Secrets: []api.Secret{{Name: "A", Value: "xxxxx"}, {Name: "A", Value: "yyyyy"}}}, errdefs.ErrInvalidArgument},
		{"secret both", api.CreateWorkspaceOptions{Secrets: []api.Secret{{Name: "A", Value: "xxxxx", FilePath: "/etc/hostname"}}}, errdefs.ErrInvalidArgument},
		{"secret file missing", api.CreateWorkspaceOptions{Secrets: []api.Secret{{Name: "A", FilePath: "/nonexistent"}}}, errdefs.ErrNotFound},
	} {
		tc.o.Environment, tc.o.Shape = "debian:12", hostOnly
		if _, err := e.CreateWorkspace(ctx, tc.o); !errors.Is(err, tc.class) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.class)
		}
	}
	if ids, _ := e.wss.IDs(); len(ids) != 2 {
		t.Fatalf("bad creates left %d workspaces", len(ids))
	}

	// Exact id, then name, then unique prefix.
	for _, ref := range []string{a.WorkspaceID, "alpha", a.WorkspaceID[:6]} {
		if w, err := e.StatusWorkspace(ctx, ref); err != nil || w.WorkspaceID != a.WorkspaceID {
			t.Errorf("status %q: %v", ref, err)
		}
	}
	if _, err := e.StatusWorkspace(ctx, "beta"); !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "id or name") {
		t.Errorf("unknown name: %v", err)
	}

	l, err := e.ListWorkspacesWith(ctx, &api.WorkspaceListOptions{Labels: map[string]string{"team": "core"}})
	if err != nil || len(l) != 1 || l[0].WorkspaceID != a.WorkspaceID {
		t.Fatalf("by label: %v %+v", err, l)
	}
	// b is the most recent; an update makes a the most recently active.
	if _, err := e.UpdateWorkspace(ctx, b.WorkspaceID, api.WorkspaceUpdateOptions{Name: "alpha"}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("rename onto a taken name: %v", err)
	}
	time.Sleep(10 * time.Millisecond)
	before := time.Now()
	up, err := e.UpdateWorkspace(ctx, "alpha", api.WorkspaceUpdateOptions{Name: "gamma", Labels: map[string]string{"v": "2"}, ClearLabels: []string{"env"}, TTLSeconds: 60})
	if err != nil {
		t.Fatal(err)
	}
	if up.Name != "gamma" || up.Labels["v"] != "2" || up.Labels["env"] != "" || up.Labels["team"] != "core" || up.TTLSeconds != 60 ||
		up.ExpiresAt.Before(before.Add(59*time.Second)) || up.ExpiresAt.After(before.Add(61*time.Second)) {
		t.Errorf("updated %+v", up)
	}
	all, err := e.ListWorkspaces(ctx)
	if err != nil || len(all) != 2 || all[0].WorkspaceID != a.WorkspaceID {
		t.Errorf("order by last activity: %v %+v", err, all)
	}
	if _, err := e.UpdateWorkspace(ctx, "gamma", api.WorkspaceUpdateOptions{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("empty update: %v", err)
	}
	// A name may be taken again once its workspace is renamed.
	if _, err := e.UpdateWorkspace(ctx, b.WorkspaceID, api.WorkspaceUpdateOptions{Name: "alpha"}); err != nil {
		t.Errorf("rename onto a freed name: %v", err)
	}
}

// Secrets over host-compat: redacted from exec output (live, split across
// chunks, and in the result), the log, errors; stored in one file only.
func TestSecretsHostCompat(t *testing.T) {
	e := newEngine(t, BackendHostCompat)
	ctx := t.Context()
	const secret = "hc-s3cret-value-0451"
	file := filepath.Join(t.TempDir(), "tok")
	os.WriteFile(file, []byte("file-s3cret-value\n"), 0o600)
	ws, err := e.CreateWorkspace(ctx, api.CreateWorkspaceOptions{Environment: "debian:12", Shape: hostOnly,
		Secrets: []api.Secret{{Name: "TOKEN", Value: secret}, {Name: "FROM_FILE", FilePath: file}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ws.Secrets) != 2 || ws.Secrets[1].SourceKind != api.SecretFromFile {
		t.Fatalf("secrets %+v", ws.Secrets)
	}
	var live bytes.Buffer
	r, err := e.ExecWorkspace(ctx, ws.WorkspaceID, api.ExecOptions{Argv: []string{"sh", "-c",
		`printf %s "$T" | cut -c1-7 | tr -d '\n'; sleep 0.3; printf %s "$T" | cut -c8-; echo "[$F]"; echo "$T" >&2`},
		SecretEnv: map[string]string{"TOKEN": "T", "FROM_FILE": "F"}, Stdout: &live})
	if err != nil {
		t.Fatal(err)
	}
	if r.Stdout != "[REDACTED]\n[[REDACTED]]\n" || live.String() != r.Stdout || r.Stderr != "[REDACTED]\n" {
		t.Errorf("exec: stdout %q live %q stderr %q", r.Stdout, live.String(), r.Stderr)
	}
	r, err = e.ExecWorkspace(ctx, ws.WorkspaceID, api.ExecOptions{Argv: []string{secret}})
	if err != nil || r.ExitCode != 127 || strings.Contains(r.Message+r.Stderr, secret) {
		t.Errorf("a secret as a command: %v %+v", err, r)
	}
	if _, err := e.ExecWorkspace(ctx, ws.WorkspaceID, api.ExecOptions{Command: "true", SecretEnv: map[string]string{"NOPE": ""}}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unknown secret: %v", err)
	}
	logs, _ := e.LogsWorkspace(ctx, ws.WorkspaceID)
	data, _ := os.ReadFile(filepath.Join(e.wss.Path(ws.WorkspaceID), "logs.jsonl"))
	if strings.Contains(string(data), secret) || strings.Contains(string(data), "file-s3cret") || logs.Count != 2 {
		t.Errorf("the log holds a secret: %s", data)
	}
	filepath.Walk(e.opts.StateDir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Name() != secretsFile {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s holds the secret", p)
			}
		}
		return nil
	})
	if fi, err := os.Stat(filepath.Join(e.wss.Path(ws.WorkspaceID), secretsFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("secrets file: %v %v", err, fi)
	}

	// A fork inherits them (copySecrets, for ForkWorkspace): a copy of the
	// values file and the metadata; its next boot delivers them.
	dst, err := e.CreateWorkspace(ctx, api.CreateWorkspaceOptions{Environment: "debian:12", Shape: hostOnly})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.update(dst.WorkspaceID, func(rec *vmRecord) error { return e.copySecrets(ws.WorkspaceID, rec) }); err != nil {
		t.Fatal(err)
	}
	rec, _ := e.read(e.wss, dst.WorkspaceID)
	e.stopLocked(ctx, rec)
	r, err = e.ExecWorkspace(ctx, dst.WorkspaceID, api.ExecOptions{Command: `echo "$T"`, SecretEnv: map[string]string{"TOKEN": "T"}})
	if err != nil || r.Stdout != "[REDACTED]\n" {
		t.Errorf("fork's secret: %v %+v", err, r)
	}
}

// Shells and services through the engine over host-compat; a busy
// workspace is not reaped, an idle one is; delete stops host services.
func TestLivingHostCompat(t *testing.T) {
	e := newEngine(t, BackendHostCompat)
	ctx := t.Context()
	ws, err := e.CreateWorkspace(ctx, api.CreateWorkspaceOptions{Environment: "debian:12", Shape: api.Shape{AllowHostCompat: true, TTLSeconds: 1}})
	if err != nil {
		t.Fatal(err)
	}
	id := ws.WorkspaceID
	sh, err := e.OpenShell(ctx, id, api.ShellOpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.WriteShell(ctx, id, sh.ShellID, api.ShellWriteOptions{Input: "printf '\\033[31mred\\033[0m\\n'"}); err != nil {
		t.Fatal(err)
	}
	var plain string
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(plain, "\nred\n") && time.Now().Before(deadline); {
		r, err := e.ReadShell(ctx, id, sh.ShellID, api.ShellReadOptions{Plain: true, WaitForIdleMs: 200})
		if err != nil {
			t.Fatal(err)
		}
		plain = r.Output
	}
	if !strings.Contains(plain, "\nred\n") {
		t.Fatalf("plain read: %q", plain)
	}
	if _, err := e.SignalShell(ctx, id, sh.ShellID, "USR1"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad signal: %v", err)
	}
	if _, err := e.ReadShell(ctx, id, sh.ShellID, api.ShellReadOptions{WaitForIdleMs: 20000}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("wait too long: %v", err)
	}
	if _, err := e.StartService(ctx, id, "svc", api.ServiceStartOptions{Command: "exec sleep 300", Readiness: &api.Readiness{Type: "http", URL: "https://x/"}}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("https readiness: %v", err)
	}
	svc, err := e.StartService(ctx, id, "svc", api.ServiceStartOptions{Command: "echo $$ > svc.pid; exec sleep 300"})
	if err != nil || svc.State != api.ServiceReady || svc.PublishedPorts == nil {
		t.Fatalf("start: %v %+v", err, svc)
	}
	// Expired but busy: the reaper leaves it, the supervisor's recheck too.
	time.Sleep(1100 * time.Millisecond)
	if r, _ := e.ReapExpired(ctx); r.Count != 0 {
		t.Fatalf("reaped a busy workspace: %+v", r)
	}
	recheck := expiryRecheck(e.wss.Path(id), filepath.Join(e.runDir(id), "ctl.sock"))
	if next := recheck(ctx); next.Before(time.Now()) {
		t.Errorf("recheck of a busy workspace: %v", next)
	}
	if w, _ := e.StatusWorkspace(ctx, id); w.ShellCount != 1 || w.ServiceCount != 1 || !w.Running {
		t.Errorf("status: %+v", w)
	}
	logs, _ := e.LogsWorkspace(ctx, id)
	var kinds []string
	for _, le := range logs.Entries {
		kinds = append(kinds, le.Kind)
	}
	if strings.Join(kinds, ",") != "shell_open,service_start" {
		t.Errorf("log kinds %v", kinds)
	}
	// An extension is seen; idle past expiry powers off.
	e.UpdateWorkspace(ctx, id, api.WorkspaceUpdateOptions{TTLSeconds: 3600})
	if next := recheck(ctx); next.Before(time.Now().Add(3500 * time.Second)) {
		t.Errorf("recheck after an extension: %v", next)
	}
	if _, err := e.CloseShell(ctx, id, sh.ShellID); err != nil {
		t.Fatal(err)
	}
	pid, _ := os.ReadFile(filepath.Join(e.wss.Path(id), "hostroot", "workspace", "svc.pid"))
	if _, err := e.DeleteWorkspace(ctx, id); err != nil {
		t.Fatal(err)
	}
	if p := strings.TrimSpace(string(pid)); p != "" {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if _, err := os.Stat("/proc/" + p); err != nil {
				return
			}
		}
		t.Errorf("the host-compat service %s outlived its workspace", p)
	}
}
