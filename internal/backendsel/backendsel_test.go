package backendsel

import (
	"errors"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/kvm"
)

func TestChoose(t *testing.T) {
	usable := kvm.Result{Verdict: kvm.Usable, Usable: true}
	pvm := kvm.Result{Verdict: kvm.Unusable, Reason: "failed to set MSR 0x10a"}
	busy := kvm.Result{Verdict: kvm.Inconclusive, Reason: "no end within 5s"}
	unverified := kvm.Result{Verdict: kvm.Unverified, Reason: "no kernel"}
	tcgBroken := kvm.Result{Verdict: kvm.Unusable, Reason: "qemu crashed"}
	tcgBusy := kvm.Result{Verdict: kvm.Inconclusive}
	qemu := Facts{QEMU: "/q", QEMUImg: "/qi"}
	with := func(f Facts, mod func(*Facts)) Facts { mod(&f); return f }
	tests := []struct {
		name    string
		want    string
		facts   Facts
		choice  string
		class   error  // when no choice
		mention string // in the error
	}{
		{"auto: tcg", Auto, with(qemu, func(f *Facts) { f.KVM = pvm }), NameQEMUTCG, nil, ""},
		{"auto: kvm", Auto, with(qemu, func(f *Facts) { f.KVM = usable }), NameQEMUKVM, nil, ""},
		{"auto: busy kvm probe falls back to tcg", Auto, with(qemu, func(f *Facts) { f.KVM = busy }), NameQEMUTCG, nil, ""},
		{"auto: busy tcg test boot is no verdict", Auto, with(qemu, func(f *Facts) { f.TCG = tcgBusy }), NameQEMUTCG, nil, ""},
		{"auto: broken tcg", Auto, with(qemu, func(f *Facts) { f.TCG = tcgBroken }), "", errdefs.ErrUnavailable, "qemu crashed"},
		{"auto: firecracker on real kvm", Auto, with(qemu, func(f *Facts) { f.Firecracker, f.KVM = "/fc", usable }), NameFirecracker, nil, ""},
		{"auto: firecracker on pvm is passed over", Auto, with(qemu, func(f *Facts) { f.Firecracker, f.KVM = "/fc", pvm }), NameQEMUTCG, nil, ""},
		{"auto: firecracker without qemu falls to a clear error", Auto, Facts{Firecracker: "/fc", KVM: unverified}, "", errdefs.ErrUnavailable, "firecracker is installed"},
		{"auto: nothing", Auto, Facts{KVM: unverified}, "", errdefs.ErrUnavailable, "qemu-system-x86_64 and qemu-img not found"},
		{"auto: no qemu-img", Auto, Facts{QEMU: "/q"}, "", errdefs.ErrUnavailable, "qemu-img not found"},
		{"qemu by name", QEMU, with(qemu, func(f *Facts) { f.Firecracker, f.KVM = "/fc", usable }), NameQEMUKVM, nil, ""},
		{"qemu by name, missing", QEMU, Facts{Firecracker: "/fc"}, "", errdefs.ErrUnavailable, "no guest can boot on this host: qemu-system-x86_64 and qemu-img not found"},
		{"firecracker by name trusts an unverified kvm", Firecracker, Facts{Firecracker: "/fc", KVM: unverified}, NameFirecracker, nil, ""},
		{"firecracker by name on pvm", Firecracker, with(qemu, func(f *Facts) { f.Firecracker, f.KVM = "/fc", pvm }), "", errdefs.ErrFailedPrecondition, "MSR"},
		{"firecracker by name, not installed", Firecracker, qemu, "", errdefs.ErrFailedPrecondition, "not installed"},
		{"unknown", "kvm", qemu, "", errdefs.ErrInvalidArgument, "unknown backend"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Choose(tt.want, tt.facts)
			if c.Name != tt.choice {
				t.Fatalf("chose %q (%v), want %q", c.Name, err, tt.choice)
			}
			if tt.class == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tt.class) || errdefs.ClassOf(err) != tt.class {
				t.Errorf("error class %s, want %v: %v", errdefs.Code(err), tt.class, err)
			}
			if !strings.Contains(err.Error(), tt.mention) || errdefs.HintOf(err) == "" && tt.class != errdefs.ErrInvalidArgument {
				t.Errorf("error %q (hint %q) should mention %q and say what to do", err, errdefs.HintOf(err), tt.mention)
			}
		})
	}
}
