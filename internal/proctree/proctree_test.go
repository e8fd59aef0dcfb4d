package proctree

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A daemon (setsid and a double fork) escapes its process group and its
// session, but not a subreaper: it is found and killed.
func TestKillDescendantsFindsDaemons(t *testing.T) {
	if err := BecomeSubreaper(); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "daemon.pid")
	cmd := exec.Command("sh", "-c", `setsid sh -c '(sleep 1000 </dev/null >/dev/null 2>&1 & echo $! > `+pidfile+`) &' &`)
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	var pid int
	deadline := time.Now().Add(10 * time.Second)
	for pid == 0 && time.Now().Before(deadline) {
		b, _ := os.ReadFile(pidfile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		time.Sleep(10 * time.Millisecond)
	}
	if pid == 0 {
		t.Fatal("the daemon did not start")
	}
	// Its parents are gone: it was adopted by this process.
	for time.Now().Before(deadline) {
		if ppid, _, _ := stat(pid); ppid == os.Getpid() {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ppid, _, _ := stat(pid); ppid != os.Getpid() {
		t.Fatalf("daemon %d has parent %d, not this subreaper %d", pid, ppid, os.Getpid())
	}
	found := false
	for _, p := range Descendants(os.Getpid()) {
		found = found || p == pid
	}
	if !found {
		t.Fatalf("daemon %d not among the descendants %v", pid, Descendants(os.Getpid()))
	}
	if n := KillDescendants(os.Getpid()); n < 1 {
		t.Errorf("killed %d", n)
	}
	if _, state, ok := stat(pid); ok && state != 'Z' {
		t.Errorf("daemon %d still alive (state %c)", pid, state)
	}
	if d := Descendants(os.Getpid()); len(d) != 0 {
		t.Errorf("descendants left: %v", d)
	}
}
