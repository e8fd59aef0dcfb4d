// Package backendsel owns the one policy that picks the VMM a new guest
// boots with. The engine follows it and `pyro doctor` reports it, so the two
// cannot disagree: Choose is a pure function of the facts (binaries found,
// KVM probe), and Gather collects those facts the same way for both.
//
// The policy, for the automatic choice: Firecracker when its binary is
// found and KVM is verified to run a guest; else QEMU (with KVM when
// verified, TCG otherwise) when qemu-system-x86_64 and qemu-img are found;
// else no guest can boot, and the error says what is missing. A backend
// asked for by name is used if it can work at all, or refused with why.
package backendsel

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro/internal/catalog"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/hostbin"
	"github.com/pyro-mcp/pyro/internal/kvm"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// Requests: what a caller may ask for (engine Options.Backend, --backend,
// $PYRO_BACKEND).
const (
	Auto        = "auto"
	QEMU        = "qemu"
	Firecracker = "firecracker"
	HostCompat  = "host_compat"
)

// Names of the isolated backends a choice can land on, as doctor and the
// VM records name them.
const (
	NameQEMUKVM     = "qemu-kvm"
	NameQEMUTCG     = "qemu-tcg"
	NameFirecracker = "firecracker"
)

// Check refuses an unknown request.
func Check(want string) error {
	switch want {
	case Auto, QEMU, Firecracker, HostCompat:
		return nil
	}
	return errdefs.New(errdefs.ErrInvalidArgument, "use auto, firecracker, qemu or host_compat", "unknown backend %q", want)
}

// Requested is $PYRO_BACKEND, else auto.
func Requested() string {
	if b := os.Getenv("PYRO_BACKEND"); b != "" {
		return b
	}
	return Auto
}

// Facts are what the choice rests on.
type Facts struct {
	// Resolved paths of the binaries; "" when missing.
	QEMU, QEMUImg, Firecracker string
	// KVM is the probe result: with a kernel, a test boot; without, the
	// device check only (Unverified at best).
	KVM kvm.Result
	// TCG is a TCG test boot, when one was run (doctor does; the engine
	// does not). Only a definite Unusable rules qemu-tcg out.
	TCG kvm.Result
}

// Choice is the backend a guest boots with.
type Choice struct {
	Name  string   // NameQEMUKVM, NameQEMUTCG or NameFirecracker
	Kind  vmm.Kind // vmm.KindQEMU or vmm.KindFirecracker
	Accel string   // "kvm" or "tcg"
}

// FirecrackerKVM says whether Firecracker may run on k: a verified (or
// forced) KVM, or, when asked for by name, a device that looks right but
// could not be test-booted (no QEMU to try it with).
func FirecrackerKVM(k kvm.Result, byName bool) bool {
	return k.Usable || (byName && k.Verdict == kvm.Unverified)
}

// Choose applies the policy to f for a request (Auto, QEMU or
// Firecracker). When no isolated guest can boot it returns an
// ErrUnavailable (auto) or ErrFailedPrecondition (by name) error that
// names what is missing.
func Choose(want string, f Facts) (Choice, error) {
	if err := Check(want); err != nil {
		return Choice{}, err
	}
	qemuErr := qemuMissing(f)
	switch want {
	case Firecracker:
		if f.Firecracker == "" {
			return Choice{}, errdefs.New(errdefs.ErrFailedPrecondition, hostbin.Firecracker.Install+", or use the qemu backend",
				"backend firecracker was requested but firecracker is not installed")
		}
		if !FirecrackerKVM(f.KVM, true) {
			return Choice{}, errdefs.New(errdefs.ErrFailedPrecondition,
				"firecracker needs a working KVM (see 'pyro doctor'); the qemu backend falls back to TCG",
				"backend firecracker was requested but KVM is %s here: %s", f.KVM.Verdict, f.KVM.Reason)
		}
		return Choice{Name: NameFirecracker, Kind: vmm.KindFirecracker, Accel: "kvm"}, nil
	case QEMU:
		if qemuErr != nil {
			return Choice{}, errdefs.New(errdefs.ErrUnavailable, errdefs.HintOf(qemuErr), "no guest can boot on this host: %s", qemuErr)
		}
		return qemuChoice(f), nil
	case HostCompat:
		return Choice{}, errdefs.New(errdefs.ErrInvalidArgument, "", "host_compat is not an isolated backend")
	}
	if f.Firecracker != "" && FirecrackerKVM(f.KVM, false) {
		return Choice{Name: NameFirecracker, Kind: vmm.KindFirecracker, Accel: "kvm"}, nil
	}
	if qemuErr == nil {
		return qemuChoice(f), nil
	}
	msg := "no guest can boot on this host: " + qemuErr.Error()
	hint := errdefs.HintOf(qemuErr)
	if f.Firecracker != "" {
		msg += fmt.Sprintf("; firecracker is installed but is only chosen automatically on a verified KVM, and KVM is %s here: %s", f.KVM.Verdict, f.KVM.Reason)
		hint += "; or ask for the firecracker backend by name (`backend`) to trust /dev/kvm without a test boot"
	}
	hint += "; check with 'pyro doctor', or allow host compatibility (`allow_host_compat`) to run on the host without isolation"
	// The class is the outcome (nothing can boot), not the cause: the
	// cause's words and hint are kept, its class is not wrapped in.
	return Choice{}, errdefs.New(errdefs.ErrUnavailable, hint, "%s", msg)
}

func qemuChoice(f Facts) Choice {
	if f.KVM.Usable {
		return Choice{Name: NameQEMUKVM, Kind: vmm.KindQEMU, Accel: "kvm"}
	}
	return Choice{Name: NameQEMUTCG, Kind: vmm.KindQEMU, Accel: "tcg"}
}

// qemuMissing says why QEMU cannot boot a guest, or nil.
func qemuMissing(f Facts) error {
	var missing, pkgs []string
	if f.QEMU == "" {
		missing, pkgs = append(missing, hostbin.QEMU.Wanted("")), append(pkgs, hostbin.QEMU.Package)
	}
	if f.QEMUImg == "" {
		missing, pkgs = append(missing, hostbin.QEMUImg.Name), append(pkgs, hostbin.QEMUImg.Package)
	}
	if len(missing) > 0 {
		hint := "apt-get install " + strings.Join(pkgs, " ")
		if f.QEMU == "" {
			hint += " (or point " + hostbin.QEMU.Env + " at qemu-system-x86_64)"
		}
		return errdefs.New(errdefs.ErrFailedPrecondition, hint, "%s not found", strings.Join(missing, " and "))
	}
	if f.TCG.Verdict == kvm.Unusable && !f.KVM.Usable {
		return errdefs.New(errdefs.ErrFailedPrecondition, "check the QEMU installation (apt-get install --reinstall qemu-system-x86)",
			"QEMU cannot boot a guest here: %s", f.TCG.Reason)
	}
	return nil
}

// Gather collects the facts on this host: the binaries (hostbin) and the
// KVM probe, which test-boots kernel when one is given (cached per host
// boot; see package kvm) and checks the device only when kernel is "".
// ctx bounds the probe.
func Gather(ctx context.Context, kernel string) Facts {
	f := Facts{QEMU: hostbin.QEMU.Path(), QEMUImg: hostbin.QEMUImg.Path(), Firecracker: hostbin.Firecracker.Path()}
	f.KVM = kvm.Probe(ctx, kvm.Options{QEMU: f.QEMU, Kernel: kernel})
	return f
}

// Select is Gather then Choose.
func Select(ctx context.Context, want, kernel string) (Choice, error) {
	return Choose(want, Gather(ctx, kernel))
}

// RecordBoot tells the KVM probe cache that a real guest booted: the
// engine calls it after every successful start with what the supervisor
// reported. A QEMU boot under KVM or TCG is a definite "usable" for that
// accelerator, and its time scales the next probe's deadline. Other
// backends, and a nil environment (host_compat), record nothing.
func RecordBoot(kind vmm.Kind, accel string, env *catalog.Installed, bootMs int64) {
	if env == nil || (kind != vmm.KindQEMU && kind != "") || (accel != "kvm" && accel != "tcg") {
		return
	}
	kvm.RecordBoot(accel, hostbin.QEMU.Path(), env.KernelPath, time.Duration(bootMs)*time.Millisecond)
}

// Precheck is Choose on what is known without booting anything (binaries,
// the KVM device, $PYRO_KVM): a nil answer means a guest may boot once an
// environment is installed, an error says why none can. host_compat needs
// nothing.
func Precheck(want string) error {
	if want == HostCompat {
		return nil
	}
	f := Facts{QEMU: hostbin.QEMU.Path(), QEMUImg: hostbin.QEMUImg.Path(), Firecracker: hostbin.Firecracker.Path(), KVM: kvm.Check(kvm.Options{})}
	_, err := Choose(want, f)
	return err
}
