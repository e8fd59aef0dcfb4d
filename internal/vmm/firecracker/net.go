package firecracker

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// Guest networking under Firecracker is a TAP device per VM, routed and
// masqueraded by the host. Each VM gets a /30 out of NetPool, host side .1,
// guest .2: the one its id hashes to when free, else the next free one,
// allocated under a lock (see netLeases), so two VMs never share a subnet.
//
// A guest may send only from its own address: the prerouting chain drops
// anything from a pyro TAP whose (interface, source address) pair is not in
// the guests set, which holds one element per running VM, and everything
// IPv6 (guests get no IPv6 address).
//
// The guest must never reach services on the host itself. Packets from a
// TAP to any host address (the TAP's own, eth0's, 127.0.0.1) are local
// delivery and meet the INPUT hook, where the pyro_fc table drops
// everything from pyro TAPs that is not a reply to a host-initiated flow.
// 127.0.0.0/8 from a TAP is also a martian while route_localnet is 0, which
// pyro sets explicitly per TAP. DNS goes to the host's upstream resolver
// (from /etc/resolv.conf, never a loopback one), routed like any traffic.
const (
	NetPool     = "172.30.0.0/16"
	TapPrefix   = "pfc"
	NftTable    = "pyro_fc"
	fallbackDNS = "1.1.1.1"
)

// NetPlan is one VM's network: names, addresses and the host commands that
// build it.
type NetPlan struct {
	Tap      string // host TAP device, e.g. pfc1a2b3c4d
	HostIP   string // 172.30.x.y/30, on the TAP
	GuestIP  string // CIDR given to the guest
	Gateway  string
	DNS      string
	GuestMAC string
	Lease    string // the lease file holding the subnet; "" for a plan only
}

// subnets is how many /30s NetPool holds.
const subnets = 1 << 14

// PlanNetwork derives a VM's network from its id alone, at the subnet the
// id hashes to (what a dry run shows; Start allocates, see netLeases).
func PlanNetwork(id string) *NetPlan { return planAt(id, preferredSubnet(id)) }

func preferredSubnet(id string) uint32 {
	sum := sha256.Sum256([]byte(id))
	return uint32(binary.BigEndian.Uint16(sum[:2])) % subnets
}

// planAt is id's network on subnet n (0 to subnets-1) of NetPool.
func planAt(id string, n uint32) *NetPlan {
	sum := sha256.Sum256([]byte(id))
	base := uint32(172)<<24 | uint32(30)<<16 | n<<2
	ip := func(v uint32) string { return net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)).String() }
	tap := TapPrefix + id
	if len(tap) > 15 { // IFNAMSIZ-1
		tap = tap[:15]
	}
	return &NetPlan{
		Tap: tap, HostIP: ip(base+1) + "/30", GuestIP: ip(base+2) + "/30", Gateway: ip(base + 1),
		DNS:      hostDNS("/etc/resolv.conf"),
		GuestMAC: fmt.Sprintf("06:00:%02x:%02x:%02x:%02x", sum[2], sum[3], sum[4], sum[5]),
	}
}

// guestAddr is the guest's address without its prefix length.
func (p *NetPlan) guestAddr() string {
	a, _, _ := strings.Cut(p.GuestIP, "/")
	return a
}

// GuestArgs are the agent's network arguments.
func (p *NetPlan) GuestArgs() string {
	return "pyro_net=1 pyro_ip=" + p.GuestIP + " pyro_gw=" + p.Gateway + " pyro_dns=" + p.DNS
}

// hostDNS is the first nameserver in resolv.conf that the guest can reach
// by routing, i.e. not on the host's loopback.
func hostDNS(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fallbackDNS
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "nameserver" {
			if ip := net.ParseIP(f[1]); ip != nil && ip.To4() != nil && !ip.IsLoopback() && !ip.IsUnspecified() {
				return ip.String()
			}
		}
	}
	return fallbackDNS
}

// SetupCommands are the host commands that create the TAP and its rules,
// in order. owner (uid) may be -1; with the jailer it is the jailed uid.
func (p *NetPlan) SetupCommands(owner int) [][]string {
	tuntap := []string{"ip", "tuntap", "add", "dev", p.Tap, "mode", "tap"}
	if owner >= 0 {
		tuntap = append(tuntap, "user", strconv.Itoa(owner))
	}
	return [][]string{
		tuntap,
		{"ip", "addr", "add", p.HostIP, "dev", p.Tap},
		{"sysctl", "-q", "-w", "net.ipv4.conf." + p.Tap + ".route_localnet=0"},
		{"ip", "link", "set", p.Tap, "up"},
		{"sysctl", "-q", "-w", "net.ipv4.ip_forward=1"},
		{"nft", "-f", "-"}, // stdin: p.NftScript()
	}
}

// TeardownCommands remove the VM's element from the guests set and the TAP
// (its addresses and routes go with it); the shared table stays.
func (p *NetPlan) TeardownCommands() [][]string {
	return [][]string{
		{"nft", "delete", "element", "inet", NftTable, "guests", "{ " + p.element() + " }"},
		{"ip", "link", "del", p.Tap},
	}
}

func (p *NetPlan) element() string { return strconv.Quote(p.Tap) + " . " + p.guestAddr() }

// NftScript is what Setup feeds to nft in one transaction: the shared
// ruleset, then this VM's (TAP, address) pair in the guests set.
func (p *NetPlan) NftScript() string {
	return NftRuleset() + "add element inet " + NftTable + " guests { " + p.element() + " }\n"
}

// NftRuleset brings the pyro_fc table to this version's rules without
// touching its guests set, which holds the running VMs' elements: the
// table, set and chains are declared (a no-op where they exist), the
// chains flushed and filled again, all in one nft transaction.
func NftRuleset() string {
	t := "inet " + NftTable
	return `table ` + t + ` {
	set guests { type ifname . ipv4_addr; }
	chain prerouting { type filter hook prerouting priority -300; policy accept; }
	chain input { type filter hook input priority -10; policy accept; }
	chain forward { type filter hook forward priority -10; policy accept; }
	chain postrouting { type nat hook postrouting priority srcnat; policy accept; }
}
flush chain ` + t + ` prerouting
flush chain ` + t + ` input
flush chain ` + t + ` forward
flush chain ` + t + ` postrouting
table ` + t + ` {
	chain prerouting {
		iifname "` + TapPrefix + `*" meta nfproto ipv6 counter drop comment "guests have no IPv6"
		iifname "` + TapPrefix + `*" iifname . ip saddr != @guests counter drop comment "a guest sends only from its own address"
	}
	chain input {
		iifname "` + TapPrefix + `*" ct state established,related accept
		iifname "` + TapPrefix + `*" counter drop comment "a guest never reaches host services"
	}
	chain forward {
		iifname "` + TapPrefix + `*" oifname "` + TapPrefix + `*" drop comment "guests do not see each other"
		iifname "` + TapPrefix + `*" accept
		oifname "` + TapPrefix + `*" ct state established,related accept
		oifname "` + TapPrefix + `*" drop
	}
	chain postrouting {
		ip saddr ` + NetPool + ` oifname != "` + TapPrefix + `*" masquerade
	}
}
`
}

// canAdminNet reports whether this process may create TAP devices: root
// or CAP_NET_ADMIN (bit 12) in the effective set.
func canAdminNet() bool {
	if os.Geteuid() == 0 {
		return true
	}
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<12) != 0
		}
	}
	return false
}

// errNoNetAdmin is what a VM with --network gets when pyro cannot make a TAP.
func errNoNetAdmin() error {
	return errdefs.New(errdefs.ErrFailedPrecondition,
		"run pyro as root or with CAP_NET_ADMIN (setcap cap_net_admin+ep), run without --network, or use --backend qemu (passt networking needs no privileges)",
		"guest networking under firecracker needs a TAP device, which only root or CAP_NET_ADMIN may create")
}

// runner executes host commands; tests record them instead.
type runner func(ctx context.Context, stdin string, argv []string) error

func execRunner(ctx context.Context, stdin string, argv []string) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// Setup builds the network with run; on error it undoes what it did.
func (p *NetPlan) Setup(ctx context.Context, run runner, owner int) error {
	for _, argv := range p.SetupCommands(owner) {
		stdin := ""
		if argv[0] == "nft" {
			stdin = p.NftScript()
		}
		if err := run(ctx, stdin, argv); err != nil {
			p.Teardown(context.WithoutCancel(ctx), run)
			hint := "check that iproute2 and nftables are installed (apt-get install iproute2 nftables)"
			return errdefs.Wrap(errdefs.ErrUnavailable, err, hint, "setting up the guest network")
		}
	}
	return nil
}

// Teardown removes the TAP, ignoring errors (it may be gone already).
func (p *NetPlan) Teardown(ctx context.Context, run runner) {
	for _, argv := range p.TeardownCommands() {
		_ = run(ctx, "", argv)
	}
}
