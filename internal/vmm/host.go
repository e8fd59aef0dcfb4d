package vmm

import (
	"os"
	"strings"
	"syscall"
)

// HostMemMiB is the host's total RAM in MiB (0 if unknown).
func HostMemMiB() int {
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) != nil {
		return 0
	}
	return int(uint64(si.Totalram) * uint64(si.Unit) >> 20)
}

// MaxGuestMemMiB is the most memory a backend offers one guest: the host's
// RAM less a margin of 1 GiB or an eighth, whichever is more (at least 256).
func MaxGuestMemMiB() int {
	total := HostMemMiB()
	return max(256, total-max(1024, total/8))
}

// LastLine returns the last non-empty line of a file (a VMM's stderr, whose
// last line says why it stopped), or "".
func LastLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		s = s[i+1:]
	}
	return s
}
