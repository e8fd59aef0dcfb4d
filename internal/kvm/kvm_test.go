package kvm

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestProbeWithoutBoot(t *testing.T) {
	tests := []struct {
		name   string
		opts   Options
		want   string
		usable bool
	}{
		{"forced off", Options{Device: "/dev/kvm", Force: "off"}, ForcedOff, false},
		{"forced on", Options{Device: "/nonexistent/kvm", Force: "on"}, ForcedOn, true},
		{"no device", Options{Device: "/nonexistent/kvm", Force: "auto"}, Absent, false},
		{"not a kvm device", Options{Device: "/dev/null", Force: "auto"}, Absent, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Probe(t.Context(), tt.opts)
			if r.Verdict != tt.want || r.Usable != tt.usable {
				t.Fatalf("got %s usable=%v (%s), want %s usable=%v", r.Verdict, r.Usable, r.Reason, tt.want, tt.usable)
			}
			if r.Reason == "" {
				t.Error("no reason given")
			}
		})
	}
}

// TestVerifyBootTCGAndCache boots a real kernel under TCG (which must work
// wherever QEMU is installed), then checks the second call is served from
// the cache.
func TestVerifyBootTCGAndCache(t *testing.T) {
	kernel := os.Getenv("PYRO_TEST_KERNEL")
	if kernel == "" {
		t.Skip("set PYRO_TEST_KERNEL to a bzImage to test-boot")
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip(err)
	}
	opts := Options{QEMU: qemu, Kernel: kernel, Accel: "tcg", Timeout: 30 * time.Second, CacheFile: filepath.Join(t.TempDir(), "c.json")}
	r := VerifyBoot(t.Context(), opts)
	if !r.Usable || r.Cached {
		t.Fatalf("first boot: %+v", r)
	}
	start := time.Now()
	r2 := VerifyBoot(t.Context(), opts)
	if !r2.Usable || !r2.Cached || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("second call not served from cache: %+v", r2)
	}
	// The real answer for this host's /dev/kvm, for the log.
	k := Probe(t.Context(), Options{QEMU: qemu, Kernel: kernel, CacheFile: "-"})
	t.Logf("kvm here: %s (%s) module=%s", k.Verdict, k.Reason, k.Module)
}
