package qemu

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/internal/aptsource"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/netpolicy"
	"github.com/pyro-mcp/pyro/internal/netstack"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// The guest network tests boot a real guest (the installed environment's
// kernel and modules, busybox-static, testdata/nettest-init.sh) and drive
// it over its virtio-serial port. TestNetworkPolicy runs inside network
// namespaces the test makes (netns_test.go); TestNetworkHost runs on this
// host and contacts nothing off it but the Debian mirror the host's apt
// uses.

func mustPolicy(t *testing.T, mode string, allow ...string) netpolicy.Policy {
	t.Helper()
	p, err := netpolicy.New(mode, allow, false)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// reach asserts the guest fetched want from url.
func reach(t *testing.T, g *guest, url, want string) {
	t.Helper()
	if p := g.probe(t, url); p.rc != 0 || p.body != want {
		t.Errorf("%s: rc=%d body=%q, want %q", url, p.rc, p.body, want)
	}
}

// refused asserts the guest could not fetch url, and learnt so fast.
func refused(t *testing.T, g *guest, url string) {
	t.Helper()
	p := g.probe(t, url)
	if p.rc == 0 {
		t.Errorf("%s: reachable (%q), want refused", url, p.body)
		return
	}
	// Refused, not timed out: fast on an idle host, stretched by the load
	// (a TCG guest's wget alone took 1.46 s at load 13 on 2 CPUs).
	if limit := scaled(time.Second); p.ms >= int(limit.Milliseconds()) {
		t.Errorf("%s: refused after %d ms, want under %s (%s)", url, p.ms, limit.Round(time.Millisecond), p.body)
	}
	if !strings.Contains(p.body, "Connection refused") && !strings.Contains(p.body, "bad address") {
		t.Errorf("%s: %q, want a refused connection (or no address)", url, p.body)
	}
}

// hostGet fetches url from this side with the Go HTTP client.
func hostGet(url string) (string, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b)), err
}

func lastRecord(recs []netstack.Record, f func(netstack.Record) bool) (netstack.Record, bool) {
	for i := len(recs) - 1; i >= 0; i-- {
		if f(recs[i]) {
			return recs[i], true
		}
	}
	return netstack.Record{}, false
}

// TestNetworkPolicy boots one guest on pyro's stack in the test's host
// namespace and walks it through egress+published-ports, allowlist and
// published-ports, changing the policy live.
func TestNetworkPolicy(t *testing.T) {
	inTestNetns(t, "TestNetworkPolicy", func(t *testing.T, lan string) {
		kernel, modules := netTestEnv(t)
		z := lanWorld(t, lan)
		z.set("good.test", tnPublic)
		z.set("evil.test", tnLANAddr)
		z.set("rebind.test", tnPublic)
		z.set("other.test", tnPublic)
		dir := shortDir(t)
		initrd := buildNetInitrd(t, dir, modules, nil)
		b, err := New(Options{Accel: "tcg", Net: NetStack})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		g := bootNetGuest(t, b, vmm.MachineSpec{ID: "np", Dir: dir, Kernel: kernel, Initrd: initrd,
			NetPolicy: mustPolicy(t, "egress+published-ports")})
		t.Logf("guest shell after %s", time.Since(start).Round(time.Millisecond))
		s := g.m.(vmm.Networked).Network()
		if s == nil {
			t.Fatal("the machine has no network stack")
		}
		ctx := t.Context()

		// egress+published-ports: the internet yes, the host and its LAN no.
		reach(t, g, "http://"+tnPublic+"/", "PUBLIC")
		reach(t, g, "http://good.test/", "PUBLIC")
		for _, u := range []string{
			"http://" + tnLANAddr + ":8080/", "http://" + tnLANAddr + ":8081/", // a LAN neighbour
			fmt.Sprintf("http://%s:%d/", tnHostAddr, tnHostPort), // the host's own address
			fmt.Sprintf("http://10.0.2.2:%d/", tnHostPort),       // gateway: slirp mapped it to the host's loopback
			fmt.Sprintf("http://10.0.2.3:%d/", tnHostPort),       // DNS address, other ports
			"http://" + tnMetadata + "/",                         // metadata endpoint
			fmt.Sprintf("http://127.0.0.1:%d/", tnHostPort),      // only ever the guest's own loopback
		} {
			refused(t, g, u)
		}
		if out, _ := g.sh(t, "nslookup evil.test"); strings.Contains(out, tnLANAddr) {
			t.Errorf("a name pointing at the LAN was answered:\n%s", out)
		}
		refused(t, g, "http://evil.test:8080/")
		// UDP: a DNS server on the internet yes, one on the LAN no: the
		// guest's socket gets ECONNREFUSED (ICMP port unreachable) at once,
		// though busybox's nslookup retries until its own timeout.
		if out, _ := g.sh(t, "timed nslookup good.test "+tnPublic); !strings.Contains(out, "Address: "+tnPublic) || !strings.Contains(out, "rc=0 ") {
			t.Errorf("DNS over UDP to %s:\n%s", tnPublic, out)
		}
		if out, _ := g.sh(t, "timed nslookup good.test "+tnLANAddr); strings.Contains(out, "Address: "+tnPublic) || strings.Contains(out, "rc=0 ") || !strings.Contains(out, "Connection refused") {
			t.Errorf("DNS over UDP to the LAN (want connection refused):\n%s", out)
		}

		// A published port: on the host's loopback only.
		if out, rc := g.sh(t, "echo GUEST-SERVICE > /www/index.html && httpd -p 8000 -h /www"); rc != 0 {
			t.Fatalf("starting httpd: %s", out)
		}
		pub, err := s.Publish(ctx, 8000, 0)
		if err != nil {
			t.Fatal(err)
		}
		local := fmt.Sprintf("http://127.0.0.1:%d/", pub.HostPort)
		if body, err := hostGet(local); err != nil || body != "GUEST-SERVICE" {
			t.Errorf("GET %s: %q, %v", local, body, err)
		}
		if c, err := net.DialTimeout("tcp", net.JoinHostPort(tnHostAddr, fmt.Sprint(pub.HostPort)), 2*time.Second); err == nil {
			c.Close()
			t.Errorf("published port reachable on %s", tnHostAddr)
		}
		if err := s.Unpublish(8000); err != nil {
			t.Fatal(err)
		}
		if _, err := hostGet(local); err == nil {
			t.Errorf("%s answers after unpublish", local)
		}

		// allowlist: exactly what it names, names pinned at first answer.
		if err := s.SetPolicy(mustPolicy(t, "allowlist", tnLANAddr+":8080", "rebind.test:80", tnPublic+":7")); err != nil {
			t.Fatal(err)
		}
		reach(t, g, "http://"+tnLANAddr+":8080/", "LAN-8080")
		refused(t, g, "http://"+tnLANAddr+":8081/")
		refused(t, g, "http://"+tnPublic+"/") // not listed until rebind.test pins it
		reach(t, g, "http://rebind.test/", "PUBLIC")
		z.set("rebind.test", tnMetadata)
		if out, _ := g.sh(t, "nslookup rebind.test"); !strings.Contains(out, tnPublic) || strings.Contains(out, tnMetadata) {
			t.Errorf("rebind.test was re-pointed:\n%s", out)
		}
		refused(t, g, "http://"+tnMetadata+"/")
		if out, rc := g.sh(t, "nslookup other.test"); rc == 0 || strings.Contains(out, tnPublic) {
			t.Errorf("a name off the allowlist resolved (rc=%d):\n%s", rc, out)
		}
		if out, _ := g.sh(t, "timed nslookup good.test "+tnPublic); strings.Contains(out, "rc=0 ") {
			t.Errorf("UDP to an unlisted address:\n%s", out)
		}
		if _, err := s.Publish(ctx, 8000, 0); !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Errorf("publishing under allowlist without --allow-publish: %v", err)
		}

		// published-ports: nothing out, a port in.
		if err := s.SetPolicy(mustPolicy(t, "published-ports")); err != nil {
			t.Fatal(err)
		}
		refused(t, g, "http://"+tnPublic+"/")
		if out, rc := g.sh(t, "nslookup good.test"); rc == 0 || strings.Contains(out, tnPublic) {
			t.Errorf("resolved under published-ports (rc=%d):\n%s", rc, out)
		}
		if pub, err = s.Publish(ctx, 8000, 0); err != nil {
			t.Fatal(err)
		}
		if body, err := hostGet(fmt.Sprintf("http://127.0.0.1:%d/", pub.HostPort)); err != nil || body != "GUEST-SERVICE" {
			t.Errorf("published under published-ports: %q, %v", body, err)
		}

		// The connection log tells the story.
		recs, _ := s.Log()
		for _, want := range []struct {
			what   string
			match  func(netstack.Record) bool
			allow  bool
			reason string
		}{
			{"public fetch", func(r netstack.Record) bool {
				return r.Proto == "tcp" && r.Addr == tnPublic && r.Port == 80 && r.BytesIn > 0
			}, true, ""},
			{"UDP to the internet", func(r netstack.Record) bool { return r.Proto == "udp" && r.Addr == tnPublic && r.BytesIn > 0 }, true, "public"},
			{"UDP to the LAN", func(r netstack.Record) bool { return r.Proto == "udp" && r.Addr == tnLANAddr }, false, "198.18.0.0/24"},
			{"LAN neighbour", func(r netstack.Record) bool { return r.Addr == tnLANAddr && r.Port == 8081 }, false, "198.18.0.0/24"},
			{"host's address", func(r netstack.Record) bool { return r.Addr == tnHostAddr }, false, "own address"},
			{"metadata", func(r netstack.Record) bool { return r.Addr == tnMetadata }, false, "link-local"},
			{"gateway", func(r netstack.Record) bool { return r.Addr == "10.0.2.2" }, false, "RFC 1918"},
			{"rebinding answer", func(r netstack.Record) bool { return r.Proto == "dns" && r.Name == "evil.test" }, false, "answer refused"},
			{"unlisted name", func(r netstack.Record) bool { return r.Proto == "dns" && r.Name == "other.test" }, false, "not on the allowlist"},
			{"published port", func(r netstack.Record) bool { return r.Direction == "in" && r.Port == 8000 && r.BytesOut > 0 }, true, "published"},
		} {
			r, ok := lastRecord(recs, want.match)
			if !ok {
				t.Errorf("log has no %s record", want.what)
				continue
			}
			if r.Allowed != want.allow || !strings.Contains(r.Reason, want.reason) {
				t.Errorf("%s record: %+v", want.what, r)
			}
		}
		t.Logf("%d log records; the last ones:", len(recs))
		for _, r := range recs[max(0, len(recs)-8):] {
			t.Logf("  %s %s %s:%d %s allowed=%v %q %q in=%d out=%d", r.Proto, r.Direction, r.Addr, r.Port, r.Name, r.Allowed, r.Reason, r.Error, r.BytesIn, r.BytesOut)
		}
	})
}

// TestNetworkHost checks, on this host itself, that a guest without a
// policy has no network device, and that an egress guest reaches the
// Debian mirror the host's apt uses by name but not the host's own
// addresses.
func TestNetworkHost(t *testing.T) {
	kernel, modules := netTestEnv(t)
	dir := shortDir(t)
	initrd := buildNetInitrd(t, dir, modules, nil)
	b, err := New(Options{Accel: "tcg", Net: NetStack})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("off", func(t *testing.T) {
		g := bootNetGuest(t, b, vmm.MachineSpec{ID: "no", Dir: shortDir(t), Kernel: kernel, Initrd: initrd})
		if out, _ := g.sh(t, "ls /sys/class/net"); out != "lo" {
			t.Errorf("interfaces: %q, want only lo", out)
		}
		if g.m.(vmm.Networked).Network() != nil {
			t.Error("a machine without network has a stack")
		}
	})
	t.Run("egress", func(t *testing.T) {
		host, err := netpolicy.ReadHost()
		if err != nil {
			t.Fatal(err)
		}
		var targets []string
		for _, a := range host.Addrs {
			if !a.Is4() {
				continue
			}
			ln, err := net.Listen("tcp", netip.AddrPortFrom(a, 0).String())
			if err != nil {
				t.Fatal(err)
			}
			serveText(t, ln, "HOST-"+a.String())
			targets = append(targets, "http://"+ln.Addr().String()+"/")
		}
		g := bootNetGuest(t, b, vmm.MachineSpec{ID: "ne", Dir: shortDir(t), Kernel: kernel, Initrd: initrd, Network: true})
		for _, u := range targets {
			refused(t, g, u)
		}
		mirror := aptsource.Mirror("", "bookworm")
		u, err := url.Parse(mirror)
		if mirror == "" || err != nil || u.Scheme != "http" {
			t.Logf("no plain-http Debian mirror in apt's configuration (%q): skipping the egress check", mirror)
			return
		}
		out, rc := g.sh(t, "T=20 get "+mirror+"/dists/bookworm/Release | grep -m 1 '^Codename:'")
		if rc != 0 || !strings.Contains(out, "bookworm") {
			t.Errorf("the Debian mirror by name: rc=%d %q", rc, out)
		}
		recs, _ := g.m.(vmm.Networked).Network().Log()
		if r, ok := lastRecord(recs, func(r netstack.Record) bool { return r.Proto == "tcp" && r.Name == u.Hostname() }); !ok || !r.Allowed || r.BytesIn == 0 {
			t.Errorf("no allowed record naming the mirror: %+v", r)
		}
	})
}
