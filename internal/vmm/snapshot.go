package vmm

import (
	"context"
	"errors"
)

// MemoryFile is a file that holds a machine's RAM.
type MemoryFile struct {
	Path string
	// Shared maps the file shared: the guest's writes reach it (a
	// template being built). Otherwise the mapping is private: pages are
	// read from the file and copied on the guest's first write to them,
	// so any number of clones share the pages none of them changed.
	Shared bool
}

// Restore starts a machine from a saved state instead of booting it.
type Restore struct {
	// State is the saved device state (QEMU's migration stream), or the
	// snapshot file of a backend with its own format.
	State string
	// IgnoreShared says the state holds no RAM: the pages come from the
	// spec's Memory file (a template clone). Otherwise RAM is in State (a
	// suspended workspace).
	IgnoreShared bool
	// Memory is the RAM file of a backend that keeps RAM apart from its
	// device state (Firecracker's mem_file_path), for a restore without
	// IgnoreShared (a suspended machine). QEMU keeps that RAM in State and
	// ignores it; a template clone's RAM is the spec's Memory file.
	Memory string
}

// ErrNotRestorable marks a failure to start a machine from its saved
// state: the caller may boot it afresh instead.
var ErrNotRestorable = errors.New("the saved state cannot be restored")

// SaveOptions say how a machine's state is saved.
type SaveOptions struct {
	// State is the file the device state (and, without IgnoreShared, the
	// RAM) is written to. It is created or truncated.
	State string
	// IgnoreShared leaves RAM out: it is already in the machine's shared
	// Memory file (a template).
	IgnoreShared bool
	// Memory is where a backend that writes RAM apart from the device
	// state (Firecracker, whose machines run on anonymous memory) writes
	// it: the template's memory file with IgnoreShared, a suspended
	// machine's RAM without. QEMU ignores it.
	Memory string
}

// Saver is implemented by backends that can save a running machine's
// state so that Restore starts it again. The machine is paused first and
// stays paused: the caller kills it once the state is safe.
type Saver interface {
	Save(ctx context.Context, dir string, o SaveOptions) error
}
