package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/internal/doctor"
	"github.com/pyro-mcp/pyro/internal/guesttest"
	"github.com/pyro-mcp/pyro/internal/hostbin"
	"github.com/pyro-mcp/pyro/internal/kvm"
)

var kvmOnce = sync.OnceValue(func() kvm.Result {
	p := guesttest.Found()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return kvm.Probe(ctx, kvm.Options{QEMU: p.QEMU, Kernel: p.Kernel})
})

func init() {
	// [kvm]: KVM really boots a guest here (a /dev/kvm that cannot, as on
	// kvm_pvm hosts, does not count).
	scriptCondRegistry["kvm"] = func() (bool, error) { return kvmOnce().Usable, nil }
	// [qemu]: qemu-system-x86_64 is installed.
	scriptCondRegistry["qemu"] = func() (bool, error) { return hostbin.QEMU.Path() != "", nil }
	// [firecracker]: a firecracker binary is installed.
	scriptCondRegistry["firecracker"] = func() (bool, error) { return hostbin.Firecracker.Path() != "", nil }
}

// TestDoctorWhileGuestsBoot runs doctor's checks, with a fresh probe
// cache and a deliberately short base deadline, while guests boot in
// parallel: however slow the test boot gets, doctor must not flip to
// "no backend", and a boot that did not finish must not become a cached
// "unusable" verdict.
func TestDoctorWhileGuestsBoot(t *testing.T) {
	guesttest.Need(t)
	state := t.TempDir()
	run, err := os.MkdirTemp("", "pyro-dr-") // short: unix socket paths
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	env := append(os.Environ(), "PYRO_STATE_DIR="+state, "PYRO_RUNTIME_DIR="+run, "PYRO_CACHE_DIR="+testCacheDir())
	const guests = 3
	var wg sync.WaitGroup
	errs := make(chan error, guests)
	for range guests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(filepath.Join(pyroBinDir, "pyro"), "run", "debian:12", "--", "true")
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("%v: %s", err, out)
			}
		}()
	}
	t.Cleanup(func() { killProcessesMentioning(state, run) })

	cacheFile := filepath.Join(t.TempDir(), "kvm-probe.json")
	probes := doctor.HostProbes()
	probes.TCG = func(ctx context.Context, qemu, kernel string) kvm.Result {
		return kvm.VerifyBoot(ctx, kvm.Options{QEMU: qemu, Kernel: kernel, Accel: "tcg", Timeout: 300 * time.Millisecond,
			CacheFile: cacheFile, Recheck: true})
	}
	r := doctor.Run(t.Context(), doctor.Options{Probes: probes})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("pyro run while doctor ran: %v", err)
	}
	if !r.OK || r.Selected == "" {
		t.Fatalf("doctor under load: ok=%v selected=%q (%s); tcg %+v", r.OK, r.Selected, r.NoneReason, r.TCG)
	}
	t.Logf("doctor under load: selected %s; tcg test boot %s after %d attempt(s): %s", r.Selected, r.TCG.Verdict, r.TCG.Attempts, r.TCG.Reason)
	if r.TCG.Verdict == kvm.Unusable {
		t.Fatalf("a slow test boot became a verdict: %+v", r.TCG)
	}
	// After the load: the guests that booted recorded a definite verdict
	// in the cache every pyro shares, so doctor answers from it at once.
	after := kvm.VerifyBoot(t.Context(), kvm.Options{QEMU: hostbin.QEMU.Path(), Kernel: r.TCG.Kernel, Accel: "tcg",
		CacheFile: filepath.Join(testCacheDir(), "kvm-probe.json")})
	if !after.Usable || !after.Cached {
		t.Errorf("after guests booted, the TCG verdict is not a cached usable one: %+v", after)
	}
	cmd := exec.Command(filepath.Join(pyroBinDir, "pyro"), "doctor", "--json")
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil || !strings.Contains(string(out), `"ok": true`) {
		t.Errorf("pyro doctor after the load: %v\n%s", err, out)
	}
}
