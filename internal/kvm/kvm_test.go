package kvm

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/internal/guesttest"
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

// fakeQEMU writes a qemu-system-x86_64 stand-in that behaves as script
// says on its Nth run (N counted in a file next to it): "boot" prints a
// kernel panic and exits 0, "refuse" exits 1 with an error, "hang" sleeps.
func fakeQEMU(t *testing.T, behaviours ...string) (bin string, runs func() int) {
	t.Helper()
	dir := t.TempDir()
	count := filepath.Join(dir, "count")
	var cases strings.Builder
	for i, b := range behaviours {
		cmd := map[string]string{
			"boot":   "echo 'Kernel panic - not syncing: VFS'; exit 0",
			"refuse": "echo 'qemu-system-x86_64: error: failed to set MSR 0x10a' >&2; exit 1",
			"hang":   "exec sleep 60",
		}[b]
		fmt.Fprintf(&cases, "  %d) %s ;;\n", i+1, cmd)
	}
	script := "#!/bin/sh\nn=$(( $(cat " + count + " 2>/dev/null || echo 0) + 1 ))\necho $n > " + count + "\ncase $n in\n" +
		cases.String() + "  *) exec sleep 60 ;;\nesac\n"
	bin = filepath.Join(dir, "qemu")
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	kernel := filepath.Join(dir, "vmlinuz")
	os.WriteFile(kernel, []byte("k"), 0o644)
	return bin, func() int {
		b, _ := os.ReadFile(count)
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n
	}
}

// idle makes the load average 0 for t, and puts the real one back after.
func idle(t *testing.T) {
	load, cpus := loadAvg, runtimeNumCPU
	loadAvg = func() float64 { return 0 }
	t.Cleanup(func() { loadAvg, runtimeNumCPU = load, cpus })
}

// A hang is retried with a longer deadline, never cached as a verdict,
// and a definite answer (boot or refusal) is cached.
func TestVerifyBootVerdicts(t *testing.T) {
	idle(t)
	tests := []struct {
		name       string
		behaviours []string
		want       string
		runs       int
		cached     bool   // the second call is served from the cache
		accel      string // "tcg" unless set
	}{
		{"boots", []string{"boot"}, Usable, 1, true, ""},
		{"refuses", []string{"refuse"}, Unusable, 1, true, ""},
		{"hang then boot on the retry", []string{"hang", "boot"}, Usable, 2, true, ""},
		{"hangs twice", []string{"hang", "hang"}, Inconclusive, 2, false, ""},
		// Under kvm, two hangs are followed by a software-emulated boot of
		// the same kernel: if that one is quick, KVM (not the host) hangs.
		{"kvm hangs, tcg boots at once", []string{"hang", "hang", "boot"}, Unusable, 3, true, "kvm"},
		{"kvm hangs, tcg hangs too", []string{"hang", "hang", "hang"}, Inconclusive, 3, false, "kvm"},
		{"kvm hangs, tcg refuses", []string{"hang", "hang", "refuse"}, Inconclusive, 3, false, "kvm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			qemu, runs := fakeQEMU(t, tt.behaviours...)
			cacheFile := filepath.Join(t.TempDir(), "kvm-probe.json")
			accel := tt.accel
			if accel == "" {
				accel = "tcg"
			}
			opts := Options{QEMU: qemu, Kernel: filepath.Join(filepath.Dir(qemu), "vmlinuz"), Accel: accel,
				Timeout: 300 * time.Millisecond, CacheFile: cacheFile, Recheck: true}
			r := VerifyBoot(t.Context(), opts)
			if r.Verdict != tt.want || runs() != tt.runs || r.Cached {
				t.Fatalf("got %s after %d runs (cached=%v): %s; want %s after %d", r.Verdict, runs(), r.Cached, r.Reason, tt.want, tt.runs)
			}
			if r.DeadlineMillis == 0 || r.Deadline == "" {
				t.Errorf("the verdict does not say which deadline it used: %+v", r)
			}
			r2 := VerifyBoot(t.Context(), opts)
			if r2.Cached != tt.cached {
				t.Fatalf("second call cached=%v, want %v: %+v", r2.Cached, tt.cached, r2)
			}
			if tt.want == Inconclusive {
				if r2.Verdict == Unusable {
					t.Fatal("a hang became a cached unusable verdict")
				}
				// Without Recheck (the engine), the note spares a second wait.
				opts.Recheck = false
				before := runs()
				if r3 := VerifyBoot(t.Context(), opts); r3.Verdict != Inconclusive || !r3.Cached || runs() != before {
					t.Fatalf("engine probe after an inconclusive one: %+v, %d new runs", r3, runs()-before)
				}
			}
		})
	}
}

// A real guest boot recorded by the engine overrides an inconclusive note
// and becomes the verdict.
func TestRecordBootRefreshesVerdict(t *testing.T) {
	idle(t)
	qemu, _ := fakeQEMU(t, "hang", "hang")
	kernel := filepath.Join(filepath.Dir(qemu), "vmlinuz")
	t.Setenv("PYRO_CACHE_DIR", t.TempDir())
	opts := Options{QEMU: qemu, Kernel: kernel, Accel: "tcg", Timeout: 200 * time.Millisecond}
	if r := VerifyBoot(t.Context(), opts); r.Verdict != Inconclusive {
		t.Fatalf("first probe %+v", r)
	}
	RecordBoot("tcg", qemu, kernel, 2500*time.Millisecond)
	r := VerifyBoot(t.Context(), opts)
	if r.Verdict != Usable || !r.Cached {
		t.Fatalf("after a recorded boot: %+v", r)
	}
	c := openCache(opts)
	if got := c.lastBoot("tcg"); got != 2500*time.Millisecond {
		t.Errorf("last boot %s", got)
	}
	d, why := Deadline("tcg", 0, c.lastBoot("tcg"))
	if d != BaseTCGDeadline || !strings.Contains(why, "base 20s") {
		t.Errorf("deadline %s (%s)", d, why)
	}
}

func TestDeadlineScales(t *testing.T) {
	tests := []struct {
		name     string
		accel    string
		last     time.Duration
		load     float64
		want     time.Duration
		contains string
	}{
		{"kvm idle", "kvm", 0, 0, BaseKVMDeadline, "base 5s"},
		{"tcg idle", "tcg", 0, 0.5, BaseTCGDeadline, "base 20s"},
		{"slow last boot", "tcg", 10 * time.Second, 0, 40 * time.Second, "4x the last boot"},
		{"loaded host", "tcg", 0, 8, 80 * time.Second, "x4.0 for load 8.0 on 2 CPUs"},
		{"capped", "tcg", time.Minute, 100, MaxDeadline, "capped"},
	}
	idle(t)
	runtimeNumCPU = func() int { return 2 }
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loadAvg = func() float64 { return tt.load }
			d, why := Deadline(tt.accel, 0, tt.last)
			if d != tt.want || !strings.Contains(why, tt.contains) {
				t.Errorf("Deadline = %s (%s), want %s containing %q", d, why, tt.want, tt.contains)
			}
		})
	}
}

// TestVerifyBootTCGAndCache boots a real kernel under TCG (which must work
// wherever QEMU is installed), then checks the second call is served from
// the cache. It runs wherever a guest test runs (see guesttest).
func TestVerifyBootTCGAndCache(t *testing.T) {
	p := guesttest.Need(t)
	if k := os.Getenv("PYRO_TEST_KERNEL"); k != "" {
		p.Kernel = k
	}
	opts := Options{QEMU: p.QEMU, Kernel: p.Kernel, Accel: "tcg", CacheFile: filepath.Join(t.TempDir(), "c.json")}
	r := VerifyBoot(t.Context(), opts)
	if !r.Usable || r.Cached {
		t.Fatalf("first boot: %+v", r)
	}
	start := time.Now()
	r2 := VerifyBoot(t.Context(), opts)
	if !r2.Usable || !r2.Cached || time.Since(start) > time.Second {
		t.Fatalf("second call not served from cache: %+v", r2)
	}
	// The real answer for this host's /dev/kvm, for the log.
	k := Probe(t.Context(), Options{QEMU: p.QEMU, Kernel: p.Kernel, CacheFile: "-"})
	t.Logf("kvm here: %s (%s) module=%s", k.Verdict, k.Reason, k.Module)
}
