package netstack

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pyro-mcp/pyro/internal/netpolicy"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

const (
	dirOut = "out"
	dirIn  = "in"

	// udpIdle ends a UDP flow nobody has used for this long.
	udpIdle = 60 * time.Second
	// refusedQuiet is how long a refused UDP flow stays out of the log
	// after it was logged once (a guest retrying would flood it).
	refusedQuiet = 30 * time.Second
	// maxConns bounds the open connections of one guest (each holds a
	// host socket).
	maxConns = 4096
	// reasonTooMany is logged when maxConns is reached.
	reasonTooMany = "too many open connections"
)

// relay is one open connection between the guest and the host side.
type relay struct {
	e       *entry
	proto   netpolicy.Proto
	addr    netip.Addr // destination (outbound)
	port    uint16
	inbound bool // a connection to a published port
	guest   net.Conn
	remote  net.Conn
}

func (r *relay) request(names []string) netpolicy.Request {
	return netpolicy.Request{Proto: r.proto, Addr: r.addr, Port: r.port, Names: names}
}

// cut ends the relay at once; why goes to the log.
func (r *relay) cut(why string) {
	r.e.end(why)
	r.guest.Close()
	r.remote.Close()
}

func (s *Stack) track(r *relay) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[r] = struct{}{}
	return true
}

func (s *Stack) full() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns) >= maxConns
}

func (s *Stack) untrack(r *relay) {
	s.mu.Lock()
	delete(s.conns, r)
	s.mu.Unlock()
}

// forwardTCP handles a guest's SYN (the forwarder calls it in its own
// goroutine, once per connection attempt): ask the policy, connect to the
// destination, and only then complete the guest's handshake, so a refusal
// or an unreachable destination reaches the guest as a RST.
func (s *Stack) forwardTCP(req *tcp.ForwarderRequest) {
	id := req.ID()
	addr, port := netipAddr(id.LocalAddress), id.LocalPort
	v, name := s.decide(netpolicy.TCP, addr, port)
	if v.Allow && s.full() {
		v = netpolicy.Verdict{Reason: reasonTooMany}
	}
	e := s.clog.add(Record{Time: time.Now(), Proto: string(netpolicy.TCP), Direction: dirOut,
		Addr: addr.String(), Port: port, Name: name, Allowed: v.Allow, Reason: v.Reason})
	if !v.Allow {
		e.end("") // before the guest hears of it, so the log is never behind
		req.Complete(true)
		s.log.Debug("netstack: refused", "proto", "tcp", "dst", addr, "port", port, "reason", v.Reason)
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.DialTimeout)
	remote, err := s.dial(ctx, "tcp", netip.AddrPortFrom(addr, port).String())
	cancel()
	if err != nil {
		e.end(dialError(err))
		req.Complete(true)
		return
	}
	var wq waiter.Queue
	ep, terr := req.CreateEndpoint(&wq)
	req.Complete(false)
	if terr != nil {
		remote.Close()
		e.end("guest side: " + terr.String())
		return
	}
	r := &relay{e: e, proto: netpolicy.TCP, addr: addr, port: port, guest: gonet.NewTCPConn(&wq, ep), remote: remote}
	if !s.adopt(r) {
		return
	}
	defer s.untrack(r)
	e.setOpen()
	pipe(r.e, r.guest, r.remote)
}

// adopt tracks a new outbound relay so that SetPolicy and Close can cut
// it. The policy is asked again once it is tracked: a SetPolicy that ran
// while the connection was being set up did not see it.
func (s *Stack) adopt(r *relay) bool {
	if !s.track(r) {
		r.cut("the network stopped")
		return false
	}
	if v, _ := s.decide(r.proto, r.addr, r.port); !v.Allow {
		s.untrack(r)
		r.cut("cut by a policy change")
		return false
	}
	return true
}

// pipe copies both ways between a guest-side and a host-side stream
// connection, counting bytes into e, passing half-closes on, and returns
// when both directions are done.
func pipe(e *entry, guest, remote net.Conn) {
	var wg sync.WaitGroup
	var failed atomic.Bool
	one := func(dst, src net.Conn, n *atomic.Int64) {
		defer wg.Done()
		_, err := io.CopyBuffer(countWriter{dst, n}, src, make([]byte, 64<<10))
		if err != nil && !failed.Swap(true) {
			// A reset or a failure on one side ends both.
			guest.Close()
			remote.Close()
			return
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}
	wg.Add(2)
	go one(remote, guest, &e.out)
	go one(guest, remote, &e.in)
	wg.Wait()
	guest.Close()
	remote.Close()
	e.end("")
}

type countWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// dialError words a failed connection to an allowed destination for the
// log.
func dialError(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "the destination refused the connection"
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		return "the destination is unreachable from the host"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timed out connecting"
	}
	return err.Error()
}

type flowKey struct{ src, dst netip.AddrPort }

func flowOf(id stack.TransportEndpointID) flowKey {
	return flowKey{
		src: netip.AddrPortFrom(netipAddr(id.RemoteAddress), id.RemotePort),
		dst: netip.AddrPortFrom(netipAddr(id.LocalAddress), id.LocalPort),
	}
}

// admitUDP runs for a UDP packet that belongs to no open flow. A refused
// one is logged (once per flow and quiet period) and answered with ICMP
// port unreachable, so the guest's socket fails at once.
func (s *Stack) admitUDP(id stack.TransportEndpointID) bool {
	f := flowOf(id)
	v, name := s.decide(netpolicy.UDP, f.dst.Addr(), f.dst.Port())
	if v.Allow {
		return true
	}
	now := time.Now()
	s.mu.Lock()
	last, seen := s.refused[f]
	if !seen || now.Sub(last) > refusedQuiet {
		if len(s.refused) > 1024 {
			clear(s.refused)
		}
		s.refused[f] = now
	}
	s.mu.Unlock()
	if !seen || now.Sub(last) > refusedQuiet {
		e := s.clog.add(Record{Time: now, Proto: string(netpolicy.UDP), Direction: dirOut,
			Addr: f.dst.Addr().String(), Port: f.dst.Port(), Name: name, Reason: v.Reason})
		e.end("")
	}
	return false
}

// forwardUDP opens a flow for an allowed first packet (the forwarder calls
// it synchronously; later packets of the flow go straight to its
// endpoint).
func (s *Stack) forwardUDP(req *udp.ForwarderRequest) {
	f := flowOf(req.ID())
	addr, port := f.dst.Addr(), f.dst.Port()
	v, name := s.decide(netpolicy.UDP, addr, port)
	if v.Allow && s.full() {
		v = netpolicy.Verdict{Reason: reasonTooMany}
	}
	e := s.clog.add(Record{Time: time.Now(), Proto: string(netpolicy.UDP), Direction: dirOut,
		Addr: addr.String(), Port: port, Name: name, Allowed: v.Allow, Reason: v.Reason})
	if !v.Allow { // the policy changed since admitUDP, or too many flows
		e.end("")
		return
	}
	var wq waiter.Queue
	ep, terr := req.CreateEndpoint(&wq)
	if terr != nil {
		e.end("guest side: " + terr.String())
		return
	}
	guest := gonet.NewUDPConn(&wq, ep)
	remote, err := s.dial(s.ctx, "udp", f.dst.String())
	if err != nil {
		guest.Close()
		e.end(dialError(err))
		return
	}
	r := &relay{e: e, proto: netpolicy.UDP, addr: addr, port: port, guest: guest, remote: remote}
	if !s.adopt(r) {
		return
	}
	e.setOpen()
	go func() {
		defer s.untrack(r)
		datagrams(e, guest, remote)
	}()
}

// datagrams relays a UDP flow both ways until it has been idle for
// udpIdle or either side fails.
func datagrams(e *entry, guest, remote net.Conn) {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	one := func(dst, src net.Conn, n *atomic.Int64) {
		defer wg.Done()
		buf := make([]byte, 65536)
		for {
			src.SetReadDeadline(time.Now().Add(udpIdle))
			k, err := src.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() && time.Since(time.Unix(0, last.Load())) < udpIdle {
					continue
				}
				guest.Close()
				remote.Close()
				return
			}
			last.Store(time.Now().UnixNano())
			if _, err := dst.Write(buf[:k]); err == nil {
				n.Add(int64(k))
			}
		}
	}
	wg.Add(2)
	go one(remote, guest, &e.out)
	go one(guest, remote, &e.in)
	wg.Wait()
	e.end("")
}
