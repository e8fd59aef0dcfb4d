// Package doctor owns `pyro doctor`: independent checks, run in parallel,
// that say how (and whether) this host can run a guest, which backend pyro
// will pick, which tools are missing and what to install.
package doctor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/internal/backendsel"
	"github.com/pyro-mcp/pyro/internal/catalog"
	"github.com/pyro-mcp/pyro/internal/hostbin"
	"github.com/pyro-mcp/pyro/internal/kvm"
	"github.com/pyro-mcp/pyro/internal/paths"
)

// Backend names as doctor reports them (backendsel's names).
const (
	QEMUKVM     = backendsel.NameQEMUKVM
	QEMUTCG     = backendsel.NameQEMUTCG
	Firecracker = backendsel.NameFirecracker
	HostCompat  = "host-compat"
)

// Report is doctor's whole answer; its JSON shape is documented in
// docs/reference/doctor.md.
type Report struct {
	OK       bool     `json:"ok"` // some backend can boot an isolated guest
	Platform Platform `json:"platform"`
	Selected string   `json:"selected_backend"` // "" when none
	// Requested is the backend asked for ($PYRO_BACKEND, else auto);
	// NoneReason says why nothing was selected.
	Requested    string        `json:"requested_backend"`
	NoneReason   string        `json:"none_reason,omitempty"`
	Backends     []Backend     `json:"backends"`
	KVM          kvm.Result    `json:"kvm"`
	TCG          *kvm.Result   `json:"tcg,omitempty"` // the TCG test boot, when one ran
	Tools        []Tool        `json:"tools"`
	Cache        Cache         `json:"cache"`
	Environments *Environments `json:"environments"`
	BootTest     BootTest      `json:"boot_test"`
}

// Platform describes the host.
type Platform struct {
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	Kernel    string `json:"kernel"`
	CPUs      int    `json:"cpus"`
	MemoryMiB int    `json:"memory_mib"`
}

// Backend is one way pyro can run a guest.
type Backend struct {
	Name     string `json:"name"`
	Works    bool   `json:"works"`
	Isolated bool   `json:"isolated"`
	Reason   string `json:"reason"`
	Fix      string `json:"fix,omitempty"`
}

// Tool is a host program pyro uses.
type Tool struct {
	Name     string `json:"name"`
	Required bool   `json:"required"`
	Purpose  string `json:"purpose"`
	Found    bool   `json:"found"`
	Path     string `json:"path,omitempty"`
	Version  string `json:"version,omitempty"`
	Package  string `json:"package"` // the Debian package that provides it
}

// Cache describes the environment cache directory.
type Cache struct {
	Dir       string `json:"dir"`
	Exists    bool   `json:"exists"`
	FreeBytes uint64 `json:"free_bytes"`
}

// Environments lists the catalog with install states.
type Environments struct {
	Items []catalog.EnvStatus `json:"items"`
	Error string              `json:"error,omitempty"`
}

// BootTest is the result of --boot-test.
type BootTest struct {
	Status string `json:"status"` // not_requested, not_available, passed, failed
	Detail string `json:"detail,omitempty"`
	Millis int64  `json:"duration_ms,omitempty"`
}

// Probes are doctor's window on the host; tests replace them.
type Probes struct {
	LookPath    func(name string) (string, error)
	Version     func(ctx context.Context, path string, args ...string) string
	KVM         func(ctx context.Context, qemu, kernel string) kvm.Result
	TCG         func(ctx context.Context, qemu, kernel string) kvm.Result
	Environment func(ctx context.Context) (*Environments, string) // list + a kernel to test-boot
	Platform    func() Platform
	Free        func(dir string) (exists bool, free uint64)
}

// Options configures Run.
type Options struct {
	// CacheDir defaults to paths.CacheDir().
	CacheDir string
	// BootTest, when RunBootTest is set, boots a real guest end to end with
	// the selected backend. nil reports "not_available".
	BootTest    func(ctx context.Context) error
	RunBootTest bool
	// Probes default to the real host.
	Probes *Probes
}

// Check is one independent part of the report.
type Check interface {
	Name() string
	Run(ctx context.Context, r *Report)
}

type checkFunc struct {
	name string
	fn   func(ctx context.Context, r *Report)
}

func (c checkFunc) Name() string                                 { return c.name }
func (c checkFunc) Run(ctx context.Context, r *Report)           { c.fn(ctx, r) }
func check(name string, fn func(context.Context, *Report)) Check { return checkFunc{name, fn} }

// toolSpec is a tool pyro uses, as doctor reports it.
type toolSpec struct {
	bin      hostbin.Bin
	required bool
	purpose  string
}

// tools pyro uses, in report order.
var toolSpecs = []toolSpec{
	{hostbin.QEMU, true, "runs the microVMs"},
	{hostbin.QEMUImg, true, "creates per-VM copy-on-write disks"},
	{hostbin.Mmdebstrap, true, "builds environments locally when no registry has them"},
	{hostbin.MkfsExt4, true, "makes environment root filesystems"},
	{hostbin.Passt, false, "only PYRO_NET_BACKEND=passt (a comparison); --network uses pyro's own network stack"},
	{hostbin.DockerRegistry, false, "a local OCI registry to share built environments"},
}

// Run runs every check in parallel and derives the backends from them.
func Run(ctx context.Context, opts Options) *Report {
	p := opts.Probes
	if p == nil {
		p = HostProbes()
	}
	cacheDir := opts.CacheDir
	if cacheDir == "" {
		cacheDir = paths.CacheDir()
	}
	r := &Report{Cache: Cache{Dir: cacheDir}, BootTest: BootTest{Status: "not_requested"}}
	var mu sync.Mutex // guards r across checks that touch shared fields
	var kernel string
	var tcg kvm.Result
	var fcPath, fcVersion string

	// Tools and environments come first: the KVM and TCG boot tests need
	// QEMU's path and an installed kernel.
	phase1 := []Check{
		check("platform", func(ctx context.Context, r *Report) { pl := p.Platform(); mu.Lock(); r.Platform = pl; mu.Unlock() }),
		check("tools", func(ctx context.Context, r *Report) {
			tools := make([]Tool, len(toolSpecs))
			var wg sync.WaitGroup
			for i, spec := range toolSpecs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					t := Tool{Name: spec.bin.Name, Required: spec.required, Purpose: spec.purpose, Package: spec.bin.Package}
					if path, err := p.LookPath(spec.bin.Wanted("")); err == nil {
						t.Found, t.Path = true, path
						t.Version = p.Version(ctx, path, versionArgs(t.Name)...)
					}
					tools[i] = t
				}()
			}
			wg.Wait()
			mu.Lock()
			r.Tools = tools
			mu.Unlock()
		}),
		check("environments", func(ctx context.Context, r *Report) {
			envs, k := p.Environment(ctx)
			mu.Lock()
			r.Environments, kernel = envs, k
			mu.Unlock()
		}),
		check("cache", func(ctx context.Context, r *Report) {
			ok, free := p.Free(cacheDir)
			mu.Lock()
			r.Cache.Exists, r.Cache.FreeBytes = ok, free
			mu.Unlock()
		}),
		check("firecracker", func(ctx context.Context, r *Report) {
			if path, err := p.LookPath(hostbin.Firecracker.Wanted("")); err == nil {
				v := p.Version(ctx, path, "--version")
				mu.Lock()
				fcPath, fcVersion = path, v
				mu.Unlock()
			}
		}),
	}
	runAll(ctx, r, phase1)

	qemu := toolPath(r.Tools, "qemu-system-x86_64")
	phase2 := []Check{
		check("kvm", func(ctx context.Context, r *Report) { k := p.KVM(ctx, qemu, kernel); mu.Lock(); r.KVM = k; mu.Unlock() }),
		check("tcg", func(ctx context.Context, r *Report) {
			if qemu == "" || kernel == "" {
				return
			}
			t := p.TCG(ctx, qemu, kernel)
			mu.Lock()
			tcg = t
			r.TCG = &t
			mu.Unlock()
		}),
	}
	runAll(ctx, r, phase2)

	facts := backendsel.Facts{QEMU: qemu, QEMUImg: toolPath(r.Tools, hostbin.QEMUImg.Name), Firecracker: fcPath, KVM: r.KVM, TCG: tcg}
	r.Backends = backends(facts, kernel, fcVersion)
	// The engine's choice, by the engine's own function.
	r.Requested = backendsel.Requested()
	want := r.Requested
	if want == backendsel.HostCompat || backendsel.Check(want) != nil {
		want = backendsel.Auto
	}
	if c, err := backendsel.Choose(want, facts); err != nil {
		r.NoneReason = err.Error()
	} else {
		r.Selected, r.OK = c.Name, true
	}
	if opts.RunBootTest {
		r.BootTest = runBootTest(ctx, r, opts.BootTest)
	}
	return r
}

func runAll(ctx context.Context, r *Report, checks []Check) {
	var wg sync.WaitGroup
	for _, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Run(ctx, r)
		}()
	}
	wg.Wait()
}

// backends lists the ways to run a guest, each with whether it works here
// and what to do if not. Which one pyro picks is backendsel's answer.
func backends(f backendsel.Facts, kernel, fcVersion string) []Backend {
	qemuFix := "apt-get install qemu-system-x86 qemu-utils"
	k, tcg := f.KVM, f.TCG
	var out []Backend
	noQEMU := ""
	switch {
	case f.QEMU == "" && f.QEMUImg == "":
		noQEMU = "qemu-system-x86_64 and qemu-img are not installed"
	case f.QEMU == "":
		noQEMU = "qemu-system-x86_64 is not installed"
	case f.QEMUImg == "":
		noQEMU = "qemu-img is not installed"
	}

	kb := Backend{Name: QEMUKVM, Isolated: true}
	switch {
	case noQEMU != "":
		kb.Reason, kb.Fix = noQEMU, qemuFix
	case k.Usable:
		kb.Works, kb.Reason = true, k.Reason
	case k.Verdict == kvm.Unverified:
		kb.Reason = "KVM not verified: " + k.Reason
		kb.Fix = "pyro env pull debian:12 (gives doctor a kernel to test-boot), or PYRO_KVM=on to trust /dev/kvm"
	case k.Verdict == kvm.Inconclusive:
		kb.Reason = "KVM not verified: " + k.Reason
		kb.Fix = "nothing to do now: pyro uses TCG meanwhile; run pyro doctor again when the host is less busy"
	case k.Verdict == kvm.ForcedOff:
		kb.Reason, kb.Fix = "disabled by PYRO_KVM=off", "unset PYRO_KVM"
	case k.Verdict == kvm.Absent:
		kb.Reason, kb.Fix = k.Reason, "run on a host with hardware virtualisation (bare metal or nested virtualisation enabled) and access to /dev/kvm"
	default:
		kb.Reason = "/dev/kvm cannot run a standard guest here: " + k.Reason
		kb.Fix = "nothing to do: pyro falls back to TCG; for KVM speed use a host with hardware KVM (kvm_intel/kvm_amd)"
	}
	out = append(out, kb)

	const slow = "; software emulation, ~10x slower than KVM"
	tb := Backend{Name: QEMUTCG, Isolated: true}
	switch {
	case noQEMU != "":
		tb.Reason, tb.Fix = noQEMU, qemuFix
	case kernel == "":
		tb.Works = true
		tb.Reason = "QEMU is installed; not test-booted yet (no environment installed)" + slow
		tb.Fix = "pyro env pull debian:12"
	case tcg.Usable:
		tb.Works, tb.Reason = true, tcg.Reason+slow
	case tcg.Verdict == kvm.Unusable:
		tb.Reason, tb.Fix = "test boot failed: "+tcg.Reason, "check the QEMU installation (apt-get install --reinstall qemu-system-x86)"
	default:
		// A test boot that did not finish in time is no evidence against
		// QEMU: software emulation cannot be refused by the host.
		tb.Works = true
		tb.Reason = "QEMU is installed; the test boot gave no answer (" + tcg.Reason + ")" + slow
	}
	out = append(out, tb)

	fb := Backend{Name: Firecracker, Isolated: true}
	fcName := f.Firecracker
	if fcVersion != "" {
		fcName += " (" + fcVersion + ")"
	}
	switch {
	case f.Firecracker == "":
		fb.Reason = "not installed"
		fb.Fix = "install the firecracker binary from github.com/firecracker-microvm/firecracker/releases (or set PYRO_FIRECRACKER_BIN); it also needs a usable KVM"
	case backendsel.FirecrackerKVM(k, false):
		fb.Works = true
		fb.Reason = fmt.Sprintf("found %s and KVM runs a guest (%s); pyro boots new VMs with it by default", fcName, k.Reason)
	default:
		fb.Reason = fmt.Sprintf("found %s but not used: firecracker needs a verified KVM, and KVM is %s here: %s", fcName, k.Verdict, k.Reason)
		fb.Fix = "nothing to do: pyro uses QEMU on this host; on a host with hardware KVM it picks firecracker (or pass --backend firecracker)"
	}
	out = append(out, fb)

	out = append(out, Backend{Name: HostCompat, Works: true, Isolated: false,
		Reason: "runs commands directly on the host without isolation; used only with --allow-host-compat"})
	return out
}

func runBootTest(ctx context.Context, r *Report, fn func(context.Context) error) BootTest {
	if fn == nil {
		return BootTest{Status: "not_available", Detail: "this build of pyro has no end-to-end boot test wired to doctor yet"}
	}
	if !r.OK {
		return BootTest{Status: "failed", Detail: "no backend can boot a guest"}
	}
	start := time.Now()
	err := fn(ctx)
	bt := BootTest{Status: "passed", Millis: time.Since(start).Milliseconds()}
	if err != nil {
		bt.Status, bt.Detail = "failed", err.Error()
		r.OK = false
	}
	return bt
}

func toolPath(tools []Tool, name string) string {
	for _, t := range tools {
		if t.Name == name && t.Found {
			return t.Path
		}
	}
	return ""
}

func versionArgs(name string) []string {
	switch name {
	case "mkfs.ext4":
		return []string{"-V"}
	default:
		return []string{"--version"}
	}
}

// HostProbes looks at the real host.
func HostProbes() *Probes {
	return &Probes{
		LookPath: hostbin.Look,
		Version:  version,
		// Doctor can wait: it re-runs a test boot whose last try was
		// inconclusive, with the deadline scaled to the host's load.
		KVM: func(ctx context.Context, qemu, kernel string) kvm.Result {
			return kvm.Probe(ctx, kvm.Options{QEMU: qemu, Kernel: kernel, Recheck: true})
		},
		TCG: func(ctx context.Context, qemu, kernel string) kvm.Result {
			return kvm.VerifyBoot(ctx, kvm.Options{QEMU: qemu, Kernel: kernel, Accel: "tcg", Recheck: true})
		},
		Environment: hostEnvironments,
		Platform:    hostPlatform,
		Free:        freeSpace,
	}
}

// version is the first meaningful line a tool prints about itself.
func version(ctx context.Context, path string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, path, args...).CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

func hostEnvironments(ctx context.Context) (*Environments, string) {
	s, err := catalog.Open(catalog.Options{Registry: "none"})
	if err != nil {
		return &Environments{Error: err.Error()}, ""
	}
	items, err := s.List(ctx)
	envs := &Environments{Items: items}
	if err != nil {
		envs.Error = err.Error()
	}
	var kernel string
	for _, it := range items {
		if !it.Installed {
			continue
		}
		if inst, err := s.Resolve(ctx, it.Name); err == nil {
			kernel = inst.KernelPath
			break
		}
	}
	return envs, kernel
}

func hostPlatform() Platform {
	p := Platform{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		p.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) == nil {
		p.MemoryMiB = int(uint64(si.Totalram) * uint64(si.Unit) >> 20)
	}
	return p
}

// freeSpace reports free bytes where dir is, or would be created.
func freeSpace(dir string) (bool, uint64) {
	_, err := os.Stat(dir)
	exists := err == nil
	for d := dir; ; d = filepath.Dir(d) {
		var st unix.Statfs_t
		if err := unix.Statfs(d, &st); err == nil {
			return exists, st.Bavail * uint64(st.Bsize)
		} else if !errors.Is(err, unix.ENOENT) || d == filepath.Dir(d) {
			return exists, 0
		}
	}
}
