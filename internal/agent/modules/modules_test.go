package modules

import (
	"slices"
	"testing"
)

// All keeps the order environments have shipped since 2.4, so the modules
// blob of a rebuild lists them the same way.
func TestAll(t *testing.T) {
	want := []string{
		"virtio_ring", "virtio", "virtio_mmio", "virtio_blk", "virtio_console",
		"failover", "net_failover", "virtio_net", "virtio_balloon",
		"vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport",
		"overlay",
	}
	if got := All(); !slices.Equal(got, want) {
		t.Fatalf("All() = %v, want %v", got, want)
	}
}
