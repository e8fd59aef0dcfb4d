// Package modules is the one list of kernel modules a pyro guest uses: the
// catalog ships exactly these in an environment's modules blob, and the
// agent (PID 1 in the guest) loads the groups a boot needs, in this order.
// Debian's cloud kernel builds them as modules; ext4 and devtmpfs are
// built in. A module missing from a kernel is skipped (it may be built in).
package modules

// The groups, each in load order (a module after the ones it depends on).
var (
	// Boot is loaded first: the disks and the virtio-serial channel.
	Boot = []string{"virtio_ring", "virtio", "virtio_mmio", "virtio_blk", "virtio_console"}
	// Net serves pyro_net=1.
	Net = []string{"failover", "net_failover", "virtio_net"}
	// Late loads after the agent is ready: nothing waits for it.
	Late = []string{"virtio_balloon"}
	// Vsock serves pyro_channel=vsock (Firecracker).
	Vsock = []string{"vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport"}
	// Overlay serves pyro_rootmode=overlay (Firecracker).
	Overlay = []string{"overlay"}
)

// All is every module a guest may load, in a valid load order: what an
// environment's modules blob holds.
func All() []string {
	var all []string
	for _, g := range [][]string{Boot, Net, Late, Vsock, Overlay} {
		all = append(all, g...)
	}
	return all
}
