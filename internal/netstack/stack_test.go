package netstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/netpolicy"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// These tests put a second gVisor stack in the guest's place, joined to
// the stack under test by a socketpair speaking QEMU's stream framing, and
// replace the internet with local listeners (Stack.dial): nothing here
// leaves this machine. The real-guest tests are in internal/vmm/qemu.

// fakeGuest is the guest's side: 10.0.2.15/24, default route via 10.0.2.2.
type fakeGuest struct{ st *stack.Stack }

// world maps "internet" destinations to local listeners; anything else is
// refused, as if the destination said no.
type world struct {
	mu sync.Mutex
	to map[string]string
}

func (w *world) dial(ctx context.Context, network, address string) (net.Conn, error) {
	w.mu.Lock()
	real, ok := w.to[network+" "+address]
	w.mu.Unlock()
	if !ok {
		return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	var d net.Dialer
	return d.DialContext(ctx, network, real)
}

type fakeResolver struct {
	mu sync.Mutex
	m  map[string][]netip.Addr
}

func (f *fakeResolver) set(name string, addrs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var as []netip.Addr
	for _, a := range addrs {
		as = append(as, netip.MustParseAddr(a))
	}
	f.m[name] = as
}

func (f *fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if as, ok := f.m[host]; ok {
		return as, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

type rig struct {
	s     *Stack
	g     *fakeGuest
	world *world
	dns   *fakeResolver
}

func newRig(t *testing.T, p netpolicy.Policy) *rig {
	t.Helper()
	r := &rig{world: &world{to: map[string]string{}}, dns: &fakeResolver{m: map[string][]netip.Addr{}}}
	s, err := New(Options{Policy: p, Resolver: r.dns})
	if err != nil {
		t.Fatal(err)
	}
	s.dial = r.world.dial
	r.s = s
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "pair")
		if conns[i], err = net.FileConn(f); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background(), conns[0]) }()

	gl := &link{mac: tcpip.LinkAddress([]byte{0x02, 0, 0, 0, 0, 0x15}), local: func(tcpip.Address) bool { return true }, mtu: 1500}
	gst := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	if e := gst.CreateNIC(1, gl); e != nil {
		t.Fatal(e)
	}
	pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpAddr(DefaultGuest.Addr()), PrefixLen: 24}}
	if e := gst.AddProtocolAddress(1, pa, stack.AddressProperties{}); e != nil {
		t.Fatal(e)
	}
	sub, _ := tcpip.NewSubnet(tcpAddr(DefaultGuest.Masked().Addr()), tcpip.MaskFromBytes(net.CIDRMask(24, 32)))
	gst.SetRouteTable([]tcpip.Route{
		{Destination: sub, NIC: 1},
		{Destination: header.IPv4EmptySubnet, Gateway: tcpAddr(DefaultGateway), NIC: 1},
	})
	if err := gl.connect(conns[1]); err != nil {
		t.Fatal(err)
	}
	go gl.run()
	r.g = &fakeGuest{st: gst}
	t.Cleanup(func() {
		s.Close()
		conns[1].Close()
		gst.Close()
		select {
		case <-served:
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Close")
		}
	})
	return r
}

func (g *fakeGuest) dial(ctx context.Context, addr string) (net.Conn, error) {
	ap := netip.MustParseAddrPort(addr)
	return gonet.DialContextTCP(ctx, g.st, tcpip.FullAddress{NIC: 1, Addr: tcpAddr(ap.Addr()), Port: ap.Port()}, ipv4.ProtocolNumber)
}

func (g *fakeGuest) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return gonet.DialUDP(g.st, nil, &tcpip.FullAddress{NIC: 1, Addr: tcpAddr(DefaultDNS), Port: 53}, ipv4.ProtocolNumber)
	}}
}

func (g *fakeGuest) get(ctx context.Context, url string) (string, error) {
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
		return g.dial(ctx, addr)
	}}}
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// serveHTTP starts a local HTTP server answering body; it returns its
// address.
func serveHTTP(t *testing.T, body string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, body) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func mustPolicy(t *testing.T, mode string, allow ...string) netpolicy.Policy {
	t.Helper()
	p, err := netpolicy.New(mode, allow, false)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func findRecord(recs []Record, f func(Record) bool) (Record, bool) {
	for i := len(recs) - 1; i >= 0; i-- {
		if f(recs[i]) {
			return recs[i], true
		}
	}
	return Record{}, false
}

// waitRecord returns the last log record f accepts, waiting a little for
// it: byte counters move once a relay's write returns, which may be just
// after the other side has the bytes.
func waitRecord(s *Stack, f func(Record) bool) Record {
	for range 200 {
		recs, _ := s.Log()
		if r, ok := findRecord(recs, f); ok {
			return r
		}
		time.Sleep(10 * time.Millisecond)
	}
	return Record{Reason: "no such record"}
}

func TestEgress(t *testing.T) {
	r := newRig(t, mustPolicy(t, "egress"))
	r.world.to["tcp 203.0.113.7:80"] = serveHTTP(t, "PUBLIC")
	ctx := t.Context()

	body, err := r.g.get(ctx, "http://203.0.113.7/")
	if err != nil || body != "PUBLIC" {
		t.Fatalf("public destination: %q, %v", body, err)
	}
	// (0.0.0.0 and 127/8 are not tried: a real guest never sends them out
	// of its NIC, and the stack drops such martians before any policy.)
	for _, dst := range []string{"10.0.2.2:80", "10.0.2.3:80", "169.254.169.254:80", "192.168.1.1:22", "100.64.0.1:80"} {
		start := time.Now()
		c, err := r.g.dial(ctx, dst)
		if err == nil {
			c.Close()
			t.Errorf("%s: connected, want refused", dst)
			continue
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s: refused after %s, want at once", dst, d)
		}
		if !strings.Contains(err.Error(), "refused") {
			t.Errorf("%s: %v, want connection refused", dst, err)
		}
	}
	// An allowed destination that says no is a RST too.
	if c, err := r.g.dial(ctx, "203.0.113.9:80"); err == nil {
		c.Close()
		t.Error("203.0.113.9:80 connected, want refused by the destination")
	}

	recs, total := r.s.Log()
	if total != uint64(len(recs)) || len(recs) != 7 {
		t.Fatalf("log: %d records of %d", len(recs), total)
	}
	ok := waitRecord(r.s, func(x Record) bool { return x.Addr == "203.0.113.7" && x.BytesIn > 0 && x.BytesOut > 0 })
	if !ok.Allowed || ok.Proto != "tcp" || ok.Direction != "out" || ok.Reason != netpolicy.ReasonPublic {
		t.Errorf("allowed record: %+v", ok)
	}
	md, found := findRecord(recs, func(x Record) bool { return x.Addr == "169.254.169.254" })
	if !found || md.Allowed || !strings.Contains(md.Reason, "link-local") || md.Port != 80 {
		t.Errorf("metadata record: %+v", md)
	}
	nope, found := findRecord(recs, func(x Record) bool { return x.Addr == "203.0.113.9" })
	if !found || !nope.Allowed || !strings.Contains(nope.Error, "refused") {
		t.Errorf("destination-refused record: %+v", nope)
	}
}

func TestHostAddressesRefused(t *testing.T) {
	r := newRig(t, mustPolicy(t, "egress"))
	h := r.s.Host()
	if len(h.Addrs) == 0 {
		t.Fatal("no host addresses read")
	}
	for _, a := range h.Addrs {
		if !a.Is4() || a.IsLoopback() {
			continue
		}
		dst := netip.AddrPortFrom(a, 22).String()
		r.world.to["tcp "+dst] = serveHTTP(t, "HOST")
		if c, err := r.g.dial(t.Context(), dst); err == nil {
			c.Close()
			t.Errorf("host address %s reachable", dst)
		}
	}
}

func TestUDP(t *testing.T) {
	r := newRig(t, mustPolicy(t, "allowlist", "203.0.113.7:7"))
	echo, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := echo.ReadFrom(buf)
			if err != nil {
				return
			}
			echo.WriteTo(append([]byte("echo:"), buf[:n]...), from)
		}
	}()
	r.world.to["udp 203.0.113.7:7"] = echo.LocalAddr().String()
	exchange := func(dst string) (string, error) {
		ap := netip.MustParseAddrPort(dst)
		c, err := gonet.DialUDP(r.g.st, nil, &tcpip.FullAddress{NIC: 1, Addr: tcpAddr(ap.Addr()), Port: ap.Port()}, ipv4.ProtocolNumber)
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write([]byte("hi")); err != nil {
			return "", err
		}
		buf := make([]byte, 100)
		n, err := c.Read(buf)
		return string(buf[:n]), err
	}
	if got, err := exchange("203.0.113.7:7"); err != nil || got != "echo:hi" {
		t.Fatalf("allowed UDP: %q, %v", got, err)
	}
	// A refused datagram is answered with ICMP port unreachable at once.
	// (Whether gVisor's UDP socket reports it to a reader depends on
	// timing; a Linux guest's does: the real-guest tests check that.)
	unreach := r.g.st.Stats().ICMP.V4.PacketsReceived.DstUnreachable
	before := unreach.Value()
	c, err := gonet.DialUDP(r.g.st, nil, &tcpip.FullAddress{NIC: 1, Addr: tcpAddr(netip.MustParseAddr("203.0.113.7")), Port: 9}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	for unreach.Value() == before && time.Since(start) < 2*time.Second {
		time.Sleep(time.Millisecond)
	}
	if unreach.Value() == before || time.Since(start) > time.Second {
		t.Errorf("refused UDP: no ICMP unreachable within %s", time.Since(start))
	}
	if rec := waitRecord(r.s, func(x Record) bool { return x.Proto == "udp" && x.Port == 7 && x.BytesIn > 0 }); !rec.Allowed || rec.BytesIn != 7 || rec.BytesOut != 2 {
		t.Errorf("allowed UDP record: %+v", rec)
	}
	recs, _ := r.s.Log()
	if rec, ok := findRecord(recs, func(x Record) bool { return x.Proto == "udp" && x.Port == 9 }); !ok || rec.Allowed || rec.Reason != netpolicy.ReasonNotListed {
		t.Errorf("refused UDP record: %+v", rec)
	}
}

func TestDNS(t *testing.T) {
	r := newRig(t, mustPolicy(t, "egress"))
	r.dns.set("good.test", "203.0.113.7")
	r.dns.set("evil.test", "10.0.0.5")
	r.dns.set("mixed.test", "169.254.169.254", "203.0.113.8")
	res := r.g.resolver()
	ctx := t.Context()
	for _, tc := range []struct {
		name, want string // want "" means no address
		notFound   bool
	}{
		{"good.test.", "203.0.113.7", false},
		{"GOOD.test.", "203.0.113.7", false},
		{"evil.test.", "", false},
		{"mixed.test.", "203.0.113.8", false},
		{"missing.test.", "", true},
	} {
		addrs, err := res.LookupNetIP(ctx, "ip4", tc.name)
		var de *net.DNSError
		switch {
		case tc.want != "":
			if err != nil || len(addrs) != 1 || addrs[0].String() != tc.want {
				t.Errorf("%s: %v, %v; want %s", tc.name, addrs, err, tc.want)
			}
		case tc.notFound:
			if !errors.As(err, &de) || !de.IsNotFound {
				t.Errorf("%s: %v, %v; want not found", tc.name, addrs, err)
			}
		default:
			if len(addrs) != 0 {
				t.Errorf("%s: %v, want no address", tc.name, addrs)
			}
		}
	}
	if addrs, _ := res.LookupNetIP(ctx, "ip6", "good.test."); len(addrs) != 0 {
		t.Errorf("AAAA: %v, want none", addrs)
	}
	recs, _ := r.s.Log()
	if rec, ok := findRecord(recs, func(x Record) bool { return x.Name == "evil.test" }); !ok || rec.Allowed || !strings.Contains(rec.Reason, "RFC 1918") {
		t.Errorf("evil.test record: %+v", rec)
	}
	// The log names the destination by the name the guest resolved.
	r.world.to["tcp 203.0.113.7:80"] = serveHTTP(t, "PUBLIC")
	if _, err := r.g.get(ctx, "http://203.0.113.7/"); err != nil {
		t.Fatal(err)
	}
	recs, _ = r.s.Log()
	if rec, ok := findRecord(recs, func(x Record) bool { return x.Proto == "tcp" }); !ok || rec.Name != "good.test" {
		t.Errorf("tcp record after resolving: %+v", rec)
	}
}

func TestAllowlistPinsNames(t *testing.T) {
	r := newRig(t, mustPolicy(t, "allowlist", "rebind.test:80", "198.18.0.5:8080"))
	r.world.to["tcp 203.0.113.7:80"] = serveHTTP(t, "PINNED")
	r.world.to["tcp 198.18.0.5:8080"] = serveHTTP(t, "LAN8080")
	r.world.to["tcp 198.18.0.5:8081"] = serveHTTP(t, "LAN8081")
	r.world.to["tcp 169.254.169.254:80"] = serveHTTP(t, "METADATA")
	r.dns.set("rebind.test", "203.0.113.7")
	r.dns.set("other.test", "203.0.113.7")
	res := r.g.resolver()
	ctx := t.Context()

	if addrs, err := res.LookupNetIP(ctx, "ip4", "rebind.test."); err != nil || len(addrs) != 1 || addrs[0].String() != "203.0.113.7" {
		t.Fatalf("rebind.test: %v, %v", addrs, err)
	}
	if body, err := r.g.get(ctx, "http://203.0.113.7/"); err != nil || body != "PINNED" {
		t.Errorf("pinned address: %q, %v", body, err)
	}
	r.dns.set("rebind.test", "169.254.169.254")
	if addrs, err := res.LookupNetIP(ctx, "ip4", "rebind.test."); err != nil || len(addrs) != 1 || addrs[0].String() != "203.0.113.7" {
		t.Errorf("rebind.test after re-pointing: %v, %v; want the pinned answer", addrs, err)
	}
	if _, err := r.g.get(ctx, "http://169.254.169.254/"); err == nil {
		t.Error("metadata reachable")
	}
	if _, err := res.LookupNetIP(ctx, "ip4", "other.test."); err == nil {
		t.Error("a name off the allowlist resolved")
	}
	if body, err := r.g.get(ctx, "http://198.18.0.5:8080/"); err != nil || body != "LAN8080" {
		t.Errorf("198.18.0.5:8080: %q, %v", body, err)
	}
	if _, err := r.g.get(ctx, "http://198.18.0.5:8081/"); err == nil {
		t.Error("198.18.0.5:8081 reachable")
	}
	// A pinned address is allowed on the rule's port only.
	if _, err := r.g.dial(ctx, "203.0.113.7:443"); err == nil {
		t.Error("pinned address reachable on another port")
	}
	recs, _ := r.s.Log()
	if rec, ok := findRecord(recs, func(x Record) bool { return x.Name == "other.test" }); !ok || rec.Allowed || rec.Reason != netpolicy.ReasonNameUnlisted {
		t.Errorf("other.test record: %+v", rec)
	}
}

func TestPublish(t *testing.T) {
	r := newRig(t, mustPolicy(t, "egress"))
	ctx := t.Context()
	if _, err := r.s.Publish(ctx, 8000, 0); !errors.Is(err, errdefs.ErrFailedPrecondition) || errdefs.HintOf(err) == "" {
		t.Fatalf("publish under egress: %v", err)
	}
	if err := r.s.SetPolicy(mustPolicy(t, "egress+published-ports")); err != nil {
		t.Fatal(err)
	}
	// The guest's service.
	ln, err := gonet.ListenTCP(r.g.st, tcpip.FullAddress{NIC: 1, Addr: tcpAddr(DefaultGuest.Addr()), Port: 8000}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "GUEST") }))

	p, err := r.s.Publish(ctx, 8000, 0)
	if err != nil {
		t.Fatal(err)
	}
	if p.HostPort == 0 || p.HostAddress != "127.0.0.1" || p.GuestPort != 8000 {
		t.Fatalf("published: %+v", p)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", p.HostPort)
	get := func() (string, error) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if body, err := get(); err != nil || body != "GUEST" {
		recs, _ := r.s.Log()
		t.Fatalf("GET %s: %q, %v (log: %+v)", url, body, err, recs)
	}
	if got := r.s.Published(); len(got) != 1 || got[0] != p {
		t.Errorf("Published() = %+v", got)
	}
	if _, err := r.s.Publish(ctx, 8000, 0); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("publishing twice: %v", err)
	}
	if _, err := r.s.Publish(ctx, 8001, p.HostPort); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("host port in use: %v", err)
	}
	// Nothing listens on guest port 8002: the host's connection closes.
	p2, err := r.s.Publish(ctx, 8002, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", p2.HostPort)); err == nil {
		t.Error("a published port with no guest service answered")
	}
	in := waitRecord(r.s, func(x Record) bool { return x.Direction == "in" && x.Port == 8000 && x.BytesOut > 0 })
	if in.BytesIn == 0 || in.BytesOut == 0 || in.Addr != "127.0.0.1" || !in.Allowed {
		t.Errorf("inbound record: %+v", in)
	}
	if err := r.s.Unpublish(8000); err != nil {
		t.Fatal(err)
	}
	if _, err := get(); err == nil {
		t.Error("unpublished port still answers")
	}
	if err := r.s.Unpublish(8000); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unpublishing twice: %v", err)
	}
	// A policy without publishing releases what is left.
	if err := r.s.SetPolicy(mustPolicy(t, "egress")); err != nil {
		t.Fatal(err)
	}
	if got := r.s.Published(); len(got) != 0 {
		t.Errorf("after egress: %+v still published", got)
	}
}

func TestSetPolicyCutsConnections(t *testing.T) {
	r := newRig(t, mustPolicy(t, "allowlist", "203.0.113.7:80"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			io.Copy(c, c)
		}
	}()
	r.world.to["tcp 203.0.113.7:80"] = ln.Addr().String()
	c, err := r.g.dial(t.Context(), "203.0.113.7:80")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := r.s.SetPolicy(netpolicy.Off()); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("turning a live network off: %v", err)
	}
	if err := r.s.SetPolicy(mustPolicy(t, "allowlist", "203.0.113.8:80")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 10)
	for {
		if _, err := c.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("connection still open after the policy refused it")
			}
			break
		}
	}
	recs, _ := r.s.Log()
	if rec, ok := findRecord(recs, func(x Record) bool { return x.Addr == "203.0.113.7" }); !ok || rec.Error != "cut by a policy change" || rec.Open {
		t.Errorf("cut record: %+v", rec)
	}
}

func TestConnLogRing(t *testing.T) {
	l := newConnLog(3)
	for i := range 5 {
		l.add(Record{Port: uint16(i)})
	}
	recs, total := l.records()
	if total != 5 || len(recs) != 3 || recs[0].Port != 2 || recs[2].Port != 4 {
		t.Errorf("ring: %d %+v", total, recs)
	}
}

func TestNewRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"off", Options{Policy: netpolicy.Off()}},
		{"zero policy", Options{}},
		{"gateway outside the guest network", Options{Policy: netpolicy.Egress(), Gateway: netip.MustParseAddr("192.0.2.1")}},
	} {
		if _, err := New(tc.opts); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v, want invalid argument", tc.name, err)
		}
	}
}
