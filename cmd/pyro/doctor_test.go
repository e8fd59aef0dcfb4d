package main

import (
	"context"
	"sync"
	"time"

	"github.com/pyro-mcp/pyro/internal/catalog"
	"github.com/pyro-mcp/pyro/internal/kvm"
	"github.com/pyro-mcp/pyro/internal/vmm/qemu"
)

var kvmOnce = sync.OnceValue(func() kvm.Result {
	bin, err := qemu.FindBinary("")
	if err != nil {
		return kvm.Result{Verdict: kvm.Absent}
	}
	var kernel string
	if s, err := catalog.Open(catalog.Options{Dir: testCacheDir(), Registry: "none"}); err == nil {
		for _, name := range catalog.Names() {
			if inst, err := s.Resolve(context.Background(), name); err == nil {
				kernel = inst.KernelPath
				break
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return kvm.Probe(ctx, kvm.Options{QEMU: bin, Kernel: kernel})
})

func init() {
	// [kvm]: KVM really boots a guest here (a /dev/kvm that cannot, as on
	// kvm_pvm hosts, does not count).
	scriptCondRegistry["kvm"] = func() (bool, error) { return kvmOnce().Usable, nil }
	// [qemu]: qemu-system-x86_64 is installed.
	scriptCondRegistry["qemu"] = func() (bool, error) {
		_, err := qemu.FindBinary("")
		return err == nil, nil
	}
}
