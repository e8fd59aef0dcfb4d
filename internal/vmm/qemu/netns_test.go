package qemu

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/internal/cpio"
	"github.com/pyro-mcp/pyro/internal/guesttest"
	"github.com/pyro-mcp/pyro/internal/initramfs"
	"github.com/pyro-mcp/pyro/internal/vmm"
	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"
)

// The network tests' world, made by the test and never left: two network
// namespaces joined by a veth pair.
//
//	"host" namespace (pyro's stack and QEMU run here)   "lan" namespace (other machines)
//	  lo 127.0.0.1                                         vl 198.18.0.5/24       LAN-8080, LAN-8081, DNS :53
//	  vh 198.18.0.1/24  <---------- veth ---------->          169.254.169.254/32  METADATA :80
//	  routes: 169.254.169.254, default via .5                 203.0.113.7/32      PUBLIC :80, DNS :53
//
// In the host namespace 198.18.0.0/24 is a network the "host" is on,
// 203.0.113.7 is "the internet", and /etc/resolv.conf (bind-mounted by ip
// netns exec from /etc/netns/<host>/) names the LAN's DNS server, whose
// zone the test controls.
const (
	tnHostAddr = "198.18.0.1"
	tnLANAddr  = "198.18.0.5"
	tnMetadata = "169.254.169.254"
	tnPublic   = "203.0.113.7"
	tnHostPort = 18080 // host-namespace listeners, on 127.0.0.1 and 198.18.0.1
)

// childEnv tells a re-executed test binary it runs inside the host
// namespace, and names the LAN namespace.
const childEnv = "PYRO_NETTEST_LAN_NS"

// inTestNetns runs body inside a fresh host namespace. The test binary
// re-executes itself under `ip netns exec` for the test named name (the
// stack, QEMU and the Go HTTP client must all be in the namespace), and
// the parent reports the child's output and verdict.
func inTestNetns(t *testing.T, name string, body func(t *testing.T, lan string)) {
	if lan := os.Getenv(childEnv); lan != "" {
		body(t, lan)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip")
	}
	netTestEnv(t) // skip early without a kernel
	host, lan := makeTestNetns(t)
	args := []string{"netns", "exec", host, os.Args[0], "-test.run=^" + name + "$", "-test.v", "-test.timeout=20m"}
	cmd := exec.Command("ip", args...)
	cmd.Env = append(os.Environ(), childEnv+"="+lan)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("in namespace %s:\n%s", host, out.String())
	if err != nil {
		t.Fatalf("the test inside the namespace failed: %v", err)
	}
	if strings.Contains(out.String(), "--- SKIP: "+name+" ") {
		t.Skip("skipped inside the namespace")
	}
}

// makeTestNetns builds the world above and removes it when the test ends.
func makeTestNetns(t *testing.T) (host, lan string) {
	t.Helper()
	id := fmt.Sprintf("pyt%d", os.Getpid()%1000000)
	host, lan = id+"h", id+"l"
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{host, lan} {
		ip("netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	etc := filepath.Join("/etc/netns", host)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(etc) })
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte("nameserver "+tnLANAddr+"\noptions timeout:2 attempts:2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ip("-n", host, "link", "add", "vh", "type", "veth", "peer", "name", "vl", "netns", lan)
	ip("-n", host, "addr", "add", tnHostAddr+"/24", "dev", "vh")
	ip("-n", lan, "addr", "add", tnLANAddr+"/24", "dev", "vl")
	ip("-n", lan, "addr", "add", tnMetadata+"/32", "dev", "vl")
	ip("-n", lan, "addr", "add", tnPublic+"/32", "dev", "vl")
	for _, ns := range []string{host, lan} {
		ip("-n", ns, "link", "set", "lo", "up")
	}
	ip("-n", host, "link", "set", "vh", "up")
	ip("-n", lan, "link", "set", "vl", "up")
	ip("-n", host, "route", "add", tnMetadata+"/32", "via", tnLANAddr)
	// A default route (passt wants one): whatever is not on the LAN goes
	// to the LAN namespace, which routes nothing further.
	ip("-n", host, "route", "add", "default", "via", tnLANAddr)
	return host, lan
}

// inNetns runs f on a thread that has joined the named namespace: sockets
// f creates live there. The thread is discarded afterwards.
func inNetns(name string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		fd, err := unix.Open(filepath.Join("/run/netns", name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", name, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// serveText serves body over HTTP on ln (and /big, n bytes of zeros, for
// throughput).
func serveText(t *testing.T, ln net.Listener, body string) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n, err := strconv.Atoi(r.URL.Query().Get("bytes")); err == nil && r.URL.Path == "/big" {
			w.Header().Set("Content-Length", strconv.Itoa(n))
			buf := make([]byte, 64<<10)
			for n > 0 {
				k := min(n, len(buf))
				if _, err := w.Write(buf[:k]); err != nil {
					return
				}
				n -= k
			}
			return
		}
		fmt.Fprint(w, body)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// zone is the LAN's DNS server: A records the test can change.
type zone struct {
	mu sync.Mutex
	a  map[string]netip.Addr
}

func (z *zone) set(name, addr string) {
	z.mu.Lock()
	z.a[name] = netip.MustParseAddr(addr)
	z.mu.Unlock()
}

func (z *zone) serve(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		name := strings.TrimSuffix(strings.ToLower(q.Name.String()), ".")
		z.mu.Lock()
		a, ok := z.a[name]
		z.mu.Unlock()
		rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true}
		if !ok {
			rh.RCode = dnsmessage.RCodeNameError
		}
		b := dnsmessage.NewBuilder(nil, rh)
		b.StartQuestions()
		b.Question(q)
		b.StartAnswers()
		if ok && q.Type == dnsmessage.TypeA {
			b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 1}, dnsmessage.AResource{A: a.As4()})
		}
		if msg, err := b.Finish(); err == nil {
			pc.WriteTo(msg, from)
		}
	}
}

// lanWorld starts the LAN's listeners (in namespace lan) and the host's
// own (here), and returns the LAN's DNS zone.
func lanWorld(t *testing.T, lan string) *zone {
	t.Helper()
	z := &zone{a: map[string]netip.Addr{}}
	err := inNetns(lan, func() error {
		for addr, body := range map[string]string{
			tnLANAddr + ":8080": "LAN-8080", tnLANAddr + ":8081": "LAN-8081",
			tnMetadata + ":80": "METADATA", tnPublic + ":80": "PUBLIC",
		} {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			serveText(t, ln, body)
		}
		// The zone answers on the LAN's DNS server and on "the internet"
		// (a public resolver a guest may ask directly, over UDP).
		for _, a := range []string{tnLANAddr, tnPublic} {
			pc, err := net.ListenPacket("udp", a+":53")
			if err != nil {
				return err
			}
			t.Cleanup(func() { pc.Close() })
			go z.serve(pc)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("LAN listeners: %v", err)
	}
	for _, a := range []string{"127.0.0.1", tnHostAddr} {
		ln, err := net.Listen("tcp", net.JoinHostPort(a, strconv.Itoa(tnHostPort)))
		if err != nil {
			t.Fatal(err)
		}
		serveText(t, ln, "HOST-"+a)
	}
	return z
}

// netTestEnv finds a guest kernel and its modules archive: an installed
// environment's.
func netTestEnv(t *testing.T) (kernel, modules string) {
	t.Helper()
	p := guesttest.Need(t)
	return p.Env.KernelPath, p.Env.ModulesPath
}

// scaled stretches a deadline by the load average per CPU when it is over
// 1: a TCG guest on a busy host is slow, not stuck (measured: a DNS lookup
// in the guest ran past 2 minutes at load 7 on 2 CPUs).
func scaled(d time.Duration) time.Duration {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return d
	}
	f, _, _ := strings.Cut(string(b), " ")
	load, _ := strconv.ParseFloat(f, 64)
	return time.Duration(float64(d) * max(1, load/float64(runtime.NumCPU())))
}

// buildNetInitrd makes the network-test initramfs: busybox-static as
// /bin/busybox, testdata/nettest-init.sh as /init, extra files, then the
// environment's modules archive.
func buildNetInitrd(t *testing.T, dir, modules string, extra map[string][]byte) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil || initramfs.CheckStatic(bb) != nil {
		t.Skip("needs a static busybox: apt-get install busybox-static")
	}
	bin, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile("testdata/nettest-init.sh")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := cpio.NewWriter(&buf, 0)
	w.Mkdir("bin", 0o755)
	w.File("bin/busybox", 0o755, bin)
	w.File("init", 0o755, script)
	for name, data := range extra {
		w.File(name, 0o755, data)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	mods, err := os.ReadFile(modules)
	if err != nil {
		t.Fatal(err)
	}
	buf.Write(mods)
	p := filepath.Join(dir, "initrd")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// guest is a booted network-test guest and its command channel.
type guest struct {
	m       vmm.Machine
	c       net.Conn
	r       *bufio.Reader
	console string
}

// bootNetGuest starts a guest with policy (nil: no network device) and
// waits for its shell.
func bootNetGuest(t *testing.T, b *Backend, spec vmm.MachineSpec) *guest {
	t.Helper()
	spec.Console = filepath.Join(spec.Dir, "console.log")
	if spec.MemMiB == 0 {
		spec.MemMiB = 256
	}
	m, err := b.Start(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Kill() })
	rw, err := m.AgentConn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	g := &guest{m: m, c: rw.(net.Conn), r: bufio.NewReader(rw), console: spec.Console}
	t.Cleanup(func() { g.c.Close() })
	g.c.SetReadDeadline(time.Now().Add(scaled(3 * time.Minute)))
	for {
		line, err := g.r.ReadString('\n')
		if err != nil {
			g.fail(t, "waiting for the guest's shell: %v", err)
		}
		if strings.TrimSpace(line) == "@@READY" {
			return g
		}
	}
}

// sh runs cmd in the guest and returns its output and exit status.
func (g *guest) sh(t *testing.T, cmd string) (string, int) {
	t.Helper()
	g.c.SetDeadline(time.Now().Add(scaled(2 * time.Minute)))
	if _, err := io.WriteString(g.c, cmd+"\n"); err != nil {
		g.fail(t, "sending %q: %v", cmd, err)
	}
	var out strings.Builder
	for {
		line, err := g.r.ReadString('\n')
		if err != nil {
			g.fail(t, "running %q: %v (output so far: %q)", cmd, err, out.String())
		}
		if rest, ok := strings.CutPrefix(line, "@@END "); ok {
			rc, _ := strconv.Atoi(strings.TrimSpace(rest))
			return strings.TrimSpace(out.String()), rc
		}
		out.WriteString(line)
	}
}

func (g *guest) fail(t *testing.T, format string, args ...any) {
	t.Helper()
	con, _ := os.ReadFile(g.console)
	t.Fatalf(format+"\nguest console:\n%s", append(args, con)...)
}

// probeResult is one `probe URL` in the guest.
type probeResult struct {
	rc   int
	ms   int
	body string
}

func (g *guest) probe(t *testing.T, url string) probeResult {
	t.Helper()
	out, _ := g.sh(t, "probe "+url)
	var p probeResult
	line := out[strings.LastIndex(out, "\n")+1:]
	f := strings.SplitN(line, " ", 3)
	if len(f) < 2 || !strings.HasPrefix(f[0], "rc=") || !strings.HasPrefix(f[1], "ms=") {
		t.Fatalf("probe %s: unexpected output %q", url, out)
	}
	p.rc, _ = strconv.Atoi(strings.TrimPrefix(f[0], "rc="))
	p.ms, _ = strconv.Atoi(strings.TrimPrefix(f[1], "ms="))
	if len(f) == 3 {
		p.body = strings.TrimSpace(f[2])
	}
	return p
}
