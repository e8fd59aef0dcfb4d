// Package atomicfile writes files so that readers see the old content or the
// new, never a half-written file: temp file in the same directory, fsync
// (unless told not to), rename.
package atomicfile

import (
	"os"
	"path/filepath"
)

// WriteFile writes data to path atomically with mode perm, durably: once
// it returns, the new content survives a crash of the host.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, true)
}

// WriteFileUnsynced is WriteFile without the fsync: readers and a crash of
// the writing process still see the old content or the new, but a crash of
// the host may bring back the old. For values that a later WriteFile of the
// same file makes durable (a counter bumped before work whose end is
// recorded), where an fsync per call would cost more than it protects.
func WriteFileUnsynced(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, false)
}

func write(path string, data []byte, perm os.FileMode, durable bool) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if durable {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
