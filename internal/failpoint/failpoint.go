// Package failpoint lets crash tests kill pyro at a named point of an
// operation, the way a kill -9 at the worst moment would: when
// $PYRO_FAILPOINT names the point ("snapshot-switched", or several,
// comma-separated), Hit kills the process with SIGKILL there. Unset, Hit
// costs one environment lookup.
package failpoint

import (
	"os"
	"slices"
	"strings"
	"syscall"
)

// Env is the variable that arms failpoints.
const Env = "PYRO_FAILPOINT"

// Hit kills this process at once if name is armed.
func Hit(name string) {
	v := os.Getenv(Env)
	if v == "" || !slices.Contains(strings.Split(v, ","), name) {
		return
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// KillPID kills process pid with SIGKILL if name is armed: a crash of
// another process (the VMM) at that point.
func KillPID(name string, pid int) {
	v := os.Getenv(Env)
	if pid > 0 && v != "" && slices.Contains(strings.Split(v, ","), name) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}
