package netstack

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/netpolicy"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// Published is a guest TCP port reachable on the host's loopback.
type Published struct {
	GuestPort   uint16 `json:"guest_port"`
	HostPort    uint16 `json:"host_port"`
	HostAddress string `json:"host_address"` // always 127.0.0.1
	// HostAddressV6 is ::1 when the host has IPv6 loopback and the same
	// port was free there.
	HostAddressV6 string `json:"host_address_v6,omitempty"`
}

// publication is a Published with its listeners and open connections.
type publication struct {
	Published
	s   *Stack
	lns []net.Listener

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// publishDialTimeout bounds reaching the guest's port for one connection.
const publishDialTimeout = 5 * time.Second

// Publish makes the guest's TCP port guestPort reachable on the host at
// 127.0.0.1:hostPort (and [::1]:hostPort when possible); hostPort 0 picks
// a free port. Only policies that permit publishing allow it (see
// netpolicy.Policy.Publish). The guest's service must listen on its
// network address (0.0.0.0 or 10.0.2.15), not on its own loopback.
func (s *Stack) Publish(ctx context.Context, guestPort, hostPort uint16) (Published, error) {
	if guestPort == 0 {
		return Published{}, errdefs.New(errdefs.ErrInvalidArgument, "name the guest port the service listens on", "guest port 0 cannot be published")
	}
	if err := s.canPublish(guestPort); err != nil {
		return Published{}, err
	}
	var lc net.ListenConfig
	ln4, err := lc.Listen(ctx, "tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(hostPort))))
	if err != nil {
		return Published{}, listenError(err, hostPort)
	}
	port := uint16(ln4.Addr().(*net.TCPAddr).Port)
	pub := &publication{
		Published: Published{GuestPort: guestPort, HostPort: port, HostAddress: "127.0.0.1"},
		s:         s, lns: []net.Listener{ln4}, conns: map[net.Conn]struct{}{},
	}
	if ln6, err := lc.Listen(ctx, "tcp6", net.JoinHostPort("::1", strconv.Itoa(int(port)))); err == nil {
		pub.lns = append(pub.lns, ln6)
		pub.HostAddressV6 = "::1"
	}
	s.mu.Lock()
	err = s.canPublishLocked(guestPort) // the policy may have changed meanwhile
	if err == nil {
		s.published[guestPort] = pub
	}
	s.mu.Unlock()
	if err != nil {
		pub.close()
		return Published{}, err
	}
	for _, ln := range pub.lns {
		go pub.serve(ln)
	}
	s.log.Info("netstack: published", "guest_port", guestPort, "host_port", port)
	return pub.Published, nil
}

func (s *Stack) canPublish(guestPort uint16) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.canPublishLocked(guestPort)
}

func (s *Stack) canPublishLocked(guestPort uint16) error {
	if s.closed {
		return errdefs.New(errdefs.ErrFailedPrecondition, "start the VM again", "the VM's network is stopped")
	}
	if !s.policy.Publish() {
		return errdefs.New(errdefs.ErrFailedPrecondition,
			"use --network-policy egress+published-ports or published-ports, or allowlist with --allow-publish",
			"network policy %s does not allow publishing ports", s.policy)
	}
	if p, ok := s.published[guestPort]; ok {
		return errdefs.New(errdefs.ErrAlreadyExists, "unpublish it first to change its host port",
			"guest port %d is already published on host port %d", guestPort, p.HostPort)
	}
	return nil
}

func listenError(err error, hostPort uint16) error {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return errdefs.Wrap(errdefs.ErrConflict, err, "pick another host port, or 0 for a free one", "host port %d is in use", hostPort)
	case errors.Is(err, syscall.EACCES):
		return errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "pick a host port above 1023, or 0 for a free one", "host port %d needs privileges", hostPort)
	}
	return errdefs.Wrap(errdefs.ErrUnavailable, err, "", "listening on host port %d", hostPort)
}

// Unpublish releases a published guest port: its host port closes and so
// do the connections it carries.
func (s *Stack) Unpublish(guestPort uint16) error {
	s.mu.Lock()
	pub, ok := s.published[guestPort]
	delete(s.published, guestPort)
	s.mu.Unlock()
	if !ok {
		return errdefs.New(errdefs.ErrNotFound, "list what is published first", "guest port %d is not published", guestPort)
	}
	pub.close()
	s.log.Info("netstack: unpublished", "guest_port", guestPort, "host_port", pub.HostPort)
	return nil
}

// Published lists the published ports by guest port.
func (s *Stack) Published() []Published {
	s.mu.Lock()
	out := make([]Published, 0, len(s.published))
	for _, p := range s.published {
		out = append(out, p.Published)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Published) int { return int(a.GuestPort) - int(b.GuestPort) })
	return out
}

func (p *publication) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if !p.add(c) {
			c.Close()
			return
		}
		go func() {
			defer p.remove(c)
			p.carry(c)
		}()
	}
}

// carry connects one host connection to the guest's port.
func (p *publication) carry(c net.Conn) {
	s := p.s
	peer, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	e := s.clog.add(Record{Time: time.Now(), Proto: string(netpolicy.TCP), Direction: dirIn, Addr: peer.Addr().Unmap().String(), Port: p.GuestPort,
		Allowed: true, Reason: "published on host port " + strconv.Itoa(int(p.HostPort))})
	ctx, cancel := context.WithTimeout(s.ctx, publishDialTimeout)
	g, err := gonet.DialContextTCP(ctx, s.st, tcpip.FullAddress{NIC: nicID, Addr: tcpAddr(s.opts.Guest.Addr()), Port: p.GuestPort}, ipv4.ProtocolNumber)
	cancel()
	if err != nil {
		c.Close()
		e.end("guest port " + strconv.Itoa(int(p.GuestPort)) + ": " + err.Error())
		return
	}
	r := &relay{e: e, proto: netpolicy.TCP, inbound: true, guest: g, remote: c}
	if !s.track(r) {
		r.cut("the network stopped")
		return
	}
	defer s.untrack(r)
	e.setOpen()
	pipe(e, g, c)
}

func (p *publication) add(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *publication) remove(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *publication) close() {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	for _, ln := range p.lns {
		ln.Close()
	}
	for c := range conns {
		c.Close()
	}
}
