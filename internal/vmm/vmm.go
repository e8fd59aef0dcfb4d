// Package vmm owns the interface every virtual machine monitor backend
// implements (QEMU with KVM or TCG, Firecracker, host-compat) and the
// capabilities each reports. Backends start a machine and hand back a byte
// stream to the guest agent; the agent protocol itself is agentproto's.
package vmm

import (
	"context"
	"io"
)

// Kind names a backend.
type Kind string

const (
	KindQEMU        Kind = "qemu"
	KindFirecracker Kind = "firecracker"
	KindHostCompat  Kind = "host_compat"
)

// Capabilities says what a backend can do on this host.
type Capabilities struct {
	Kind        Kind   `json:"kind"`
	Accel       string `json:"accel,omitempty"` // "kvm", "tcg" or "" (host_compat)
	Isolated    bool   `json:"isolated"`        // false only for host_compat
	Network     bool   `json:"network"`         // can give the guest a network
	Channel     string `json:"channel"`         // "virtio-serial", "vsock", "in-process"
	Persistent  bool   `json:"persistent"`      // a writable disk that survives a reboot of the VM
	MaxVCPUs    int    `json:"max_vcpus"`
	MaxMemMiB   int    `json:"max_mem_mib"`
	Description string `json:"description"`
}

// Disk is a block device given to the guest, in order (/dev/vda, /dev/vdb, ...).
type Disk struct {
	Path     string
	Format   string // "raw" or "qcow2"
	ReadOnly bool
}

// MachineSpec describes one machine to boot.
type MachineSpec struct {
	ID      string // short id, used in hostnames and socket names
	Dir     string // private runtime directory for sockets; short path
	Kernel  string
	Initrd  string
	Cmdline string // extra kernel arguments (the backend adds its console/boot ones)
	VCPUs   int
	MemMiB  int
	Disks   []Disk
	Network bool
	Console string // file to append the guest console to; "" discards
	WorkDir string // host_compat only: the directory commands run in
}

// Machine is a started VM.
type Machine interface {
	// Pid is the VMM process id (0 for in-process backends).
	Pid() int
	// AgentConn returns the byte stream to the guest agent. It is called once.
	AgentConn(ctx context.Context) (io.ReadWriteCloser, error)
	// Wait blocks until the VMM exits.
	Wait() error
	// Kill ends the VMM at once.
	Kill() error
}

// Backend starts machines.
type Backend interface {
	Capabilities() Capabilities
	Start(ctx context.Context, spec MachineSpec) (Machine, error)
}
