package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/creack/pty"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// progressCmd is a slow operation that needs no guest: a workspace on the
// host (host_compat) seeded with many files.
func progressCmd(t *testing.T) *exec.Cmd {
	t.Helper()
	seed := t.TempDir()
	for i := range 20000 {
		os.WriteFile(filepath.Join(seed, fmt.Sprintf("f%05d", i)), []byte("x"), 0o644)
	}
	run, err := os.MkdirTemp("", "pyro-pty-")
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	t.Cleanup(func() {
		killProcessesMentioning(run, state)
		os.RemoveAll(run)
	})
	cmd := exec.Command(filepath.Join(pyroBinDir, "pyro"), "workspace", "create", "debian:12",
		"--backend", "host_compat", "--allow-host-compat", "--seed-path", seed)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "TERM=xterm",
		"PYRO_RUNTIME_DIR=" + run, "PYRO_STATE_DIR=" + state, "PYRO_CACHE_DIR=" + t.TempDir()}
	return cmd
}

// On a terminal, a slow operation draws a live line on stderr and clears
// it when done; stdout carries only the result.
func TestProgressOnTerminal(t *testing.T) {
	cmd := progressCmd(t)
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	defer ptmx.Close()
	pty.Setsize(ptmx, &pty.Winsize{Rows: 20, Cols: 120})
	var stdout bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, &stdout, tty
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	drawn := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(ptmx) // until the child closes the terminal (EIO)
		drawn <- b
	}()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v\nstdout:\n%s", err, stdout.String())
	}
	out := string(<-drawn)
	t.Logf("terminal received %d bytes; last 300: %q", len(out), out[max(0, len(out)-300):])

	if !strings.Contains(out, "\r") || !regexp.MustCompile(`workspace create \d/4: seeding.*files`).MatchString(out) {
		t.Errorf("no live seeding line drawn:\n%q", out)
	}
	lines, current := screen(out)
	if strings.TrimSpace(current) != "" {
		t.Errorf("the live line was left on the terminal: %q", current)
	}
	for _, l := range lines {
		if strings.TrimSpace(l) != "" {
			t.Errorf("the terminal kept a line: %q", l)
		}
	}
	if !strings.Contains(stdout.String(), "workspace_id:") || strings.ContainsAny(stdout.String(), "\r\x1b") ||
		strings.Contains(stdout.String(), "seeding") {
		t.Errorf("stdout is not the bare result:\n%q", stdout.String())
	}
}

// Piped, the same command prints one plain line per phase and step.
func TestProgressPiped(t *testing.T) {
	cmd := progressCmd(t)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if strings.ContainsAny(stderr.String(), "\r\x1b") {
		t.Errorf("drawing on a pipe: %q", stderr.String())
	}
	phase := regexp.MustCompile(`^\[(workspace create|pull)\] phase=[a-z]+( |$)`)
	var phases []string
	for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if !phase.MatchString(l) {
			t.Errorf("not a phase line: %q", l)
			continue
		}
		phases = append(phases, strings.Fields(l)[2])
	}
	want := "phase=environment phase=disk phase=boot phase=boot phase=seed phase=seed phase=seed phase=done"
	if got := strings.Join(phases, " "); got != want {
		t.Errorf("phases\n got %s\nwant %s\nstderr:\n%s", got, want, stderr.String())
	}
	if !strings.Contains(stderr.String(), "phase=seed environment=debian:12 id=") || !strings.Contains(stderr.String(), "files=20000 total=20000") {
		t.Errorf("no seed count:\n%s", stderr.String())
	}
}

// screen plays out on one terminal line what was written: \r returns to
// its start, \n ends it. It returns the lines ended and the one left.
func screen(s string) (lines []string, current string) {
	var cur []rune
	col := 0
	for _, r := range s {
		switch r {
		case '\r':
			col = 0
		case '\n':
			lines = append(lines, string(cur))
			cur, col = nil, 0
		default:
			if col < len(cur) {
				cur[col] = r
			} else {
				cur = append(cur, r)
			}
			col++
		}
	}
	return lines, string(cur)
}

// Over MCP, a seeded workspace_create on a real guest notifies progress
// that only increases, naming the files seeded.
func TestMCPSeedProgress(t *testing.T) {
	needGuestHere(t)
	m := startMCP(t)
	seed := m.subdir(t, "seed")
	for i := range 2000 {
		os.WriteFile(filepath.Join(seed, fmt.Sprintf("f%04d", i)), []byte("x"), 0o644)
	}
	res, out := m.call(t, t.Context(), "workspace_create", map[string]any{"environment": "debian:12", "seed_path": seed, "mem_mib": 512},
		mcp.Meta{"progressToken": "seed-1"})
	if res.IsError {
		t.Fatal(contentText(res))
	}
	id, _ := out["workspace_id"].(string)
	defer m.ok(t, "workspace_delete", map[string]any{"workspace_id": id})
	var got []*mcp.ProgressNotificationParams
	for len(m.progress) > 0 {
		got = append(got, <-m.progress)
	}
	seeding := false
	for i, p := range got {
		t.Logf("%.3f/%.0f %s", p.Progress, p.Total, p.Message)
		if i > 0 && p.Progress <= got[i-1].Progress {
			t.Errorf("progress went from %v to %v", got[i-1].Progress, p.Progress)
		}
		seeding = seeding || regexp.MustCompile(`seeding [0-9,]+ of 2,000 files`).MatchString(p.Message)
	}
	if len(got) < 3 || !seeding {
		t.Errorf("%d notifications, seeding named: %v", len(got), seeding)
	}
}
