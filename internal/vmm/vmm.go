// Package vmm owns the interface every virtual machine monitor backend
// implements (QEMU with KVM or TCG, Firecracker, host-compat) and the
// capabilities each reports. Backends start a machine and hand back a byte
// stream to the guest agent; the agent protocol itself is agentproto's.
package vmm

import (
	"context"
	"io"

	"github.com/pyro-mcp/pyro/internal/netpolicy"
	"github.com/pyro-mcp/pyro/internal/netstack"
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
	// Serial is the virtio-blk serial the guest reads in
	// /sys/block/vdX/serial: how the agent tells a workspace's disks
	// apart whatever order they appear in. Empty: none.
	Serial string
	// Scratch marks a disk deleted with its machine (a one-shot run's):
	// the guest's flushes need not reach the host's disk, so the VMM may
	// ignore them.
	Scratch bool
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

	// NetPolicy is the guest network's policy. Network is the shorthand
	// callers used before policies (true: egress); NetPolicy, when set,
	// wins. Backends ask NetworkPolicy, never either field.
	NetPolicy netpolicy.Policy `json:",omitzero"`

	// Memory, when set, backs guest RAM with a file instead of anonymous
	// memory: shared while a template is built (the guest writes the
	// file, which becomes the template's memory), private copy-on-write
	// for a clone of it. See snapshot.go.
	Memory *MemoryFile `json:",omitempty"`
	// Restore, when set, starts the machine from a saved state (a
	// template clone, or a suspended workspace) instead of booting it.
	Restore *Restore `json:",omitempty"`
}

// NetworkPolicy is the policy the machine's network follows: NetPolicy
// when set, else egress when Network is true, else off (no network
// device). Backends ask this, never Network itself.
func (s MachineSpec) NetworkPolicy() netpolicy.Policy {
	switch {
	case s.NetPolicy.Mode != "":
		return s.NetPolicy
	case s.Network:
		return netpolicy.Egress()
	}
	return netpolicy.Off()
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

// Networked is implemented by machines whose guest network runs in the
// process that started them (QEMU with pyro's own network stack): the
// supervisor serves publish, policy and connection-log requests through
// it. Network returns nil when the machine has no network or another
// program (passt, slirp) carries it.
type Networked interface {
	Network() *netstack.Stack
}

// Backend starts machines.
type Backend interface {
	Capabilities() Capabilities
	Start(ctx context.Context, spec MachineSpec) (Machine, error)
}
