package catalog

// Installed is what the engine needs to boot an installed environment. All
// paths are absolute and point into the content-addressed cache; the files
// are immutable for as long as a blob is referenced by a live VM or
// workspace (see Store.Prune).
type Installed struct {
	Name          string `json:"name"`           // "debian:12"
	Version       string `json:"version"`        // environment (recipe) version, e.g. "2.4.0-1"
	KernelVersion string `json:"kernel_version"` // uname -r of the guest kernel, e.g. "6.1.0-41-cloud-amd64"
	KernelPath    string `json:"kernel_path"`    // the bzImage (vmlinuz) as Debian ships it
	// ModulesPath is a newc cpio archive holding lib/modules/<KernelVersion>/...
	// with (at least) the modules a guest needs: virtio_ring virtio
	// virtio_mmio virtio_blk virtio_console failover net_failover virtio_net
	// virtio_balloon vsock vmw_vsock_virtio_transport_common
	// vmw_vsock_virtio_transport overlay. The engine appends it to the
	// agent's initramfs (the kernel accepts concatenated cpio archives).
	ModulesPath string `json:"modules_path"`
	// RootfsPath is a raw ext4 image of the Debian root filesystem (label
	// "root"). The engine never writes to it: each VM gets a qcow2 overlay.
	RootfsPath string `json:"rootfs_path"`
	// Digests of the three blobs, "sha256:<hex>".
	KernelDigest  string `json:"kernel_digest"`
	ModulesDigest string `json:"modules_digest"`
	RootfsDigest  string `json:"rootfs_digest"`
}
