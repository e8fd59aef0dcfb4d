package catalog

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro/internal/atomicfile"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// A lease records that a VM or workspace uses an environment's blobs, so
// that Prune keeps them even after the environment is removed or replaced.
type lease struct {
	ID          string    `json:"id"`
	Environment string    `json:"environment"`
	Digests     []string  `json:"digests"`
	Created     time.Time `json:"created"`
}

func validLeaseID(id string) bool {
	return id != "" && len(id) <= 128 && !strings.ContainsAny(id, "/\\\x00") && id != "." && id != ".."
}

// Acquire records that leaseID (a VM or workspace) uses inst's blobs:
// Prune keeps them until Release, even if the environment is removed or
// replaced meanwhile. Acquiring an existing lease replaces it.
func (s *Store) Acquire(leaseID string, inst *Installed) error {
	if !validLeaseID(leaseID) {
		return errdefs.New(errdefs.ErrInvalidArgument, "", "bad lease id %q", leaseID)
	}
	if inst == nil {
		return errdefs.New(errdefs.ErrInvalidArgument, "", "lease %s: no environment", leaseID)
	}
	l := lease{ID: leaseID, Environment: inst.Name, Created: time.Now().UTC(),
		Digests: []string{inst.KernelDigest, inst.ModulesDigest, inst.RootfsDigest}}
	data, err := json.Marshal(l)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(s.path("leases", leaseID+".json"), data, 0o600)
}

// Release drops a lease. Releasing an unknown lease is not an error.
func (s *Store) Release(leaseID string) error {
	if !validLeaseID(leaseID) {
		return errdefs.New(errdefs.ErrInvalidArgument, "", "bad lease id %q", leaseID)
	}
	err := os.Remove(s.path("leases", leaseID+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
