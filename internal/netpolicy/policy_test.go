package netpolicy

import (
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

var testHost = Host{
	Addrs: []netip.Addr{
		netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.0.2.2"),
		netip.MustParseAddr("::1"), netip.MustParseAddr("fd00::2"), netip.MustParseAddr("2001:db8:5::2"),
	},
	Subnets: []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("192.0.2.0/24"),
		netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("fd00::/64"), netip.MustParsePrefix("2001:db8:5::/64"),
	},
}

func mustPolicy(t *testing.T, mode string, allow ...string) Policy {
	t.Helper()
	p, err := New(mode, allow, false)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDecide(t *testing.T) {
	egress := mustPolicy(t, "egress")
	allow := mustPolicy(t, "allowlist",
		"198.18.0.5:8080", "example.com:443", "0.0.0.0/0:53", "10.1.0.0/16", "192.0.2.7", "192.0.0.0/16:25",
		"*.example.org", "127.0.0.1:5432", "[2001:db8:5::9]:443")
	tcp := func(addr string, port uint16, names ...string) Request {
		return Request{Proto: TCP, Addr: netip.MustParseAddr(addr), Port: port, Names: names}
	}
	for _, tc := range []struct {
		name   string
		p      Policy
		r      Request
		allow  bool
		reason string // substring
	}{
		{"off refuses", Off(), tcp("203.0.113.80", 80), false, "network is off"},
		{"zero policy is off", Policy{}, tcp("203.0.113.80", 80), false, "network is off"},
		{"egress public", egress, tcp("203.0.113.80", 80), true, "public"},
		{"egress public udp", egress, Request{Proto: UDP, Addr: netip.MustParseAddr("198.51.100.1"), Port: 53}, true, "public"},
		{"egress public v6", egress, tcp("2001:db8::1", 443), true, "public"},
		{"egress+published public", mustPolicy(t, "egress+published-ports"), tcp("203.0.113.80", 80), true, "public"},
		{"loopback", egress, tcp("127.0.0.1", 80), false, "loopback"},
		{"loopback elsewhere in 127/8", egress, tcp("127.1.2.3", 80), false, "loopback"},
		{"mapped loopback", egress, tcp("::ffff:127.0.0.1", 80), false, "loopback"},
		{"this network", egress, tcp("0.0.0.0", 80), false, "0.0.0.0/8"},
		{"rfc1918 10", egress, tcp("10.0.2.2", 80), false, "RFC 1918"},
		{"rfc1918 172", egress, tcp("172.16.5.4", 80), false, "RFC 1918"},
		{"rfc1918 192.168", egress, tcp("192.168.1.1", 80), false, "RFC 1918"},
		{"cgnat", egress, tcp("100.64.0.1", 80), false, "carrier-grade"},
		{"metadata", egress, tcp("169.254.169.254", 80), false, "link-local"},
		{"multicast", egress, Request{Proto: UDP, Addr: netip.MustParseAddr("224.0.0.251"), Port: 5353}, false, "multicast"},
		{"broadcast", egress, Request{Proto: UDP, Addr: netip.MustParseAddr("255.255.255.255"), Port: 67}, false, "broadcast"},
		{"reserved", egress, tcp("240.0.0.1", 80), false, "reserved"},
		{"host address", egress, tcp("192.0.2.2", 22), false, "own address"},
		{"host subnet", egress, tcp("192.0.2.77", 22), false, "192.0.2.0/24"},
		{"host global v6", egress, tcp("2001:db8:5::2", 22), false, "own address"},
		{"host v6 subnet", egress, tcp("2001:db8:5::77", 22), false, "2001:db8:5::/64"},
		{"v6 loopback", egress, tcp("::1", 80), false, "loopback"},
		{"v6 ula", egress, tcp("fc00::1", 80), false, "unique local"},
		{"v6 link-local", egress, tcp("fe80::1", 80), false, "link-local"},
		{"v6 multicast", egress, tcp("ff02::1", 80), false, "multicast"},
		{"invalid address", egress, Request{Proto: TCP, Port: 80}, false, "no address"},
		{"published-ports has no egress", mustPolicy(t, "published-ports"), tcp("203.0.113.80", 80), false, "published-ports"},

		{"allow exact", allow, tcp("198.18.0.5", 8080), true, "198.18.0.5:8080"},
		{"allow wrong port", allow, tcp("198.18.0.5", 8081), false, "not on the allowlist"},
		{"allow unlisted public", allow, tcp("203.0.113.80", 443), false, "not on the allowlist"},
		{"allow by pinned name", allow, tcp("203.0.113.80", 443, "example.com"), true, "example.com:443"},
		{"pinned name wrong port", allow, tcp("203.0.113.80", 80, "example.com"), false, "not on the allowlist"},
		{"name never overrides refusal", allow, tcp("169.254.169.254", 443, "example.com"), false, "link-local"},
		{"wildcard name", allow, tcp("203.0.113.9", 80, "a.b.example.org"), true, "*.example.org"},
		{"wildcard excludes apex", allow, tcp("203.0.113.9", 80, "example.org"), false, "not on the allowlist"},
		{"wide cidr is not explicit for loopback", allow, tcp("127.0.0.53", 53), false, "loopback"},
		{"wide cidr is not explicit for the host", allow, tcp("192.0.2.2", 53), false, "own address"},
		{"wide cidr allows public", allow, Request{Proto: UDP, Addr: netip.MustParseAddr("198.51.100.1"), Port: 53}, true, "0.0.0.0/0:53"},
		{"explicit private cidr", allow, tcp("10.1.2.3", 9999), true, "10.1.0.0/16"},
		{"private outside the rule", allow, tcp("10.2.0.1", 9999), false, "RFC 1918"},
		{"explicit address on the host's network", allow, tcp("192.0.2.7", 80), true, "192.0.2.7"},
		{"cidr wider than the host's network", allow, tcp("192.0.2.8", 25), false, "192.0.2.0/24"},
		{"explicit host loopback service", allow, tcp("127.0.0.1", 5432), true, "127.0.0.1:5432"},
		{"explicit host loopback other port", allow, tcp("127.0.0.1", 5433), false, "loopback"},
		{"explicit v6 on the host's network", allow, tcp("2001:db8:5::9", 443), true, "[2001:db8:5::9]:443"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := Decide(tc.p, testHost, tc.r)
			if v.Allow != tc.allow || !strings.Contains(v.Reason, tc.reason) {
				t.Errorf("Decide(%s, %+v) = %+v, want allow=%v reason~%q", tc.p, tc.r, v, tc.allow, tc.reason)
			}
		})
	}
}

func TestDecideDNS(t *testing.T) {
	egress := mustPolicy(t, "egress")
	allow := mustPolicy(t, "allowlist", "example.com:443", "*.example.org", "10.1.0.0/16:80", "198.51.100.0/24")
	q := func(name string) Request { return Request{Proto: DNS, Names: []string{name}} }
	a := func(name, addr string) Request {
		return Request{Proto: DNS, Names: []string{name}, Addr: netip.MustParseAddr(addr)}
	}
	for _, tc := range []struct {
		name   string
		p      Policy
		r      Request
		allow  bool
		reason string
	}{
		{"off", Off(), q("example.com"), false, "off"},
		{"published-ports", mustPolicy(t, "published-ports"), q("example.com"), false, "published-ports"},
		{"egress any name", egress, q("anything.test"), true, "resolving"},
		{"egress public answer", egress, a("anything.test", "203.0.113.80"), true, "public"},
		{"egress private answer", egress, a("rebind.test", "10.0.0.1"), false, "RFC 1918"},
		{"egress host answer", egress, a("rebind.test", "192.0.2.2"), false, "own address"},
		{"egress metadata answer", egress, a("rebind.test", "169.254.169.254"), false, "link-local"},
		{"allowlist listed", allow, q("example.com"), true, "on the allowlist"},
		{"allowlist wildcard", allow, q("cdn.example.org"), true, "on the allowlist"},
		{"allowlist unlisted", allow, q("example.net"), false, "not on the allowlist"},
		{"allowlist unlisted answer", allow, a("example.net", "203.0.113.80"), false, "not on the allowlist"},
		{"allowlist public answer", allow, a("example.com", "203.0.113.80"), true, "public"},
		{"allowlist loopback answer", allow, a("example.com", "127.0.0.1"), false, "loopback"},
		{"allowlist answer inside an explicit cidr", allow, a("example.com", "10.1.9.9"), true, "10.1.0.0/16:80"},
		{"allowlist answer outside it", allow, a("example.com", "10.2.9.9"), false, "RFC 1918"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := Decide(tc.p, testHost, tc.r)
			if v.Allow != tc.allow || !strings.Contains(v.Reason, tc.reason) {
				t.Errorf("Decide(%s, %+v) = %+v, want allow=%v reason~%q", tc.p, tc.r, v, tc.allow, tc.reason)
			}
		})
	}
}

func TestParseRule(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // String() of the rule; "" means an error
	}{
		{"example.com:443", "example.com:443"},
		{"Example.COM.", "example.com"},
		{"*.example.com", "*.example.com"},
		{"198.18.0.5:8080", "198.18.0.5:8080"},
		{"198.18.0.5", "198.18.0.5"},
		{"203.0.113.9/24:80", "203.0.113.0/24:80"},
		{"::ffff:10.0.0.1", "10.0.0.1"},
		{"[2001:db8::1]:443", "[2001:db8::1]:443"},
		{"[2001:db8::/32]:443", "[2001:db8::/32]:443"},
		{"2001:db8::/32", "2001:db8::/32"},
		{"2001:db8::1", "2001:db8::1"},
		{"localhost", "localhost"},
		{"", ""},
		{":80", ""},
		{"host:", ""},
		{"host:0", ""},
		{"host:70000", ""},
		{"host:8a", ""},
		{"bad name!", ""},
		{"a..b", ""},
		{"-a.com", ""},
		{"1.2.3", ""},
		{"[::1", ""},
		{"[::1]x", ""},
		{"10.0.0.0/33", ""},
		{"fe80::1%eth0", ""},
		{"*", ""},
	} {
		r, err := ParseRule(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("ParseRule(%q) = %v, want an error", tc.in, r)
			} else if !errors.Is(err, errdefs.ErrInvalidArgument) || errdefs.HintOf(err) == "" {
				t.Errorf("ParseRule(%q) error %v lacks its class or hint", tc.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseRule(%q): %v", tc.in, err)
			continue
		}
		if got := r.String(); got != tc.want {
			t.Errorf("ParseRule(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if again, err := ParseRule(r.String()); err != nil || again != r {
			t.Errorf("ParseRule(%q) does not round-trip: %v, %v", r.String(), again, err)
		}
	}
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		mode         string
		allow        []string
		allowPublish bool
		err          string
		publish, nic bool
	}{
		{mode: "off"},
		{mode: "egress", nic: true},
		{mode: "egress+published-ports", nic: true, publish: true},
		{mode: "published-ports", nic: true, publish: true},
		{mode: "allowlist", allow: []string{"example.com"}, nic: true},
		{mode: "allowlist", allow: []string{"example.com"}, allowPublish: true, nic: true, publish: true},
		{mode: "allowlist", err: "no entries"},
		{mode: "egress", allow: []string{"example.com"}, err: "only to the allowlist"},
		{mode: "egress", allowPublish: true, err: "--allow-publish"},
		{mode: "allowlist", allow: []string{"no such thing!"}, err: "allow entry"},
		{mode: "open", err: "unknown network policy"},
		{mode: "", err: "unknown network policy"},
	} {
		p, err := New(tc.mode, tc.allow, tc.allowPublish)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("New(%q, %v, %v) error = %v, want %q", tc.mode, tc.allow, tc.allowPublish, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("New(%q, %v): %v", tc.mode, tc.allow, err)
			continue
		}
		if p.Publish() != tc.publish || p.NIC() != tc.nic {
			t.Errorf("%s: Publish=%v NIC=%v, want %v %v", p, p.Publish(), p.NIC(), tc.publish, tc.nic)
		}
	}
}

func TestPolicyJSON(t *testing.T) {
	p, err := New("allowlist", []string{"198.18.0.5:8080", "example.com:443", "[2001:db8::1]:22"}, true)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"mode":"allowlist","allow":["198.18.0.5:8080","example.com:443","[2001:db8::1]:22"],"allow_publish":true}`
	if string(data) != want {
		t.Errorf("json = %s\nwant  %s", data, want)
	}
	var back Policy
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p, back, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if err := json.Unmarshal([]byte(`{"mode":"allowlist","allow":["bad name!"]}`), &back); err == nil {
		t.Error("a bad rule in JSON was accepted")
	}
}

func TestHostAdd(t *testing.T) {
	var h Host
	for _, s := range []string{"127.0.0.1/8", "192.0.2.2/24", "192.0.2.3/24", "fe80::1/64", "10.9.9.9/32"} {
		ip, ipn, _ := net.ParseCIDR(s)
		ipn.IP = ip
		h.add(ipn)
	}
	// net.IP keeps IPv4 in 16 bytes with a 16-byte mask sometimes.
	h.add(&net.IPNet{IP: net.ParseIP("198.18.0.1"), Mask: net.CIDRMask(120, 128)})
	want := Host{
		Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3"),
			netip.MustParseAddr("fe80::1"), netip.MustParseAddr("10.9.9.9"), netip.MustParseAddr("198.18.0.1")},
		Subnets: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("192.0.2.0/24"),
			netip.MustParsePrefix("fe80::/64"), netip.MustParsePrefix("10.9.9.9/32"), netip.MustParsePrefix("198.18.0.0/24")},
	}
	if diff := cmp.Diff(want, h, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("host (-want +got):\n%s", diff)
	}
	if _, err := ReadHost(); err != nil {
		t.Fatal(err)
	}
}
