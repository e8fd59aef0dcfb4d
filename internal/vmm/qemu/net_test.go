package qemu

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/internal/aptsource"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// TestNetworkIsolation boots a busybox initramfs (PYRO_TEST_NET_INITRD: a
// newc archive with busybox-static, the virtio modules in /m and
// testdata/nettest-init.sh as /init) with a network and checks that under
// passt the guest resolves and reaches the Debian mirror the host's apt
// uses (the only address off this machine it contacts) but cannot reach a
// service on the host's 127.0.0.1, and that slirp, for the record, lets it
// through its gateway address (which slirp maps to this host).
func TestNetworkIsolation(t *testing.T) {
	initrd := os.Getenv("PYRO_TEST_NET_INITRD")
	if initrd == "" {
		t.Skip("set PYRO_TEST_NET_INITRD to a busybox network-test initramfs")
	}
	kernel := testKernel(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "HOSTSECRET") }))
	port := ln.Addr().(*net.TCPAddr).Port
	mirror := aptsource.Mirror("", "bookworm")
	dnsName := ""
	if u, err := url.Parse(mirror); err == nil {
		dnsName = u.Hostname()
	}
	for _, mode := range []string{NetPasst, NetSlirp} {
		t.Run(mode, func(t *testing.T) {
			dir := shortDir(t)
			b, err := New(Options{Accel: "tcg", Net: mode})
			if err != nil {
				t.Fatal(err)
			}
			console := filepath.Join(dir, "console.log")
			start := time.Now()
			m, err := b.Start(t.Context(), vmm.MachineSpec{ID: "n", Dir: dir, Kernel: kernel, Initrd: initrd, MemMiB: 256,
				Network: true, Console: console,
				Cmdline: fmt.Sprintf("pyro_hostport=%d pyro_mirror=%s pyro_dnsname=%s pyro_slirp=%v", port, mirror, dnsName, b2i(mode == NetSlirp))})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Kill()
			c, err := m.AgentConn(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			done := make(chan error, 1)
			go func() { done <- m.Wait() }()
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				t.Fatal("guest did not finish")
			}
			out, _ := os.ReadFile(console)
			var lines []string
			for _, l := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(l, "NET-") {
					lines = append(lines, strings.TrimSpace(l))
				}
			}
			if os.Getenv("PYRO_TEST_VERBOSE") != "" {
				t.Logf("console:\n%s", out)
			}
			t.Logf("%s in %s: %v", mode, time.Since(start).Round(time.Millisecond), lines)
			want := []string{"NET-HOSTLOOP-BLOCKED"}
			if mode == NetSlirp {
				want = []string{"NET-HOSTLOOP-REACHED"}
			}
			if mirror != "" {
				want = append(want, "NET-DNS-OK", "NET-EGRESS-OK")
			}
			for _, w := range want {
				if !strings.Contains(string(out), w) {
					t.Errorf("%s: console lacks %s", mode, w)
				}
			}
		})
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
