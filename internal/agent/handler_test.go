package agent_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pyro-mcp/pyro/internal/agent"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// serve runs the real handler rooted at a fresh temp dir (with a
// workspace, like a guest) and returns a client and the root.
func serve(t testing.TB) (*agentproto.Client, string) {
	t.Helper()
	root := t.TempDir()
	os.Mkdir(filepath.Join(root, "workspace"), 0o755)
	host, guest := net.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- agentproto.Serve(context.Background(), guest, agent.NewHandler(agent.Config{FSRoot: root}))
	}()
	c, err := agentproto.NewClient(t.Context(), host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); <-done })
	return c, root
}

func TestExec(t *testing.T) {
	c, root := serve(t)
	tests := []struct {
		name       string
		req        agentproto.ExecRequest
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"exit code", agentproto.ExecRequest{Shell: "exit 7"}, 7, "", ""},
		{"argv", agentproto.ExecRequest{Argv: []string{"echo", "a b"}}, 0, "a b\n", ""},
		{"stderr", agentproto.ExecRequest{Shell: "echo oops >&2"}, 0, "", "oops\n"},
		{"signal", agentproto.ExecRequest{Shell: "kill -TERM $$"}, 128 + 15, "", ""},
		{"default cwd is workspace", agentproto.ExecRequest{Shell: "pwd"}, 0, filepath.Join(root, "workspace") + "\n", ""},
		{"cwd", agentproto.ExecRequest{Shell: "pwd", Cwd: "/"}, 0, root + "\n", ""},
		{"env merged", agentproto.ExecRequest{Shell: `echo "$FOO $LANG"`, Env: map[string]string{"FOO": "bar"}}, 0, "bar C.UTF-8\n", ""},
		{"env overrides", agentproto.ExecRequest{Shell: `echo "$LANG"`, Env: map[string]string{"LANG": "C"}}, 0, "C\n", ""},
		{"not found", agentproto.ExecRequest{Argv: []string{"no-such-cmd-pyro"}}, 127, "", "pyro: command not found: no-such-cmd-pyro\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			r, err := c.Exec(t.Context(), tt.req, nil, &out, &errb)
			if err != nil {
				t.Fatal(err)
			}
			got := []any{r.ExitCode, out.String(), errb.String()}
			want := []any{tt.wantCode, tt.wantStdout, tt.wantStderr}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

func TestExecTimeoutKillsGroup(t *testing.T) {
	c, _ := serve(t)
	var out bytes.Buffer
	start := time.Now()
	// A child and a grandchild, both in the command's process group.
	r, err := c.Exec(t.Context(), agentproto.ExecRequest{
		Shell:     "sleep 1000 & (sleep 1000 &) ; echo $$; sleep 1000",
		TimeoutMs: 500,
	}, nil, &out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !r.TimedOut || r.ExitCode != 124 || !strings.Contains(r.Message, "timed out") {
		t.Errorf("result = %+v, want timed out, 124", r)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	pgid, _ := strconv.Atoi(strings.TrimSpace(out.String()))
	deadline := time.Now().Add(3 * time.Second)
	for len(groupMembers(pgid)) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if m := groupMembers(pgid); len(m) > 0 {
		t.Errorf("process group %d still has live members %v", pgid, m)
	}
}

// groupMembers lists live (non-zombie) processes in process group pgid.
func groupMembers(pgid int) []int {
	if pgid <= 1 {
		return nil
	}
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestExecOutputCap(t *testing.T) {
	c, _ := serve(t)
	var out, errb bytes.Buffer
	r, err := c.Exec(t.Context(), agentproto.ExecRequest{Shell: "head -c 100000 /dev/zero; echo small >&2", MaxOutput: 1000}, nil, &out, &errb)
	if err != nil {
		t.Fatal(err)
	}
	if out.Len() != 1000 || !r.StdoutTruncated || r.StderrTruncated || errb.String() != "small\n" || r.ExitCode != 0 {
		t.Errorf("got %d stdout bytes, stderr %q, result %+v", out.Len(), errb.String(), r)
	}
}

func TestExecStdin(t *testing.T) {
	c, _ := serve(t)
	var out bytes.Buffer
	r, err := c.Exec(t.Context(), agentproto.ExecRequest{Argv: []string{"tr", "a-z", "A-Z"}}, strings.NewReader("hello"), &out, nil)
	if err != nil || r.ExitCode != 0 || out.String() != "HELLO" {
		t.Fatalf("got %q, %+v, %v", out.String(), r, err)
	}
}

type entry struct {
	name, body, link string
	typ              byte
	mode             int64
	size             int64 // overrides len(body) in the header when set
}

func mkTar(t *testing.T, es ...entry) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, Size: int64(len(e.body))}
		if hdr.Typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Typeflag != tar.TypeReg {
			hdr.Size = 0
		}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	return &buf
}

// snapshot lists every path under root with its type, size and link target.
func snapshot(t *testing.T, root string) []string {
	var out []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		fi, _ := os.Lstat(p)
		link, _ := os.Readlink(p)
		out = append(out, fmt.Sprintf("%s %v %d %s", rel, fi.Mode(), fi.Size(), link))
		return nil
	})
	return out
}

func TestPutArchive(t *testing.T) {
	c, root := serve(t)
	ar := mkTar(t,
		entry{name: "src/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "src/main.go", body: "package main\n"},
		entry{name: "run.sh", body: "#!/bin/sh\necho hi\n", mode: 0o755},
		entry{name: "src/link", typ: tar.TypeSymlink, link: "main.go"},
		entry{name: "abs", typ: tar.TypeSymlink, link: "/workspace/app/src"},
		entry{name: "hard", typ: tar.TypeLink, link: "src/main.go"},
	)
	r, err := c.PutArchive(t.Context(), agentproto.PutArchiveRequest{Dest: "/workspace/app", Root: "/workspace"}, ar)
	if err != nil {
		t.Fatal(err)
	}
	if r.Entries != 6 || r.Bytes != int64(len("package main\n")+len("#!/bin/sh\necho hi\n")) {
		t.Errorf("result %+v", r)
	}
	app := filepath.Join(root, "workspace", "app")
	for name, want := range map[string]string{"src/main.go": "package main\n", "src/link": "package main\n", "hard": "package main\n", "abs/main.go": "package main\n"} {
		if b, err := os.ReadFile(filepath.Join(app, name)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v", name, b, err)
		}
	}
	if fi, _ := os.Stat(filepath.Join(app, "run.sh")); fi == nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("run.sh mode = %v", fi)
	}
	// Absolute symlinks are stored relative so they work under any root.
	if l, _ := os.Readlink(filepath.Join(app, "abs")); l != "src" {
		t.Errorf("abs -> %q, want src", l)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "workspace")); len(ents) != 1 {
		t.Errorf("workspace has %v, want only app (staging removed)", ents)
	}
}

func TestPutArchiveRejectsHostileArchives(t *testing.T) {
	c, root := serve(t)
	ws := filepath.Join(root, "workspace")
	os.WriteFile(filepath.Join(ws, "keep.txt"), []byte("keep"), 0o644)
	os.Symlink("/etc", filepath.Join(ws, "etclink"))
	os.Symlink("..", filepath.Join(ws, "up"))
	ok := entry{name: "fine.txt", body: "fine"} // a good member first: must not be written either
	tests := []struct {
		name    string
		entries []entry
		max     int64
		dest    string
		wantIn  string
	}{
		{"dotdot", []entry{ok, {name: "../x", body: "x"}}, 0, "", `"../x"`},
		{"dotdot inside", []entry{ok, {name: "a/../../x", body: "x"}}, 0, "", `"a/../../x"`},
		{"absolute", []entry{ok, {name: "/abs", body: "x"}}, 0, "", `"/abs"`},
		{"symlink escaping", []entry{ok, {name: "esc", typ: tar.TypeSymlink, link: "../.."}, {name: "esc/x", body: "x"}}, 0, "", `"esc"`},
		{"absolute symlink escaping", []entry{ok, {name: "esc", typ: tar.TypeSymlink, link: "/etc"}}, 0, "", `"esc"`},
		{"file through archive symlink", []entry{ok, {name: "in", typ: tar.TypeSymlink, link: "."}, {name: "in/x", body: "x"}}, 0, "", `"in/x"`},
		{"file through existing symlink", []entry{ok, {name: "etclink/passwd", body: "x"}}, 0, "", `"etclink/passwd"`},
		{"chained symlinks", []entry{ok, {name: "a/", typ: tar.TypeDir}, {name: "a/l", typ: tar.TypeSymlink, link: ".."}, {name: "b", typ: tar.TypeSymlink, link: "a/l/.."}}, 0, "", `"b"`},
		{"chain through an existing symlink", []entry{ok, {name: "b", typ: tar.TypeSymlink, link: "up/etc"}}, 0, "", `"b"`},
		{"hardlink escaping", []entry{ok, {name: "h", typ: tar.TypeLink, link: "../../etc/passwd"}}, 0, "", `"h"`},
		{"hardlink to unknown", []entry{ok, {name: "h", typ: tar.TypeLink, link: "keep.txt"}}, 0, "", `"h"`},
		{"fifo", []entry{ok, {name: "f", typ: tar.TypeFifo}}, 0, "", `"f"`},
		{"char device", []entry{ok, {name: "d", typ: tar.TypeChar}}, 0, "", `"d"`},
		{"block device", []entry{ok, {name: "d", typ: tar.TypeBlock}}, 0, "", `"d"`},
		{"over size", []entry{ok, {name: "big", body: strings.Repeat("x", 2000)}}, 1000, "", `"big"`},
		{"dest outside root", []entry{ok}, 0, "/etc", "outside"},
		{"dest through symlink", []entry{ok}, 0, "/workspace/etclink", "symlink"},
	}
	before := snapshot(t, root)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := agentproto.PutArchiveRequest{Dest: tt.dest, Root: "/workspace", MaxBytes: tt.max}
			_, err := c.PutArchive(t.Context(), req, mkTar(t, tt.entries...))
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("err = %v, want invalid argument", err)
			}
			if !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("err %q does not name %s", err, tt.wantIn)
			}
			if d := cmp.Diff(before, snapshot(t, root)); d != "" {
				t.Errorf("tree changed (-before +after)\n%s", d)
			}
		})
	}
}
