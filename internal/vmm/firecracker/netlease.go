package firecracker

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/flock"
	"github.com/pyro-mcp/pyro/internal/paths"
)

// netLeases hands out NetPool's /30s. A hash of the VM id alone lets two
// VMs collide (1 in 16384 per pair, the birthday bound much sooner), and
// two VMs on one subnet would share an address. So a VM takes the subnet
// its id hashes to when free, else the next free one, under a lock: a
// lease file per taken subnet, <dir>/<n>, names the TAP that uses it. A
// lease whose TAP no longer exists (a VM that died without cleaning up, a
// host reboot) is free again. The lock is held until the TAP exists (see
// Start), so a fresh lease is never mistaken for a stale one.
type netLeases struct {
	dir       string
	tapExists func(tap string) bool
}

// defaultNetLeases keeps the leases in pyro's state directory.
func defaultNetLeases() netLeases {
	return netLeases{dir: filepath.Join(paths.StateDir(), "firecracker-net"), tapExists: tapExists}
}

func tapExists(tap string) bool {
	_, err := os.Lstat(filepath.Join("/sys/class/net", tap))
	return err == nil
}

// allocate takes a subnet for id and returns its plan with the lock still
// held: the caller creates the TAP, then calls unlock.
func (l netLeases) allocate(ctx context.Context, id string) (plan *NetPlan, unlock func(), err error) {
	if err := paths.EnsurePrivate(l.dir); err != nil {
		return nil, nil, fmt.Errorf("creating the network lease directory: %w", err)
	}
	lock, err := flock.Acquire(ctx, filepath.Join(l.dir, "lock"), flock.Exclusive, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("locking the network leases: %w", err)
	}
	first := preferredSubnet(id)
	for i := uint32(0); i < subnets; i++ {
		n := (first + i) % subnets
		p := planAt(id, n)
		lease := filepath.Join(l.dir, strconv.Itoa(int(n)))
		data, err := os.ReadFile(lease)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			continue
		case strings.TrimSpace(string(data)) == p.Tap:
			// Our own TAP from an earlier start (same id): reuse it.
		case l.tapExists(strings.TrimSpace(string(data))):
			continue
		}
		if err := os.WriteFile(lease, []byte(p.Tap+"\n"), 0o600); err != nil {
			lock.Unlock()
			return nil, nil, fmt.Errorf("writing the network lease: %w", err)
		}
		p.Lease = lease
		return p, lock.Unlock, nil
	}
	lock.Unlock()
	return nil, nil, errdefs.New(errdefs.ErrUnavailable, "delete VMs you no longer need",
		"all %d guest subnets of %s are in use", subnets, NetPool)
}

// release gives p's subnet back.
func (l netLeases) release(p *NetPlan) {
	if p != nil && p.Lease != "" {
		_ = os.Remove(p.Lease)
	}
}
