package firecracker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/internal/kvm"
)

func TestNftRuleset(t *testing.T) {
	p := planAt("0123456789ab", 5)
	script := p.NftScript()
	for _, want := range []string{
		// Declared, never deleted: the guests set keeps the running VMs.
		"set guests { type ifname . ipv4_addr; }",
		"flush chain inet pyro_fc prerouting",
		`iifname "pfc*" iifname . ip saddr != @guests counter drop comment "a guest sends only from its own address"`,
		`iifname "pfc*" meta nfproto ipv6 counter drop`,
		`iifname "pfc*" counter drop comment "a guest never reaches host services"`,
		`iifname "pfc*" oifname "pfc*" drop`,
		`add element inet pyro_fc guests { "pfc0123456789ab" . 172.30.0.22 }`,
	} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
	if strings.Contains(script, "delete table") {
		t.Errorf("script deletes the table, and with it every running VM's element")
	}
	if got := p.TeardownCommands()[0]; strings.Join(got, " ") != `nft delete element inet pyro_fc guests { "pfc0123456789ab" . 172.30.0.22 }` {
		t.Errorf("teardown %q", got)
	}
}

// Two ids whose hashes pick the same subnet get different ones; a lease
// whose TAP is gone is taken again; releasing frees it.
func TestNetLeases(t *testing.T) {
	live := map[string]bool{}
	l := netLeases{dir: t.TempDir(), tapExists: func(tap string) bool { return live[tap] }}
	a := "0123456789ab"
	b := ""
	for i := 0; b == ""; i++ {
		if id := fmt.Sprintf("%012x", i); id != a && preferredSubnet(id) == preferredSubnet(a) {
			b = id
		}
	}
	pa, unlock, err := l.allocate(t.Context(), a)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	live[pa.Tap] = true
	pb, unlock, err := l.allocate(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	if pa.GuestIP == pb.GuestIP {
		t.Fatalf("%s and %s share %s", a, b, pa.GuestIP)
	}
	if pb.GuestIP != planAt(b, (preferredSubnet(b)+1)%subnets).GuestIP {
		t.Errorf("collision moved to %s, want the next subnet", pb.GuestIP)
	}
	// a's VM died without cleaning up: its TAP is gone, its subnet is free.
	live[pa.Tap] = false
	c := ""
	for i := 1 << 20; c == ""; i++ {
		if id := fmt.Sprintf("%012x", i); preferredSubnet(id) == preferredSubnet(a) {
			c = id
		}
	}
	pc, unlock, err := l.allocate(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	if pc.GuestIP != pa.GuestIP {
		t.Errorf("stale lease not reused: got %s, want %s", pc.GuestIP, pa.GuestIP)
	}
	l.release(pb)
	if _, err := os.Stat(pb.Lease); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lease %s still there after release", pb.Lease)
	}
	// The lock is held until the caller's TAP exists.
	_, unlock, err = l.allocate(t.Context(), "feedfacecafe")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, _, err := l.allocate(ctx, "deadbeef0000"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second allocation while locked: %v", err)
	}
	unlock()
}

// The jail directory goes on every early return of Start.
func TestStartRemovesJailOnEarlyReturn(t *testing.T) {
	exe, _ := os.Executable()
	dir := shortDir(t)
	base := filepath.Join(dir, "jail")
	b, err := New(Options{Bin: exe, KVM: &kvm.Result{Verdict: kvm.Usable, Usable: true}, CacheDir: dir,
		Jailer: &Jailer{Bin: "/bin/false", UID: os.Getuid(), GID: os.Getgid(), ChrootBase: base}})
	if err != nil {
		t.Fatal(err)
	}
	spec := vmmSpec(dir)
	spec.Kernel = exe
	os.WriteFile(spec.Initrd, nil, 0o600)
	// The disks are missing: staging them fails after the jail was made.
	if _, err := b.Start(t.Context(), spec); err == nil {
		t.Fatal("Start succeeded without its disks")
	}
	jail := filepath.Dir(b.jailer.ChrootDir(exe, "pyro-"+spec.ID))
	if _, err := os.Stat(jail); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("jail %s left behind: %v", jail, err)
	}
}

// Against the kernel's netfilter, in a private network namespace: a packet
// from a TAP-like interface with the guest's address passes prerouting, one
// with another source is dropped there. Needs root, nft, ip and bash.
func TestNftDropsSpoofedSources(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	for _, tool := range []string{"nft", "ip", "unshare", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	p := planAt("0123456789ab", 5)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "rules.nft"), []byte(p.NftScript()), 0o600)
	ns := fmt.Sprintf("pyrotest%d", os.Getpid())
	hostIP, _, _ := strings.Cut(p.HostIP, "/")
	script := fmt.Sprintf(`set -e
nft -f %[1]s/rules.nft
ip netns add %[2]s
trap 'ip netns del %[2]s' EXIT
ip link add %[3]s type veth peer name geth netns %[2]s
ip addr add %[4]s dev %[3]s
ip link set %[3]s up
ip netns exec %[2]s ip addr add %[5]s dev geth
ip netns exec %[2]s ip link set geth up
sleep 0.5
ip netns exec %[2]s bash -c 'echo own > /dev/udp/%[6]s/9' || true
echo "own: $(nft list chain inet pyro_fc prerouting | grep -o 'packets [0-9]* bytes [0-9]* drop comment "a guest sends')"
ip netns exec %[2]s ip addr add 172.30.99.99/32 dev geth
ip netns exec %[2]s ip route replace %[6]s dev geth src 172.30.99.99
ip netns exec %[2]s bash -c 'echo spoof > /dev/udp/%[6]s/9' || true
echo "spoofed: $(nft list chain inet pyro_fc prerouting | grep -o 'packets [0-9]* bytes [0-9]* drop comment "a guest sends')"
`, dir, ns, p.Tap, p.HostIP, p.GuestIP, hostIP)
	out, err := exec.Command("unshare", "-n", "bash", "-c", script).CombinedOutput()
	if err != nil {
		t.Skipf("netfilter not usable here: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "own: packets 0 ") || !strings.Contains(string(out), "spoofed: packets 1 ") {
		t.Fatalf("the spoof rule did not count as expected:\n%s", out)
	}
}
