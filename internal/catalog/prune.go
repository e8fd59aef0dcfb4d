package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/flock"
)

// PruneResult says what Prune removed.
type PruneResult = api.PruneResult

// Prune removes installs that no longer match the catalog (unknown names,
// older recipe versions), blobs no installed environment references, and
// leftovers of interrupted pulls. A blob held by a lease is never freed.
func (s *Store) Prune(ctx context.Context) (*PruneResult, error) {
	gcLock, err := s.acquire(ctx, "gc", flock.Exclusive)
	if err != nil {
		return nil, err
	}
	defer gcLock.Unlock()
	res := &PruneResult{RemovedEnvironments: []string{}, RemovedBlobs: []string{}, LeasedBlobs: []string{}}
	keep := map[string]bool{}
	files, _ := filepath.Glob(s.path("envs", "*.json"))
	for _, f := range files {
		var m Manifest
		data, err := os.ReadFile(f)
		stale := err != nil || json.Unmarshal(data, &m) != nil
		if !stale {
			e, err := Lookup(m.Name)
			stale = err != nil || e.Version != m.Version || s.manifestPath(m.Name) != f
		}
		if stale {
			if err := os.Remove(f); err != nil {
				return nil, err
			}
			name := m.Name
			if name == "" {
				name = strings.TrimSuffix(filepath.Base(f), ".json")
			}
			res.RemovedEnvironments = append(res.RemovedEnvironments, name)
			continue
		}
		for _, b := range m.Blobs.List() {
			keep[b.Digest] = true
		}
	}
	leased := map[string]bool{}
	leases, _ := filepath.Glob(s.path("leases", "*.json"))
	for _, f := range leases {
		var l lease
		if data, err := os.ReadFile(f); err == nil && json.Unmarshal(data, &l) == nil {
			for _, d := range l.Digests {
				leased[d] = true
			}
		}
	}
	var digests []string
	for _, alg := range []string{algSHA256, algSparse} {
		blobs, _ := os.ReadDir(s.path("blobs", alg))
		for _, de := range blobs {
			digests = append(digests, alg+":"+de.Name())
		}
	}
	for _, d := range digests {
		if keep[d] {
			continue
		}
		if leased[d] {
			res.LeasedBlobs = append(res.LeasedBlobs, d)
			continue
		}
		p := s.BlobPath(d)
		freed := diskUsage(p)
		if err := os.RemoveAll(p); err != nil {
			return nil, err
		}
		_ = os.Remove(s.stampPath(d))
		res.RemovedBlobs = append(res.RemovedBlobs, d)
		res.FreedBytes += freed
	}
	// A temp dir belongs to a pull that holds its environment's lock; if
	// the lock is free, the pull is gone.
	tmps, _ := os.ReadDir(s.path("tmp"))
	for _, de := range tmps {
		env, _, _ := strings.Cut(de.Name(), ".")
		if l, ok := s.tryAcquire("env-" + env); ok {
			err := removeTree(s.path("tmp", de.Name()))
			l.Unlock()
			if err != nil {
				return nil, err
			}
			res.RemovedTemp++
		}
	}
	slices.Sort(res.RemovedEnvironments)
	return res, ctx.Err()
}

// removeTree removes a build directory, first detaching anything still
// mounted below it (an interrupted mmdebstrap can leave /proc, /sys and
// /dev/pts mounted in its chroot): RemoveAll must never walk into those.
func removeTree(dir string) error {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err == nil {
		var mounts []string
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) > 4 && strings.HasPrefix(unescapeMount(f[4]), dir+"/") {
				mounts = append(mounts, unescapeMount(f[4]))
			}
		}
		slices.Sort(mounts)
		slices.Reverse(mounts)
		for _, m := range mounts {
			if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
				return fmt.Errorf("unmounting %s before removing %s: %w", m, dir, err)
			}
		}
	}
	return os.RemoveAll(dir)
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}
