package agent_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/guesttest"
	"github.com/pyro-mcp/pyro/internal/initramfs"
)

// hostTSCkHz reads the host CPU frequency: without tsc_early_khz a TCG
// guest sometimes hangs calibrating its TSC (see host-facts).
func hostTSCkHz() int {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "cpu MHz" {
			mhz, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(mhz * 1000)
		}
	}
	return 0
}

// TestBootSmoke boots the installed debian:12 under QEMU TCG with an
// initramfs whose /init is a fresh static pyro-agent, talks to it over
// virtio-serial, and shuts it down.
func TestBootSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM; skipped with -short")
	}
	if runtime.GOARCH != "amd64" {
		t.Skip("needs amd64")
	}
	p := guesttest.Need(t)
	qemu, inst := p.QEMU, p.Env

	tmp := t.TempDir()
	bin := filepath.Join(tmp, "pyro-agent")
	build := exec.Command("go", "build", "-o", bin, "github.com/pyro-mcp/pyro/cmd/pyro-agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building agent: %v\n%s", err, out)
	}
	initrd, err := initramfs.Build(t.Context(), tmp, bin, inst.ModulesPath)
	if err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(tmp, "root.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-b", inst.RootfsPath, "-F", "raw", overlay, "4G").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v\n%s", err, out)
	}
	// Unix socket paths are limited to ~108 bytes: keep it short.
	sockDir, err := os.MkdirTemp("", "pyro-boot-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	sock := filepath.Join(sockDir, "a.sock")

	appendArgs := "console=ttyS0 quiet panic=-1 reboot=t tsc=reliable pyro_root=/dev/vda pyro_hostname=smoke pyro_channel=virtio-serial pyro_net=1 pyro_ip=10.0.2.15/24 pyro_gw=10.0.2.2 pyro_dns=10.0.2.3"
	if khz := hostTSCkHz(); khz > 0 {
		appendArgs += " tsc_early_khz=" + strconv.Itoa(khz)
	}
	var console bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu,
		"-accel", "tcg", "-M", "microvm,x-option-roms=off,rtc=on", "-cpu", "max", "-m", "256", "-smp", "1",
		"-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
		"-kernel", inst.KernelPath, "-initrd", initrd, "-append", appendArgs,
		"-drive", "id=root,file="+overlay+",format=qcow2,if=none",
		"-device", "virtio-blk-device,drive=root",
		"-netdev", "user,id=n0", "-device", "virtio-net-device,netdev=n0",
		"-device", "virtio-serial-device",
		"-chardev", "socket,id=c0,path="+sock+",server=on,wait=off",
		"-device", "virtserialport,chardev=c0,name=pyro.agent",
	)
	cmd.Stdout, cmd.Stderr = &console, &console
	began := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("guest console:\n%s", console.String())
		}
	}()

	var conn net.Conn
	for conn == nil {
		if conn, err = net.Dial("unix", sock); err != nil {
			conn = nil
			if time.Since(began) > 10*time.Second {
				t.Fatalf("QEMU socket never appeared: %v", err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	hctx, hcancel := context.WithTimeout(ctx, 90*time.Second)
	c, err := agentproto.NewClient(hctx, conn)
	hcancel()
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer c.Close()
	t.Logf("QEMU start to handshake: %v (agent %s)", time.Since(began).Round(time.Millisecond), c.Hello().Software)

	run := func(req agentproto.ExecRequest) string {
		t.Helper()
		var out, errb bytes.Buffer
		start := time.Now()
		r, err := c.Exec(ctx, req, nil, &out, &errb)
		if err != nil || r.ExitCode != 0 {
			t.Fatalf("exec %v: %+v, %v; stderr %q", req, r, err, errb.String())
		}
		t.Logf("exec %v: %v", req.Argv, time.Since(start).Round(time.Millisecond))
		return strings.TrimSpace(out.String())
	}
	if got := run(agentproto.ExecRequest{Argv: []string{"uname", "-r"}}); got != inst.KernelVersion {
		t.Errorf("guest kernel %q, want %q", got, inst.KernelVersion)
	}
	if got := run(agentproto.ExecRequest{Argv: []string{"cat", "/etc/debian_version"}}); !strings.HasPrefix(got, "12") {
		t.Errorf("debian_version %q", got)
	}
	if got := run(agentproto.ExecRequest{Shell: "pwd; hostname; id -u"}); got != "/workspace\nsmoke\n0" {
		t.Errorf("pwd/hostname/id = %q", got)
	}
	var ar bytes.Buffer
	tw := tar.NewWriter(&ar)
	tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: 3, Typeflag: tar.TypeReg})
	tw.Write([]byte("hi\n"))
	tw.Close()
	if _, err := c.PutArchive(ctx, agentproto.PutArchiveRequest{Dest: "/workspace", Root: "/workspace"}, &ar); err != nil {
		t.Fatal(err)
	}
	if got := run(agentproto.ExecRequest{Argv: []string{"cat", "/workspace/hello.txt"}}); got != "hi" {
		t.Errorf("hello.txt = %q", got)
	}
	if p, err := c.Ping(ctx); err != nil || p.Hostname != "smoke" || !slices.Contains(p.Addresses, "10.0.2.15/24") {
		t.Errorf("ping = %+v, %v", p, err)
	}
	// The agent configured eth0 itself: default route (gateway 10.0.2.2 is
	// 0202000A in /proc/net/route) and resolv.conf.
	if got := run(agentproto.ExecRequest{Shell: "grep -c '^eth0\t00000000\t0202000A' /proc/net/route; cat /etc/resolv.conf"}); got != "1\nnameserver 10.0.2.3" {
		t.Errorf("route/resolv.conf = %q", got)
	}

	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		t.Logf("QEMU exited %v after shutdown (total %v)", err, time.Since(began).Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Error("QEMU still running 30s after shutdown")
	}
}
