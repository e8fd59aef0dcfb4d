// Package kvm owns the answer to "can QEMU use KVM on this host?" (and,
// for doctor, "does a guest boot under TCG here?"). A /dev/kvm that opens
// and answers KVM_GET_API_VERSION is not enough: some hosts expose a KVM
// device (kvm_pvm, nested setups) on which QEMU aborts ("failed to set MSR
// 0x10a") or hangs with a standard guest kernel. So the probe boots a real
// kernel under -accel kvm and only trusts KVM if that boot runs to its end.
//
// Only definite answers are verdicts: a guest booted (Usable), or QEMU
// refused with an error (Unusable). They are cached per host boot, QEMU
// binary, kernel and accelerator in the environment cache (see
// DefaultCacheFile), and any real guest boot refreshes them (RecordBoot).
// A test boot that does not finish in time is retried once with twice the
// deadline; if it still does not finish, the answer is Inconclusive, which
// is never cached as a verdict: a busy host is not a broken one. Deadlines
// scale with the host's load and with the last boot time measured here.
package kvm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Verdicts.
const (
	Usable       = "usable"       // a guest kernel booted under KVM
	Unusable     = "unusable"     // QEMU refused or broke off the test boot with an error
	Inconclusive = "inconclusive" // the test boot did not finish in time, twice; not a verdict
	Unverified   = "unverified"   // the device looks fine but no kernel was available to try
	Absent       = "absent"       // no usable /dev/kvm
	ForcedOn     = "forced_on"    // PYRO_KVM=on
	ForcedOff    = "forced_off"   // PYRO_KVM=off
)

// Result is what the probe found. Only Usable (and ForcedOn) let a backend
// use KVM.
type Result struct {
	Device     string `json:"device"`
	Present    bool   `json:"present"`
	Readable   bool   `json:"readable"`
	Writable   bool   `json:"writable"`
	APIVersion int    `json:"api_version,omitempty"` // 12 on every sane kernel
	Module     string `json:"module,omitempty"`      // kvm_intel, kvm_amd, kvm_pvm...
	Verdict    string `json:"verdict"`
	Usable     bool   `json:"usable"`
	Reason     string `json:"reason"`
	Kernel     string `json:"kernel,omitempty"` // the kernel booted by the test
	Cached     bool   `json:"cached"`
	BootMillis int64  `json:"boot_ms,omitempty"` // how long the test boot took
	// DeadlineMillis is the deadline of the last test boot this answer
	// rests on, and Deadline says where it came from (base, load, last
	// boot time), so that a timeout can be judged.
	DeadlineMillis int64  `json:"deadline_ms,omitempty"`
	Deadline       string `json:"deadline,omitempty"`
	// Attempts is how many test boots this call ran (0: from the cache).
	Attempts int `json:"attempts,omitempty"`
}

// Definite reports whether r is an answer that holds until the host, QEMU
// or the kernel changes (and may therefore be cached).
func (r Result) Definite() bool { return r.Verdict == Usable || r.Verdict == Unusable }

// Options tunes Probe. The zero value probes /dev/kvm without a boot test.
type Options struct {
	// QEMU is qemu-system-x86_64; empty skips the boot test.
	QEMU string
	// Kernel is a bzImage/vmlinux to boot; empty skips the boot test and
	// the verdict is at best Unverified.
	Kernel string
	// Timeout is the base deadline of a test boot; 0 means 5 s under KVM
	// and 20 s under TCG. The deadline used is longer on a loaded host or
	// when the last boot measured here was slow (see Deadline), and a boot
	// that misses it is retried once with twice the deadline.
	Timeout time.Duration
	// CacheFile stores verdicts; empty means DefaultCacheFile(), "-"
	// disables the cache.
	CacheFile string
	// Device defaults to /dev/kvm.
	Device string
	// Force overrides $PYRO_KVM ("on", "off"); empty reads the environment.
	Force string
	// Accel is the accelerator the boot test uses; doctor sets "tcg" to
	// prove software emulation works too. Empty means "kvm".
	Accel string
	// Recheck re-runs a test boot whose last attempt was inconclusive
	// instead of answering from that note (doctor does; the engine, which
	// must not wait on every create, does not).
	Recheck bool
}

func (o Options) accel() string {
	if o.Accel == "" {
		return "kvm"
	}
	return o.Accel
}

// kvmGetAPIVersion is _IO(KVMIO=0xAE, 0x00).
const kvmGetAPIVersion = 0xAE00

// Check answers what can be known without booting: the device, its API
// version and $PYRO_KVM. The verdict is ForcedOn, ForcedOff, Absent, or
// Unverified for a device that looks right. It never blocks.
func Check(opts Options) Result {
	if opts.Device == "" {
		opts.Device = "/dev/kvm"
	}
	force := opts.Force
	if force == "" {
		force = strings.ToLower(os.Getenv("PYRO_KVM"))
	}
	r := device(opts.Device)
	switch force {
	case "off", "0", "false", "no":
		r.Verdict, r.Usable, r.Reason = ForcedOff, false, "PYRO_KVM=off"
		return r
	case "on", "1", "true", "yes":
		r.Verdict, r.Usable, r.Reason = ForcedOn, true, "PYRO_KVM=on (not verified)"
		return r
	}
	if !r.Present || !r.Readable || !r.Writable || r.APIVersion != 12 {
		r.Verdict = Absent
		if r.Reason == "" {
			r.Reason = fmt.Sprintf("KVM API version %d, want 12", r.APIVersion)
		}
		return r
	}
	r.Verdict = Unverified
	r.Reason = "no guest kernel to test-boot yet (install an environment with 'pyro env pull debian:12'); KVM is not trusted until a guest boots under it"
	return r
}

// Probe answers whether KVM can run a guest here: Check, then a test boot
// of opts.Kernel under -accel kvm when the device looks right. ctx bounds
// the whole probe, retry included.
func Probe(ctx context.Context, opts Options) Result {
	r := Check(opts)
	if r.Verdict != Unverified || opts.QEMU == "" || opts.Kernel == "" {
		return r
	}
	opts.Accel = "kvm"
	v := VerifyBoot(ctx, opts)
	r.Kernel, r.Verdict, r.Usable, r.Reason, r.BootMillis, r.Cached = v.Kernel, v.Verdict, v.Usable, v.Reason, v.BootMillis, v.Cached
	r.DeadlineMillis, r.Deadline, r.Attempts = v.DeadlineMillis, v.Deadline, v.Attempts
	return r
}

func device(path string) Result {
	r := Result{Device: path, Module: kvmModule()}
	st, err := os.Stat(path)
	if err != nil {
		r.Reason = fmt.Sprintf("%s: %v", path, errors.Unwrap(err))
		if os.IsNotExist(err) {
			r.Reason = path + " does not exist (no hardware virtualisation exposed to this host)"
		}
		return r
	}
	r.Present = st.Mode()&os.ModeCharDevice != 0
	r.Readable = unix.Access(path, unix.R_OK) == nil
	r.Writable = unix.Access(path, unix.W_OK) == nil
	if !r.Readable || !r.Writable {
		r.Reason = path + " is not readable and writable by this user (add the user to the kvm group)"
		return r
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		r.Reason = fmt.Sprintf("opening %s: %v", path, err)
		return r
	}
	defer unix.Close(fd)
	v, err := unix.IoctlRetInt(fd, kvmGetAPIVersion)
	if err != nil {
		r.Reason = fmt.Sprintf("KVM_GET_API_VERSION: %v", err)
		return r
	}
	r.APIVersion = v
	return r
}

// kvmModule names the loaded KVM vendor module, which tells a real
// hardware KVM (kvm_intel, kvm_amd) from a paravirtual one (kvm_pvm).
func kvmModule() string {
	b, err := os.ReadFile("/proc/modules")
	if err != nil {
		return ""
	}
	var mods []string
	for _, line := range strings.Split(string(b), "\n") {
		name, _, _ := strings.Cut(line, " ")
		if strings.HasPrefix(name, "kvm_") {
			mods = append(mods, name)
		}
	}
	return strings.Join(mods, ",")
}
