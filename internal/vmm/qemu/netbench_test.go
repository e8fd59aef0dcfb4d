package qemu

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/internal/vmm"
)

// TestNetworkBench measures, in the test's namespaces, a guest's download
// throughput from an allow-listed listener and its TCP connect latency
// through pyro's stack and through passt, and what the stack costs the
// process that runs it. PYRO_NET_BENCH=1 runs it; it only reports.
func TestNetworkBench(t *testing.T) {
	if os.Getenv("PYRO_NET_BENCH") == "" {
		t.Skip("set PYRO_NET_BENCH=1 to measure the guest network")
	}
	inTestNetns(t, "TestNetworkBench", func(t *testing.T, lan string) {
		kernel, modules := netTestEnv(t)
		lanWorld(t, lan)
		dir := shortDir(t)
		probe := filepath.Join(dir, "netprobe")
		build := exec.Command("go", "build", "-o", probe, "./testdata/netprobe")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building netprobe: %v\n%s", err, out)
		}
		bin, err := os.ReadFile(probe)
		if err != nil {
			t.Fatal(err)
		}
		initrd := buildNetInitrd(t, dir, modules, map[string][]byte{"bin/netprobe": bin})
		const size = 64 << 20
		big := fmt.Sprintf("http://%s/big?bytes=%d", tnPublic, size)
		load, _ := os.ReadFile("/proc/loadavg")
		t.Logf("load average before: %s", strings.TrimSpace(string(load)))

		for _, mode := range []string{NetPasst, NetStack} {
			b, err := New(Options{Accel: "tcg", Net: mode})
			if err != nil {
				t.Fatal(err)
			}
			spec := vmm.MachineSpec{ID: "nb", Dir: shortDir(t), Kernel: kernel, Initrd: initrd, MemMiB: 512, Network: true}
			if mode == NetStack {
				spec.NetPolicy = mustPolicy(t, "allowlist", tnPublic+":80")
			} else if b.passt == "" {
				t.Log("passt: not installed, skipped")
				continue
			}
			before := settledMem(t)
			g := bootNetGuest(t, b, spec)
			idle := settledMem(t)
			var mbps []string
			for range 3 {
				out, _ := g.sh(t, "netprobe get "+big)
				mbps = append(mbps, field(out, "mbps"))
			}
			lat, _ := g.sh(t, "netprobe connect "+tnPublic+":80 50")
			line := fmt.Sprintf("%s: download %d MiB: %s MB/s; connect p50 %s us, p90 %s us", mode, size>>20,
				strings.Join(mbps, " / "), field(lat, "p50_us"), field(lat, "p90_us"))
			if mode == NetStack {
				after := settledMem(t)
				line += fmt.Sprintf("; this process (runs the stack and the LAN's servers) before boot %s, guest idle %s, after the transfers %s",
					before, idle, after)
				recs, _ := g.m.(vmm.Networked).Network().Log()
				line += fmt.Sprintf("; %d log records", len(recs))
			} else {
				line += fmt.Sprintf("; passt RSS %d KiB", rssKiB(t, g.m.(*machine).passt.Pid()))
			}
			t.Log(line)
			g.m.Kill()
			time.Sleep(200 * time.Millisecond)
		}
		load, _ = os.ReadFile("/proc/loadavg")
		t.Logf("load average after: %s", strings.TrimSpace(string(load)))
	})
}

// mem is this process's memory after a GC that returned what it could.
type mem struct{ rssKiB, heapKiB int }

func (m mem) String() string {
	return fmt.Sprintf("RSS %d KiB (Go heap+stacks %d KiB)", m.rssKiB, m.heapKiB)
}

func settledMem(t *testing.T) mem {
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return mem{rssKiB: rssKiB(t, os.Getpid()), heapKiB: int((ms.HeapInuse + ms.StackInuse) >> 10)}
}

// rssKiB reads VmRSS of pid.
func rssKiB(t *testing.T, pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

// field returns the value of key=value in a netprobe line.
func field(out, key string) string {
	for _, f := range strings.Fields(out) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return "?(" + out + ")"
}
