package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/internal/guesttest"
)

func init() {
	// idvar VAR: the last stdout, trimmed, becomes $VAR (a --id-only result).
	scriptCmdRegistry["idvar"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: idvar VAR")
		}
		id := strings.TrimSpace(ts.ReadFile("stdout"))
		if id == "" || strings.ContainsAny(id, " \n") {
			ts.Fatalf("stdout %q is not one id", id)
		}
		ts.Setenv(args[0], id)
	}
	// shellexpect WORKSPACE SHELL CURSORVAR REGEXP: read the shell from
	// $CURSORVAR (0 when unset) until what came since matches REGEXP
	// (multi-line), within 90 s; $CURSORVAR moves on and the text read is
	// in the file shellout.
	scriptCmdRegistry["shellexpect"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 4 {
			ts.Fatalf("usage: shellexpect WORKSPACE SHELL CURSORVAR REGEXP")
		}
		re := regexp.MustCompile("(?m)" + args[3])
		cursor := ts.Getenv(args[2])
		if cursor == "" {
			cursor = "0"
		}
		var got strings.Builder
		deadline := time.Now().Add(90 * time.Second)
		for time.Now().Before(deadline) {
			out := runPyro(ts, "--json", "workspace", "shell", "read", args[0], args[1], "--cursor", cursor, "--plain", "--wait-for-idle-ms", "300")
			var r struct {
				Output     string `json:"output"`
				NextCursor int64  `json:"next_cursor"`
			}
			ts.Check(json.Unmarshal(out, &r))
			got.WriteString(r.Output)
			cursor = fmt.Sprint(r.NextCursor)
			if re.MatchString(got.String()) {
				ts.Setenv(args[2], cursor)
				ts.Check(os.WriteFile(ts.MkAbs("shellout"), []byte(got.String()), 0o644))
				return
			}
		}
		ts.Fatalf("shell %s never printed %q; it printed:\n%s", args[1], args[3], got.String())
	}
	// retry N REGEXP pyro ARGS...: run pyro until its stdout matches
	// REGEXP, at most N times a second apart; that stdout is the
	// command's, for the checks that follow.
	scriptCmdRegistry["retry"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) < 4 || args[2] != "pyro" {
			ts.Fatalf("usage: retry N REGEXP pyro ARGS...")
		}
		var n int
		fmt.Sscan(args[0], &n)
		re := regexp.MustCompile(args[1])
		var out []byte
		for i := 0; i < n; i++ {
			out = runPyro(ts, args[3:]...)
			if re.Match(out) {
				ts.Stdout().Write(out)
				return
			}
			time.Sleep(time.Second)
		}
		ts.Fatalf("pyro %s: no %q after %d tries; last stdout:\n%s", strings.Join(args[3:], " "), args[1], n, out)
	}
	// nosecret VALUE DIR...: no file under the DIRs holds VALUE, except
	// the one secrets file of each workspace.
	scriptCmdRegistry["nosecret"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) < 2 {
			ts.Fatalf("usage: nosecret VALUE DIR...")
		}
		value := []byte(args[0])
		files := 0
		for _, dir := range args[1:] {
			filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err != nil || !d.Type().IsRegular() {
					return nil
				}
				files++
				if d.Name() != "secrets.json" && fileContains(p, value) {
					ts.Fatalf("the secret is in %s", p)
				}
				return nil
			})
		}
		if files == 0 {
			ts.Fatalf("no files under %v", args[1:])
		}
	}
}

// runPyro runs the pyro binary with the script's environment and returns
// its stdout; a failure fails the script.
func runPyro(ts *testscript.TestScript, args ...string) []byte {
	cmd := exec.Command(filepath.Join(pyroBinDir, "pyro"), args...)
	cmd.Dir = ts.Getenv("WORK")
	for _, k := range []string{"PATH", "HOME", "PYRO_RUNTIME_DIR", "PYRO_STATE_DIR", "PYRO_CACHE_DIR"} {
		cmd.Env = append(cmd.Env, k+"="+ts.Getenv(k))
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		ts.Fatalf("pyro %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// ptyReader collects what a program writes to its terminal.
type ptyReader struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *ptyReader) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(p)
}

// since returns what arrived after byte n.
func (r *ptyReader) since(n int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()[min(n, r.buf.Len()):]
}

func (r *ptyReader) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Len()
}

func (r *ptyReader) waitFor(t *testing.T, from int, re string) {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if rx.MatchString(r.since(from)) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no %q on the terminal; it shows:\n%q", re, r.since(from))
}

// TestShellAttach drives `pyro workspace shell attach` through a real
// pseudo-terminal: the shell gets the terminal's size, follows a resize,
// is left running by a detach, and ends pyro with its exit code when it
// exits; a separate pyro process reads it in between.
func TestShellAttach(t *testing.T) {
	guesttest.Need(t)
	run, err := os.MkdirTemp("", "pyro-att-")
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	t.Cleanup(func() {
		killProcessesMentioning(run, state)
		os.RemoveAll(run)
	})
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "TERM=xterm",
		"PYRO_RUNTIME_DIR=" + run, "PYRO_STATE_DIR=" + state, "PYRO_CACHE_DIR=" + testCacheDir()}
	pyroCmd := func(args ...string) *exec.Cmd {
		cmd := exec.Command(filepath.Join(pyroBinDir, "pyro"), args...)
		cmd.Env = env
		return cmd
	}
	out := func(args ...string) string {
		t.Helper()
		b, err := pyroCmd(args...).Output()
		if err != nil {
			t.Fatalf("pyro %v: %v", args, err)
		}
		return string(b)
	}
	out("workspace", "create", guesttest.Environment, "--name", "att")
	defer pyroCmd("workspace", "delete", "att").Run()

	attach := func(args ...string) (*exec.Cmd, *os.File, *ptyReader) {
		cmd := pyroCmd(append([]string{"workspace", "shell", "attach", "att"}, args...)...)
		ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 33, Cols: 101})
		if err != nil {
			t.Skipf("no pseudo-terminal here: %v", err)
		}
		r := &ptyReader{}
		go io.Copy(r, ptmx)
		return cmd, ptmx, r
	}

	// A new shell, opened at the terminal's size.
	cmd, ptmx, term := attach()
	term.waitFor(t, 0, `Ctrl-\] detaches`)
	ptmx.Write([]byte("stty size\r"))
	term.waitFor(t, 0, `\r?33 101\r\n`)
	// A resize of the terminal reaches the shell.
	n := term.len()
	pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 132})
	time.Sleep(500 * time.Millisecond)
	ptmx.Write([]byte("stty size; echo $$ > /tmp/attached.pid\r"))
	term.waitFor(t, n, `\r?40 132\r\n`)
	// Ctrl-] detaches; pyro exits 0 and says how to come back.
	ptmx.Write([]byte{0x1d})
	if err := cmd.Wait(); err != nil {
		t.Fatalf("detach: %v\n%q", err, term.since(0))
	}
	term.waitFor(t, 0, `detached; shell \w+ keeps running`)
	ptmx.Close()

	// The shell outlived the pyro process that opened it.
	var list struct {
		Shells []struct {
			ShellID string `json:"shell_id"`
			State   string `json:"state"`
		} `json:"shells"`
	}
	if err := json.Unmarshal([]byte(out("workspace", "shell", "list", "att", "--json")), &list); err != nil || len(list.Shells) != 1 || list.Shells[0].State != "running" {
		t.Fatalf("after detach: %v %+v", err, list)
	}
	id := list.Shells[0].ShellID
	if got := out("workspace", "shell", "read", "att", id, "--plain"); !strings.Contains(got, "40 132") {
		t.Errorf("read after detach: %q", got)
	}

	// Attach to it again; its exit ends pyro with its exit code.
	cmd, ptmx, term = attach(id)
	term.waitFor(t, 0, `attached to shell `+id)
	ptmx.Write([]byte("echo again-$((40+2)); exit 4\r"))
	term.waitFor(t, 0, `again-42`)
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 4 {
		t.Fatalf("attach after exit 4: %v\n%q", err, term.since(0))
	}
	term.waitFor(t, 0, `exited \(exit code 4\)`)
	ptmx.Close()
}

// fileContains reports whether the file at p holds value, reading it a
// MiB at a time and skipping its holes: the state directory holds sparse
// disk images of several GiB.
func fileContains(p string, value []byte) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	buf := make([]byte, 1<<20+len(value))
	var off int64
	for {
		data, err := f.Seek(off, unix.SEEK_DATA)
		if err != nil {
			return false // ENXIO: no data past off
		}
		hole, err := f.Seek(data, unix.SEEK_HOLE)
		if err != nil {
			return false
		}
		for pos := data; pos < hole; pos += 1 << 20 {
			n, _ := f.ReadAt(buf, pos)
			if bytes.Contains(buf[:n], value) {
				return true
			}
			if n < len(buf) && pos+int64(n) >= hole {
				break
			}
		}
		off = hole
	}
}
