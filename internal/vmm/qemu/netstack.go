package qemu

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"

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

// startNet gives m the network spec's policy asks for, before QEMU starts
// (QEMU connects to it while it builds the machine).
func (b *Backend) startNet(ctx context.Context, spec vmm.MachineSpec, m *machine) error {
	pol := spec.NetworkPolicy()
	if err := pol.Validate(); err != nil {
		return err
	}
	if !pol.NIC() {
		return nil
	}
	if b.cfg.Net == NetStack {
		n, err := startNetStack(spec.Dir, pol, b.log)
		if err != nil {
			return err
		}
		m.net = n
		return nil
	}
	// passt and slirp only know plain egress, without its refusals.
	if pol.Mode != netpolicy.ModeEgress {
		return errdefs.New(errdefs.ErrFailedPrecondition, "unset PYRO_NET_BACKEND to use pyro's own network stack",
			"network policy %s needs pyro's network stack, not PYRO_NET_BACKEND=%s", pol, b.cfg.Net)
	}
	if b.cfg.Net != NetPasst {
		return nil
	}
	if b.passt == "" {
		return errdefs.New(errdefs.ErrFailedPrecondition,
			"install passt (apt-get install passt), or unset PYRO_NET_BACKEND to use pyro's own network stack",
			"PYRO_NET_BACKEND=passt needs passt, which is not installed")
	}
	var err error
	m.passt, err = startPasst(ctx, b.passt, spec.Dir)
	return err
}

// netStack is a machine's network stack and the socket QEMU connects to.
type netStack struct {
	stack *netstack.Stack
	ln    net.Listener
}

// startNetStack builds the stack and listens on <dir>/net.sock, where QEMU
// (-netdev stream, server=off) connects once, at start-up.
func startNetStack(dir string, pol netpolicy.Policy, log *slog.Logger) (*netStack, error) {
	gw, dns := netip.MustParseAddr(GuestGW), netip.MustParseAddr(GuestDNS)
	s, err := netstack.New(netstack.Options{Policy: pol, Guest: netip.MustParsePrefix(GuestIP), Gateway: gw, DNS: dns, Logger: log})
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, NetSocket)
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		s.Close()
		return nil, errdefs.Wrap(errdefs.ErrUnavailable, err, "check that "+dir+" is writable", "listening for the guest's network")
	}
	go func() {
		c, err := ln.Accept()
		ln.Close()
		os.Remove(sock)
		if err != nil {
			return
		}
		if err := s.Serve(context.Background(), c); err != nil {
			log.Warn("guest network ended", "err", err)
		}
	}()
	return &netStack{stack: s, ln: ln}, nil
}

func (n *netStack) close() {
	n.ln.Close()
	n.stack.Close()
}

// Network implements vmm.Networked: the stack carrying the guest's
// network, or nil (no network, or passt or slirp carry it).
func (m *machine) Network() *netstack.Stack {
	if m.net == nil {
		return nil
	}
	return m.net.stack
}
