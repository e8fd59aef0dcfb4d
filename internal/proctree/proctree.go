// Package proctree finds and kills the descendants of a process: what a
// command started, including what it started in a new session or after a
// double fork, as long as an ancestor that is a child subreaper
// (PR_SET_CHILD_SUBREAPER) adopted the orphans. Host-compat supervisors are
// such subreapers, so that delete and TTL end every process a command
// started, not only its process group.
package proctree

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// BecomeSubreaper makes orphaned descendants of this process its children
// instead of init's.
func BecomeSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// Descendants returns the live (not zombie) descendants of pid, parents
// before children, read from /proc.
func Descendants(pid int) []int {
	children := map[int][]int{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, state, ok := stat(p)
		if !ok || state == 'Z' || state == 'X' {
			continue
		}
		children[ppid] = append(children[ppid], p)
	}
	var out []int
	queue := children[pid]
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		out = append(out, p)
		queue = append(queue, children[p]...)
	}
	return out
}

// stat reads a process's parent and state from /proc/PID/stat.
func stat(pid int) (ppid int, state byte, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces and parentheses
	if i < 0 || i+2 >= len(s) {
		return 0, 0, false
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 2 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return ppid, f[0][0], err == nil
}

// maxRounds bounds KillDescendants against a tree that keeps growing
// faster than it is stopped.
const maxRounds = 50

// KillDescendants stops every descendant of pid, then kills them, and
// repeats until none is left (or maxRounds). Stopping first freezes the
// tree, so that a process cannot fork a child nobody has seen while its
// siblings die. It returns how many processes it killed.
func KillDescendants(pid int) int {
	killed := 0
	for round := 0; round < maxRounds; round++ {
		seen := map[int]bool{}
		for {
			fresh := 0
			for _, p := range Descendants(pid) {
				if !seen[p] {
					seen[p] = true
					fresh++
					syscall.Kill(p, syscall.SIGSTOP)
				}
			}
			if fresh == 0 {
				break
			}
		}
		if len(seen) == 0 {
			return killed
		}
		for p := range seen {
			if syscall.Kill(p, syscall.SIGKILL) == nil {
				killed++
			}
		}
		// The dead become zombies until their subreaper reaps them;
		// Descendants skips zombies.
		time.Sleep(time.Millisecond)
	}
	return killed
}
