package engine

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// fullDiskSlack is the free space under which a host disk counts as full.
const fullDiskSlack = 1 << 20

// noSpace names the cause of a guest call's failure when the host disk
// holding the VM's disk is full. The guest only sees an I/O error (QEMU
// reports the host's ENOSPC to it as EIO, werror=report), so the host
// says what it is and what to do. The guest's file system does not come
// back from failed writes (ext4 turns read-only), so the VM is stopped:
// the next command boots it again from its disk, which replays the
// journal once there is space.
func (e *Engine) noSpace(rec *vmRecord, err error) error {
	if err == nil || errors.Is(err, syscall.ENOSPC) {
		return err
	}
	if !hostFull(e.storeOf(rec.Kind).Path(rec.ID)) {
		return err
	}
	e.killProcesses(rec)
	return errdefs.Wrap(errdefs.ErrUnavailable, fmt.Errorf("%w (%v)", syscall.ENOSPC, err),
		fmt.Sprintf("free disk space in the state directory ($PYRO_STATE_DIR, %s), then retry: the VM was stopped, and its next command boots it again from its disk", e.opts.StateDir),
		"%s %s: the host disk that holds its disk is full", rec.Kind, rec.ID)
}

// hostFull reports whether the file system of dir has (nearly) no space
// left.
func hostFull(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Bavail*uint64(st.Bsize) < fullDiskSlack
}
