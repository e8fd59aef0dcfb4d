package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/pyro-mcp/pyro/internal/guesttest"
)

func init() {
	// exitcode N PROG ARGS...: run PROG, keep its stdout/stderr for the
	// following stdout/stderr assertions, and require exit status N.
	scriptCmdRegistry["exitcode"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if neg || len(args) < 2 {
			ts.Fatalf("usage: exitcode N PROG [ARGS...]")
		}
		want, err := strconv.Atoi(args[0])
		if err != nil {
			ts.Fatalf("exitcode: %v", err)
		}
		err = ts.Exec(args[1], args[2:]...)
		got := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			got = ee.ExitCode()
		} else if err != nil {
			ts.Fatalf("exitcode: %v", err)
		}
		if got != want {
			ts.Fatalf("exit status %d, want %d", got, want)
		}
	}
	// nolinger: no VMM process, supervisor, socket or VM state of this
	// script is left behind.
	scriptCmdRegistry["nolinger"] = func(ts *testscript.TestScript, neg bool, args []string) {
		run := ts.Getenv("PYRO_RUNTIME_DIR")
		st := ts.Getenv("PYRO_STATE_DIR")
		var left []string
		deadline := time.Now().Add(5 * time.Second)
		for {
			left = left[:0]
			for _, p := range processesMentioning(run, st) {
				left = append(left, "process "+p)
			}
			ents, _ := os.ReadDir(run)
			for _, e := range ents {
				left = append(left, "runtime entry "+e.Name())
			}
			for _, kind := range []string{"vms", "workspaces"} {
				ents, _ := os.ReadDir(filepath.Join(st, kind))
				for _, e := range ents {
					left = append(left, kind+" entry "+e.Name())
				}
			}
			if len(left) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if len(left) > 0 {
			ts.Fatalf("left behind:\n%s", strings.Join(left, "\n"))
		}
	}
	// [guest]: a guest can boot here; guesttest is the one gate every
	// guest test uses (under CI=true a missing prerequisite fails instead).
	scriptCondRegistry["guest"] = func() (bool, error) {
		ok, why := guesttest.Available()
		if !ok && guesttest.CI() {
			return false, fmt.Errorf("CI=true but no guest can boot here: %s", why)
		}
		return ok, nil
	}
}

// processesMentioning lists live processes whose command line contains any
// of the given strings.
func processesMentioning(needles ...string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	self := strconv.Itoa(os.Getpid())
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil || e.Name() == self {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		c := strings.ReplaceAll(string(cmd), "\x00", " ")
		for _, n := range needles {
			if n != "" && strings.Contains(c, n) {
				out = append(out, e.Name()+": "+c)
				break
			}
		}
	}
	return out
}

// killProcessesMentioning SIGKILLs every process whose command line contains
// one of needles (the VMMs and supervisors of a script that failed).
func killProcessesMentioning(needles ...string) {
	for _, p := range processesMentioning(needles...) {
		pid, _ := strconv.Atoi(strings.SplitN(p, ":", 2)[0])
		if pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
