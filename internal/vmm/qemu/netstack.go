package qemu

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/netpolicy"
	"github.com/pyro-mcp/pyro/internal/netstack"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// NetStack is pyro's own network stack (internal/netstack), run in the
// process that starts the VM: the spec's policy decides every connection
// the guest opens. The default network mode.
const NetStack = "stack"

var _ vmm.Networked = (*machine)(nil)

// startNet gives m the network spec's policy asks for, before QEMU starts,
// and returns QEMU's end of it (an inherited descriptor, -netdev stream
// addr.type=fd), or nil when the guest has no network or slirp carries it.
func (b *Backend) startNet(spec vmm.MachineSpec, m *machine) (*os.File, error) {
	pol := spec.NetworkPolicy()
	if err := pol.Validate(); err != nil {
		return nil, err
	}
	if !pol.NIC() {
		return nil, nil
	}
	if b.cfg.Net == NetStack {
		n, qemuEnd, err := startNetStack(pol, b.log)
		if err != nil {
			return nil, err
		}
		m.net = n
		return qemuEnd, nil
	}
	// passt and slirp only know plain egress, without its refusals.
	if pol.Mode != netpolicy.ModeEgress {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "unset PYRO_NET_BACKEND to use pyro's own network stack",
			"network policy %s needs pyro's network stack, not PYRO_NET_BACKEND=%s", pol, b.cfg.Net)
	}
	if b.cfg.Net != NetPasst {
		return nil, nil
	}
	if b.passt == "" {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition,
			"install passt (apt-get install passt), or unset PYRO_NET_BACKEND to use pyro's own network stack",
			"PYRO_NET_BACKEND=passt needs passt, which is not installed")
	}
	proc, qemuEnd, err := startPasst(b.passt, spec.Dir)
	if err != nil {
		return nil, err
	}
	m.passt = proc
	return qemuEnd, nil
}

// netStack is a machine's network stack.
type netStack struct {
	stack *netstack.Stack
}

// startNetStack builds the stack and serves it on one end of a socket
// pair; the other end is QEMU's (no socket file to race for or leave behind).
func startNetStack(pol netpolicy.Policy, log *slog.Logger) (*netStack, *os.File, error) {
	gw, dns := netip.MustParseAddr(GuestGW), netip.MustParseAddr(GuestDNS)
	s, err := netstack.New(netstack.Options{Policy: pol, Guest: netip.MustParsePrefix(GuestIP), Gateway: gw, DNS: dns, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		s.Close()
		return nil, nil, errdefs.Wrap(errdefs.ErrUnavailable, err, "", "creating the guest network's socket pair")
	}
	stackEnd, qemuEnd := os.NewFile(uintptr(fds[0]), "stack-net"), os.NewFile(uintptr(fds[1]), "qemu-net")
	c, err := net.FileConn(stackEnd)
	stackEnd.Close()
	if err != nil {
		qemuEnd.Close()
		s.Close()
		return nil, nil, errdefs.Wrap(errdefs.ErrUnavailable, err, "", "opening the guest network's socket")
	}
	go func() {
		if err := s.Serve(context.Background(), c); err != nil {
			log.Warn("guest network ended", "err", err)
		}
	}()
	return &netStack{stack: s}, qemuEnd, nil
}

func (n *netStack) close() { n.stack.Close() }

// Network implements vmm.Networked: the stack carrying the guest's
// network, or nil (no network, or passt or slirp carry it).
func (m *machine) Network() *netstack.Stack {
	if m.net == nil {
		return nil
	}
	return m.net.stack
}
