// Package kvm owns the answer to "can QEMU use KVM on this host?". A
// /dev/kvm that opens and answers KVM_GET_API_VERSION is not enough: some
// hosts expose a KVM device (kvm_pvm, nested setups) on which QEMU aborts
// ("failed to set MSR 0x10a") or hangs with a standard guest kernel. So the
// probe boots a real kernel under -accel kvm with a short deadline and only
// trusts KVM if that boot runs to its end. Verdicts are cached per boot,
// QEMU binary and kernel in the environment cache (see DefaultCacheFile).
package kvm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/internal/paths"
)

// Verdicts.
const (
	Usable     = "usable"     // a guest kernel booted under KVM
	Unusable   = "unusable"   // the device is there but a guest did not boot
	Unverified = "unverified" // the device looks fine but no kernel was available to try
	Absent     = "absent"     // no usable /dev/kvm
	ForcedOn   = "forced_on"  // PYRO_KVM=on
	ForcedOff  = "forced_off" // PYRO_KVM=off
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
}

// Options tunes Probe. The zero value probes /dev/kvm without a boot test.
type Options struct {
	// QEMU is qemu-system-x86_64; empty skips the boot test.
	QEMU string
	// Kernel is a bzImage/vmlinux to boot; empty skips the boot test and
	// the verdict is at best Unverified.
	Kernel string
	// Timeout bounds the boot test; 0 means 5 s. A hang past it is Unusable.
	Timeout time.Duration
	// CacheFile stores verdicts; empty means DefaultCacheFile(), "-"
	// disables the cache.
	CacheFile string
	// Device defaults to /dev/kvm.
	Device string
	// Force overrides $PYRO_KVM ("on", "off"); empty reads the environment.
	Force string
	// Accel is the accelerator the boot test uses; tests set "tcg" to
	// exercise the boot path on hosts without KVM. Empty means "kvm".
	Accel string
}

// kvmGetAPIVersion is _IO(KVMIO=0xAE, 0x00).
const kvmGetAPIVersion = 0xAE00

// Probe answers whether KVM can run a guest here.
func Probe(ctx context.Context, opts Options) Result {
	if opts.Device == "" {
		opts.Device = "/dev/kvm"
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
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
	if opts.QEMU == "" || opts.Kernel == "" {
		r.Verdict = Unverified
		r.Reason = "no guest kernel to test-boot yet (install an environment with 'pyro env pull debian:12'); KVM is not trusted until a guest boots under it"
		return r
	}
	v := VerifyBoot(ctx, opts)
	r.Kernel, r.Verdict, r.Usable, r.Reason, r.BootMillis, r.Cached = v.Kernel, v.Verdict, v.Usable, v.Reason, v.BootMillis, v.Cached
	return r
}

// VerifyBoot boots opts.Kernel under opts.Accel ("kvm" by default) with a
// deadline, without looking at /dev/kvm, and caches the verdict. Doctor
// uses it with Accel "tcg" to prove software emulation works too.
func VerifyBoot(ctx context.Context, opts Options) Result {
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	r := Result{Kernel: opts.Kernel}
	if opts.QEMU == "" || opts.Kernel == "" {
		r.Verdict, r.Reason = Unverified, "no QEMU or no guest kernel to test-boot"
		return r
	}
	key := cacheKey(opts)
	cacheFile := opts.CacheFile
	if cacheFile == "" {
		cacheFile = DefaultCacheFile()
	}
	if cacheFile != "-" && key != "" {
		if c, ok := readCache(cacheFile, key); ok {
			r.Verdict, r.Usable, r.Reason, r.BootMillis, r.Cached = c.Verdict, c.Usable, c.Reason, c.BootMillis, true
			return r
		}
	}
	ok, reason, took := bootTest(ctx, opts)
	if ctx.Err() != nil {
		r.Verdict, r.Reason = Unverified, "probe interrupted: "+ctx.Err().Error()
		return r
	}
	r.BootMillis = took.Milliseconds()
	r.Reason = reason
	if ok {
		r.Verdict, r.Usable = Usable, true
	} else {
		r.Verdict = Unusable
	}
	if cacheFile != "-" && key != "" {
		writeCache(cacheFile, key, r)
	}
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

// bootTest boots opts.Kernel without a root filesystem: a working guest
// runs the whole kernel init, panics for want of a root, and with panic=-1
// reboot=t -no-reboot QEMU exits 0 within a second or two. A broken KVM
// aborts QEMU or hangs.
func bootTest(ctx context.Context, opts Options) (ok bool, reason string, took time.Duration) {
	accel := opts.Accel
	if accel == "" {
		accel = "kvm"
	}
	cpu := "host"
	if accel != "kvm" {
		cpu = "max"
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	var console, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, opts.QEMU,
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-accel", accel, "-cpu", cpu, "-M", "microvm,x-option-roms=off,rtc=on",
		"-m", "128", "-smp", "1", "-kernel", opts.Kernel,
		"-append", "console=ttyS0 panic=-1 reboot=t loglevel=4",
		"-serial", "stdio")
	cmd.Stdout, cmd.Stderr = &console, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	start := time.Now()
	err := cmd.Run()
	took = time.Since(start)
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return false, fmt.Sprintf("a test guest did not finish booting under -accel %s within %s (hang)", accel, opts.Timeout), took
	case err != nil:
		msg := lastLine(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return false, fmt.Sprintf("qemu -accel %s failed: %s", accel, msg), took
	case !strings.Contains(console.String(), "Kernel panic"):
		return false, fmt.Sprintf("the test guest exited under -accel %s without running its kernel to the end", accel), took
	}
	return true, fmt.Sprintf("a test guest booted under -accel %s in %d ms", accel, took.Milliseconds()), took
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

// cacheKey ties a verdict to this boot of the host, this QEMU binary and
// this kernel; a change of any of them re-runs the test.
func cacheKey(opts Options) string {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s|%s|%s|%s", strings.TrimSpace(string(boot)), opts.Accel, fileID(opts.QEMU), fileID(opts.Kernel))
	return hex.EncodeToString(h.Sum(nil))[:32]
}

func fileID(p string) string {
	if rp, err := exec.LookPath(p); err == nil {
		p = rp
	}
	st, err := os.Stat(p)
	if err != nil {
		return p
	}
	return fmt.Sprintf("%s:%d:%d", p, st.Size(), st.ModTime().UnixNano())
}

// DefaultCacheFile is <cache dir>/kvm-probe.json. It lives with the
// environments rather than in the runtime directory so that every pyro
// sharing a cache (tests included) probes once per host boot, and so that
// the runtime directory holds nothing but live VMs. Entries are keyed by the
// boot id, so a reboot invalidates them.
func DefaultCacheFile() string { return filepath.Join(paths.CacheDir(), "kvm-probe.json") }

type cacheEntry struct {
	Verdict    string `json:"verdict"`
	Usable     bool   `json:"usable"`
	Reason     string `json:"reason"`
	BootMillis int64  `json:"boot_ms"`
}

func readCache(file, key string) (cacheEntry, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return cacheEntry{}, false
	}
	var m map[string]cacheEntry
	if json.Unmarshal(b, &m) != nil {
		return cacheEntry{}, false
	}
	c, ok := m[key]
	return c, ok
}

func writeCache(file, key string, r Result) {
	m := map[string]cacheEntry{}
	if b, err := os.ReadFile(file); err == nil {
		_ = json.Unmarshal(b, &m)
	}
	if len(m) > 32 {
		// Old boots' entries are dead weight; start over.
		m = map[string]cacheEntry{}
	}
	m[key] = cacheEntry{Verdict: r.Verdict, Usable: r.Usable, Reason: r.Reason, BootMillis: r.BootMillis}
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	if err := paths.EnsurePrivate(filepath.Dir(file)); err != nil {
		return
	}
	// A verdict is only a cache: losing a write race costs one more probe.
	tmp := fmt.Sprintf("%s.%d.tmp", file, os.Getpid())
	if os.WriteFile(tmp, b, 0o600) == nil {
		_ = os.Rename(tmp, file)
	}
}
