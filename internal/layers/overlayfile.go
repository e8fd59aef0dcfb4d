package layers

import (
	"os"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// WriteOverlayFile creates path (mode 0600, failing if it exists): an
// empty qcow2 of size bytes over parent, a file name that QEMU resolves
// against path's directory when relative. The parent is not opened. A
// VM's disk outside the pool is made this way, without a qemu-img process.
func WriteOverlayFile(path, parent string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return errdefs.Wrap(errdefs.ErrInternal, err, "check free disk space", "creating disk %s", path)
	}
	err = writeOverlay(f, parent, formatOf(parent), size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return errdefs.Wrap(errdefs.ErrInternal, err, "check free disk space", "creating disk %s", path)
	}
	return nil
}
