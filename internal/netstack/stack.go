// Package netstack is a guest's network, run inside the process that
// starts the VM: a user-space TCP/IP stack (gVisor's netstack) on the other
// end of the guest's virtio-net device. Every connection the guest opens
// reaches the outside only through Go code here, where
// netpolicy.Decide rules on it; names are answered by the stack's own DNS
// (with allowlisted names pinned); guest TCP ports can be published on the
// host's loopback; and a bounded log records what the guest connected to.
// No root, no helper process.
//
//	s, err := netstack.New(netstack.Options{Policy: netpolicy.Egress()})
//	go s.Serve(ctx, qemuConn) // QEMU's -netdev stream connection
//	p, err := s.Publish(ctx, 8000, 0)
//	recs := s.Log()
//
// The guest side is static: address 10.0.2.15/24, gateway 10.0.2.2, DNS
// 10.0.2.3 (both answered by the stack itself). The stack carries IPv4
// TCP and UDP; ping reaches only the stack's own addresses.
package netstack

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/netpolicy"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// The guest network's addresses when Options leaves them empty. They are
// QEMU slirp's, which every guest image already expects.
var (
	DefaultGuest   = netip.MustParsePrefix("10.0.2.15/24")
	DefaultGateway = netip.MustParseAddr("10.0.2.2")
	DefaultDNS     = netip.MustParseAddr("10.0.2.3")
)

// Resolver looks names up for the guest; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Options configures a Stack. Only Policy is required.
type Options struct {
	Policy netpolicy.Policy
	// Guest, Gateway and DNS default to DefaultGuest, DefaultGateway and
	// DefaultDNS.
	Guest   netip.Prefix
	Gateway netip.Addr
	DNS     netip.Addr
	// MTU of the guest link; 0 means 1500.
	MTU int
	// Resolver answers the guest's DNS questions; nil means the host's
	// (net.DefaultResolver).
	Resolver Resolver
	// LogSize bounds the connection log; 0 means 512 records.
	LogSize int
	// DialTimeout bounds connecting to an allowed destination; 0 means 10 s.
	DialTimeout time.Duration
	Logger      *slog.Logger
}

// Stack is one guest's network. Its methods are safe for concurrent use.
type Stack struct {
	opts   Options
	log    *slog.Logger
	st     *stack.Stack
	link   *link
	ctx    context.Context
	cancel context.CancelFunc
	clog   *connLog
	// dial connects to an allowed destination (a field so that unit tests
	// can stand in for the internet).
	dial func(ctx context.Context, network, address string) (net.Conn, error)

	mu        sync.Mutex
	policy    netpolicy.Policy
	host      netpolicy.Host
	conns     map[*relay]struct{}
	pins      map[string][]netip.Addr // allowlisted name -> its first answers
	names     map[netip.Addr]string   // address -> the last name answered with it
	cache     map[string]cachedAnswer // unpinned lookups, briefly
	published map[uint16]*publication
	refused   map[flowKey]time.Time // recently logged refused UDP flows
	served    bool
	closed    bool
}

const nicID tcpip.NICID = 1

// New builds a stack for one guest. It reads the host's interfaces now
// (see RefreshHost) and does nothing else until Serve.
func New(opts Options) (*Stack, error) {
	if err := opts.Policy.Validate(); err != nil {
		return nil, err
	}
	if !opts.Policy.NIC() {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "a guest without network needs no stack", "network policy %s has no network", opts.Policy.Mode)
	}
	if !opts.Guest.IsValid() {
		opts.Guest = DefaultGuest
	}
	if !opts.Gateway.IsValid() {
		opts.Gateway = DefaultGateway
	}
	if !opts.DNS.IsValid() {
		opts.DNS = DefaultDNS
	}
	if !opts.Guest.Addr().Is4() || !opts.Gateway.Is4() || !opts.DNS.Is4() ||
		!opts.Guest.Contains(opts.Gateway) || !opts.Guest.Contains(opts.DNS) {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "", "guest network %s must be IPv4 and hold the gateway %s and DNS %s", opts.Guest, opts.Gateway, opts.DNS)
	}
	if opts.MTU == 0 {
		opts.MTU = 1500
	}
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	if opts.LogSize <= 0 {
		opts.LogSize = 512
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 10 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	host, err := netpolicy.ReadHost()
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrUnavailable, err, "", "reading the host's addresses")
	}
	s := &Stack{
		opts: opts, log: log, clog: newConnLog(opts.LogSize), dial: (&net.Dialer{}).DialContext,
		policy: opts.Policy, host: host,
		conns: map[*relay]struct{}{}, pins: map[string][]netip.Addr{}, names: map[netip.Addr]string{}, cache: map[string]cachedAnswer{},
		published: map[uint16]*publication{}, refused: map[flowKey]time.Time{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	gw, dns := tcpAddr(opts.Gateway), tcpAddr(opts.DNS)
	s.link = &link{
		mac:     tcpip.LinkAddress([]byte{0x5a, 0x94, 0xef, 0xe4, 0x0c, 0xee}),
		guestIP: tcpAddr(opts.Guest.Addr()),
		local:   func(a tcpip.Address) bool { return a == gw || a == dns },
		mtu:     uint32(opts.MTU),
	}
	if err := s.buildStack(); err != nil {
		s.cancel()
		return nil, err
	}
	if err := s.startDNS(); err != nil {
		s.st.Close()
		s.cancel()
		return nil, err
	}
	return s, nil
}

func (s *Stack) buildStack() error {
	s.st = stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4},
	})
	fail := func(what string, e tcpip.Error) error {
		return errdefs.New(errdefs.ErrInternal, "", "network stack: %s: %s", what, e)
	}
	sack := tcpip.TCPSACKEnabled(true)
	if e := s.st.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); e != nil {
		return fail("enabling SACK", e)
	}
	if e := s.st.CreateNIC(nicID, s.link); e != nil {
		return fail("creating the NIC", e)
	}
	bits := s.opts.Guest.Bits()
	for _, a := range []netip.Addr{s.opts.Gateway, s.opts.DNS} {
		pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpAddr(a), PrefixLen: bits}}
		if e := s.st.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); e != nil {
			return fail("adding "+a.String(), e)
		}
	}
	// Promiscuous mode hands the stack packets for every destination (the
	// forwarders below take them); spoofing lets it answer from those
	// destinations' addresses.
	if e := s.st.SetPromiscuousMode(nicID, true); e != nil {
		return fail("promiscuous mode", e)
	}
	if e := s.st.SetSpoofing(nicID, true); e != nil {
		return fail("spoofing", e)
	}
	subnet, err := tcpip.NewSubnet(tcpAddr(s.opts.Guest.Masked().Addr()), tcpip.MaskFromBytes(net.CIDRMask(bits, 32)))
	if err != nil {
		return fail("guest subnet", &tcpip.ErrBadAddress{})
	}
	s.st.SetRouteTable([]tcpip.Route{{Destination: subnet, NIC: nicID}})
	s.st.SetTransportProtocolHandler(tcp.ProtocolNumber, tcp.NewForwarder(s.st, 0, 1024, s.forwardTCP).HandlePacket)
	udpFwd := udp.NewForwarder(s.st, s.forwardUDP)
	s.st.SetTransportProtocolHandler(udp.ProtocolNumber, func(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
		if !s.admitUDP(id) {
			return false // the stack answers ICMP port unreachable
		}
		return udpFwd.HandlePacket(id, pkt)
	})
	return nil
}

// Serve runs the link over conn, QEMU's `-netdev stream` connection, until
// the connection ends (the VM stopped), ctx ends or Close. It may be
// called once.
func (s *Stack) Serve(ctx context.Context, conn net.Conn) error {
	s.mu.Lock()
	if s.closed || s.served {
		s.mu.Unlock()
		conn.Close()
		return errdefs.New(errdefs.ErrFailedPrecondition, "", "the network stack is closed or already serving")
	}
	s.served = true
	s.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	go s.refreshLoop()
	err := s.link.serve(conn)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// refreshLoop re-reads the host's interfaces now and then, so an address
// the host gains later (a VPN, a container bridge) is refused too.
func (s *Stack) refreshLoop() {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			if err := s.RefreshHost(); err != nil {
				s.log.Warn("netstack: reading the host's addresses", "err", err)
			}
		}
	}
}

// Close stops the stack: open connections and published ports close, the
// guest's link goes down.
func (s *Stack) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	pubs := make([]*publication, 0, len(s.published))
	for _, p := range s.published {
		pubs = append(pubs, p)
	}
	s.published = map[uint16]*publication{}
	rs := make([]*relay, 0, len(s.conns))
	for r := range s.conns {
		rs = append(rs, r)
	}
	s.mu.Unlock()
	s.cancel()
	for _, p := range pubs {
		p.close()
	}
	for _, r := range rs {
		r.cut("the network stopped")
	}
	s.link.Close()
	s.st.Close()
	return nil
}

// Policy returns the policy in force.
func (s *Stack) Policy() netpolicy.Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.policy
}

// SetPolicy changes the policy live. New connections follow it at once;
// open connections it refuses are cut, and published ports are released
// if it forbids publishing. Turning the network off needs a restart of
// the VM (the guest keeps its device): use ModePublish without
// publications for a network that carries nothing.
func (s *Stack) SetPolicy(p netpolicy.Policy) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if !p.NIC() {
		return errdefs.New(errdefs.ErrFailedPrecondition, "restart the VM with the new policy to remove its network device",
			"a running guest's network cannot be turned off")
	}
	s.mu.Lock()
	s.policy = p
	host := s.host
	var cut []*relay
	for r := range s.conns {
		if r.inbound {
			continue // a published port: publishing is handled below
		}
		if v := netpolicy.Decide(p, host, r.request(s.pinnedNamesLocked(r.addr))); !v.Allow {
			cut = append(cut, r)
		}
	}
	var pubs []*publication
	if !p.Publish() {
		for port, pub := range s.published {
			pubs = append(pubs, pub)
			delete(s.published, port)
		}
	}
	s.mu.Unlock()
	for _, r := range cut {
		r.cut("cut by a policy change")
	}
	for _, pub := range pubs {
		pub.close()
	}
	s.log.Info("netstack: policy changed", "policy", p.String(), "cut", len(cut), "unpublished", len(pubs))
	return nil
}

// RefreshHost re-reads the host's addresses and networks, which the policy
// refuses. The stack also does so every 10 s while it serves.
func (s *Stack) RefreshHost() error {
	h, err := netpolicy.ReadHost()
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.host = h
	s.mu.Unlock()
	return nil
}

// Host returns the host facts the policy currently uses.
func (s *Stack) Host() netpolicy.Host {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.host
}

// Log returns the connection log, oldest first, and how many records were
// ever written (more than len(records) once the ring has wrapped).
func (s *Stack) Log() (records []Record, total uint64) { return s.clog.records() }

// Info is the network as `pyro workspace network` shows it.
type Info struct {
	Policy    netpolicy.Policy `json:"policy"`
	GuestIP   string           `json:"guest_ip"`
	Gateway   string           `json:"gateway"`
	DNS       string           `json:"dns"`
	Published []Published      `json:"published_ports"`
	// BytesOut and BytesIn count every frame the guest sent and received.
	BytesOut uint64 `json:"bytes_out"`
	BytesIn  uint64 `json:"bytes_in"`
}

// Info describes the network now.
func (s *Stack) Info() Info {
	return Info{
		Policy: s.Policy(), GuestIP: s.opts.Guest.String(), Gateway: s.opts.Gateway.String(), DNS: s.opts.DNS.String(),
		Published: s.Published(), BytesOut: s.link.rxBytes.Load(), BytesIn: s.link.txBytes.Load(),
	}
}

// decide asks the policy about a connection to addr:port and returns the
// name the guest last resolved addr from, for the log.
func (s *Stack) decide(proto netpolicy.Proto, addr netip.Addr, port uint16) (netpolicy.Verdict, string) {
	s.mu.Lock()
	p, h := s.policy, s.host
	names := s.pinnedNamesLocked(addr)
	name := s.names[addr]
	s.mu.Unlock()
	return netpolicy.Decide(p, h, netpolicy.Request{Proto: proto, Addr: addr, Port: port, Names: names}), name
}

// pinnedNamesLocked lists the allowlisted names pinned to addr.
func (s *Stack) pinnedNamesLocked(addr netip.Addr) []string {
	var names []string
	for name, addrs := range s.pins {
		for _, a := range addrs {
			if a == addr {
				names = append(names, name)
				break
			}
		}
	}
	return names
}

func tcpAddr(a netip.Addr) tcpip.Address { return tcpip.AddrFromSlice(a.AsSlice()) }

func netipAddr(a tcpip.Address) netip.Addr {
	n, _ := netip.AddrFromSlice(a.AsSlice())
	return n.Unmap()
}
