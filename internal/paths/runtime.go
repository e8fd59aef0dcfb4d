package paths

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// EnsureRuntimeDir creates the runtime directory dir (mode 0700) or checks
// the one that is there. It holds the sockets that drive every VM, and its
// default lives in the shared /tmp, where another local user could have
// made it first: so dir must be a real directory (not a symlink), owned by
// this user; group and other permission bits are removed.
func EnsureRuntimeDir(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return fmt.Errorf("creating runtime directory: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("creating runtime directory: %w", err)
	}
	// Open without following a symlink, then judge what was opened, so
	// that nothing can be swapped in between the check and the chmod.
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		why := err.Error()
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			why = "it is a symlink or not a directory"
		}
		return unsafeRuntimeDir(dir, why)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("checking runtime directory %s: %w", dir, err)
	}
	if int(st.Uid) != os.Geteuid() {
		return unsafeRuntimeDir(dir, fmt.Sprintf("it belongs to uid %d, not to you (uid %d)", st.Uid, os.Geteuid()))
	}
	if st.Mode&0o077 != 0 {
		if err := unix.Fchmod(fd, 0o700); err != nil {
			return fmt.Errorf("making runtime directory %s private: %w", dir, err)
		}
	}
	return nil
}

func unsafeRuntimeDir(dir, why string) error {
	return errdefs.New(errdefs.ErrFailedPrecondition,
		"if you did not make it, another user may have: remove it (or ask root to) and retry, or set PYRO_RUNTIME_DIR to a private directory of yours",
		"refusing runtime directory %s: %s", dir, why)
}
