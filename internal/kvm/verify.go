package kvm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Base deadlines of a test boot. Under TCG a test boot takes ~2 s on an
// idle 2-core host; a guest under real KVM finishes in well under 1 s.
const (
	BaseKVMDeadline = 5 * time.Second
	BaseTCGDeadline = 20 * time.Second
	// MaxDeadline caps the scaled deadline of one attempt.
	MaxDeadline = 3 * time.Minute
)

// VerifyBoot boots opts.Kernel under opts.Accel ("kvm" by default) without
// looking at /dev/kvm, and caches a definite verdict. A boot that misses
// its deadline is retried once with twice the deadline; if that one misses
// too the answer is Inconclusive, noted (not cached as a verdict) so that
// callers without Recheck do not wait again for a while.
func VerifyBoot(ctx context.Context, opts Options) Result {
	accel := opts.accel()
	r := Result{Kernel: opts.Kernel}
	if opts.QEMU == "" || opts.Kernel == "" {
		r.Verdict, r.Reason = Unverified, "no QEMU or no guest kernel to test-boot"
		return r
	}
	c := openCache(opts)
	if v, ok := c.verdict(); ok {
		return v
	}
	if !opts.Recheck {
		if v, ok := c.pending(); ok {
			return v
		}
	}
	// One probe per key at a time: concurrent pyro processes on a cold
	// cache wait for the first one's answer instead of adding load.
	unlock, err := c.lock(ctx)
	if err != nil {
		r.Verdict, r.Reason = Unverified, "probe interrupted: "+err.Error()
		return r
	}
	defer unlock()
	if v, ok := c.verdict(); ok {
		return v
	}

	d, why := Deadline(accel, opts.Timeout, c.lastBoot(accel))
	var tries []string
	for attempt := 1; attempt <= 2; attempt++ {
		out := bootTest(ctx, opts.QEMU, opts.Kernel, accel, d)
		r.Attempts, r.DeadlineMillis, r.BootMillis = attempt, d.Milliseconds(), out.took.Milliseconds()
		r.Deadline = why
		if ctx.Err() != nil {
			r.Verdict, r.Reason = Unverified, "probe interrupted: "+ctx.Err().Error()
			return r
		}
		switch out.kind {
		case booted:
			r.Verdict, r.Usable, r.Reason = Usable, true, out.reason
			c.storeVerdict(r)
			c.storeLastBoot(accel, out.took)
			return r
		case refused:
			r.Verdict, r.Reason = Unusable, out.reason
			c.storeVerdict(r)
			return r
		}
		try := d.Round(100 * time.Millisecond).String()
		if !strings.HasPrefix(out.reason, "no end") {
			try += " (" + out.reason + ")"
		}
		tries = append(tries, try)
		d, why = min(2*d, 2*MaxDeadline), why+"; retried with twice that"
	}
	if accel == "kvm" {
		if v, ok := hangControl(ctx, opts, time.Duration(r.DeadlineMillis)*time.Millisecond, tries); ok {
			r.Verdict, r.Reason = Unusable, v
			c.storeVerdict(r)
			return r
		}
	}
	r.Verdict = Inconclusive
	r.Reason = fmt.Sprintf("a test guest did not finish booting under -accel %s within %s: the host may be busy (load %s); not a verdict, so it is not cached",
		accel, strings.Join(tries, ", then "), loadString())
	c.storePending(r)
	return r
}

// hangControl tells a KVM that hangs from a busy host: right after two
// test boots under -accel kvm missed their deadlines (the last one d), the
// same kernel boots under software emulation, which is slower than any
// working KVM by an order of magnitude. If that finishes within half of d,
// the host had the time and KVM is what does not work (a paravirtual
// /dev/kvm that cannot run a standard guest hangs so): a definite answer,
// cached like a refusal. A host too busy to boot a working KVM guest in d
// is far too busy to emulate one in d/2, so that stays no answer. (Here, at
// load 2.6 on 2 CPUs: KVM hung past 6.6 s and 13.1 s; tcg booted in 4.4 s.)
func hangControl(ctx context.Context, opts Options, d time.Duration, tries []string) (string, bool) {
	out := bootTest(ctx, opts.QEMU, opts.Kernel, "tcg", d)
	if out.kind != booted || 2*out.took > d {
		return "", false
	}
	return fmt.Sprintf("a test guest hung under -accel kvm (no end within %s) while the same kernel booted under software emulation (tcg) in %d ms just after: this host's /dev/kvm does not run a standard guest",
		strings.Join(tries, ", then "), out.took.Milliseconds()), true
}

// Deadline is the deadline of a test boot under accel and why: base (0
// means the accelerator's default), stretched to four times the last boot
// measured here, then by the load average per CPU when it exceeds 1.
func Deadline(accel string, base, lastBoot time.Duration) (time.Duration, string) {
	if base <= 0 {
		base = BaseKVMDeadline
		if accel != "kvm" {
			base = BaseTCGDeadline
		}
	}
	d := base
	why := fmt.Sprintf("base %s", base)
	if lastBoot > 0 && 4*lastBoot > d {
		d = 4 * lastBoot
		why += fmt.Sprintf(", 4x the last boot here (%s)", lastBoot.Round(100*time.Millisecond))
	}
	if f := loadFactor(); f > 1 {
		d = time.Duration(float64(d) * f)
		why += fmt.Sprintf(", x%.1f for load %s", f, loadString())
	}
	if d > MaxDeadline {
		d, why = MaxDeadline, why+", capped"
	}
	return d, fmt.Sprintf("%s (%s)", d.Round(100*time.Millisecond), why)
}

// loadAvg is the 1-minute load average, or 0 if unknown; tests replace it.
var loadAvg = func() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _, _ := strings.Cut(string(b), " ")
	v, _ := strconv.ParseFloat(f, 64)
	return v
}

func loadFactor() float64 { return loadAvg() / float64(runtimeNumCPU()) }

var runtimeNumCPU = runtime.NumCPU

func loadString() string {
	return fmt.Sprintf("%.1f on %d CPUs", loadAvg(), runtimeNumCPU())
}

type outcome int

const (
	booted  outcome = iota // the kernel ran to its end: a definite yes
	refused                // QEMU said no with an error: a definite no
	hung                   // no end within the deadline, or killed: no answer
)

type bootOutcome struct {
	kind   outcome
	reason string
	took   time.Duration
}

// bootTest boots kernel without a root filesystem: a working guest runs the
// whole kernel init, panics for want of a root, and with panic=-1 reboot=t
// -no-reboot QEMU exits 0 within a second or two. A broken KVM aborts QEMU
// (refused) or hangs.
func bootTest(ctx context.Context, qemu, kernel, accel string, d time.Duration) bootOutcome {
	cpu := "host"
	if accel != "kvm" {
		cpu = "max"
	}
	bctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	// The same clock arguments as a real boot: without them the kernel's
	// PIT calibration freezes about one TCG boot in eight, more often on a
	// loaded host, which would look like a broken accelerator.
	cmdline := "console=ttyS0 panic=-1 reboot=t loglevel=4"
	if khz := HostTSCkHz(); khz > 0 {
		cmdline += fmt.Sprintf(" tsc_early_khz=%d tsc=reliable", khz)
	}
	var console, stderr bytes.Buffer
	cmd := exec.CommandContext(bctx, qemu,
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-accel", accel, "-cpu", cpu, "-M", "microvm,x-option-roms=off,rtc=on",
		"-m", "128", "-smp", "1", "-kernel", kernel,
		"-append", cmdline,
		"-serial", "stdio")
	cmd.Stdout, cmd.Stderr = &console, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	var ee *exec.ExitError
	switch {
	case bctx.Err() != nil:
		return bootOutcome{hung, fmt.Sprintf("no end within %s", d.Round(100*time.Millisecond)), took}
	case errors.As(err, &ee) && !ee.Exited():
		// Killed by a signal from outside (the OOM killer, a test's
		// cleanup): says nothing about KVM.
		return bootOutcome{hung, "qemu was killed: " + ee.String(), took}
	case err != nil:
		msg := lastLine(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return bootOutcome{refused, fmt.Sprintf("qemu -accel %s failed: %s", accel, msg), took}
	case !strings.Contains(console.String(), "Kernel panic"):
		return bootOutcome{refused, fmt.Sprintf("the test guest exited under -accel %s without running its kernel to the end", accel), took}
	}
	return bootOutcome{booted, fmt.Sprintf("a test guest booted under -accel %s in %d ms", accel, took.Milliseconds()), took}
}

// lastLine picks QEMU's own "error:" line if there is one (an abort adds
// an assertion after it), else its last line.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for _, l := range lines {
		if strings.Contains(l, "error") {
			return strings.TrimSpace(l)
		}
	}
	return strings.TrimSpace(lines[len(lines)-1])
}

// HostTSCkHz is the host's TSC frequency in kHz (0 if unknown), which a
// guest kernel is told with tsc_early_khz so that it need not calibrate
// against the emulated PIT.
func HostTSCkHz() int {
	if b, err := os.ReadFile("/sys/devices/system/cpu/cpu0/tsc_freq_khz"); err == nil {
		if v, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && v > 0 {
			return v
		}
	}
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == "cpu MHz" {
			if mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && mhz > 0 {
				return int(mhz * 1000)
			}
		}
	}
	return 0
}
