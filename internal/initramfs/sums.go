package initramfs

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/pyro-mcp/pyro/internal/atomicfile"
)

// Hashing pyro's own binary costs tens of milliseconds on every boot, and
// more than that under load: a warm start is a few hundred. So the digests
// of the agent and the modules are remembered per file identity (device,
// inode, size, modification and change times): in the process, and in
// sums.json beside the initramfs images for the next pyro process. A file
// rewritten in place changes its times, so a stale digest is never used.

const sumsFile = "sums.json"

// maxSums bounds sums.json: the binaries of a few builds of pyro.
const maxSums = 32

var sumsMemo sync.Map // identity -> digest

// fileID identifies a file's content as far as its metadata can.
func fileID(p string) (string, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d:%d:%d:%d.%d:%d.%d", st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec), nil
}

// cachedSum is fileSum(p), remembered in dir's sums.json.
func cachedSum(dir, p string) (string, error) {
	id, err := fileID(p)
	if err != nil {
		return "", err
	}
	if v, ok := sumsMemo.Load(id); ok {
		return v.(string), nil
	}
	file := filepath.Join(dir, sumsFile)
	var sums map[string]string
	if data, err := os.ReadFile(file); err == nil {
		json.Unmarshal(data, &sums)
	}
	if s, ok := sums[id]; ok && len(s) == 64 {
		sumsMemo.Store(id, s)
		return s, nil
	}
	sum, err := fileSum(p)
	if err != nil {
		return "", err
	}
	sumsMemo.Store(id, sum)
	if sums == nil || len(sums) >= maxSums {
		sums = map[string]string{}
	}
	sums[id] = sum
	if data, err := json.Marshal(sums); err == nil && os.MkdirAll(dir, 0o755) == nil {
		_ = atomicfile.WriteFile(file, data, 0o644)
	}
	return sum, nil
}
