package netstack

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/pyro-mcp/pyro/internal/netpolicy"
	"golang.org/x/net/dns/dnsmessage"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// The guest's DNS server, answered in this process on Options.DNS port 53
// (UDP). Only A questions reach the host's resolver; AAAA and every other
// type get an empty answer (the guest has no IPv6 and needs nothing else),
// so DNS itself carries nothing out that the policy did not allow.
// Answers pointing where the policy never lets the guest go (loopback, the
// host, its networks...) are dropped from the answer. Under allowlist, a
// name's first answers are pinned for the stack's life: later questions
// get the same answers however the name's records change (DNS rebinding).
const (
	dnsTimeout     = 5 * time.Second
	dnsCacheTTL    = 30 * time.Second
	dnsAnswerTTL   = 30 // seconds, in answers
	dnsMaxAnswers  = 16 // keeps a reply under 512 bytes
	dnsMaxPins     = 4096
	dnsMaxInFlight = 64
)

func (s *Stack) startDNS() error {
	c, err := gonet.DialUDP(s.st, &tcpip.FullAddress{NIC: nicID, Addr: tcpAddr(s.opts.DNS), Port: 53}, nil, ipv4.ProtocolNumber)
	if err != nil {
		return err
	}
	go s.serveDNS(c)
	return nil
}

func (s *Stack) serveDNS(c *gonet.UDPConn) {
	defer c.Close()
	stop := context.AfterFunc(s.ctx, func() { c.Close() })
	defer stop()
	sem := make(chan struct{}, dnsMaxInFlight)
	buf := make([]byte, 4096)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		select {
		case sem <- struct{}{}:
		default:
			continue // too many questions in flight: the guest retries
		}
		q := append([]byte(nil), buf[:n]...)
		go func() {
			defer func() { <-sem }()
			if resp := s.answerDNS(s.ctx, q); resp != nil {
				c.WriteTo(resp, from)
			}
		}()
	}
}

// answerDNS returns the reply to one query, or nil to stay silent.
func (s *Stack) answerDNS(ctx context.Context, query []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil || h.Response {
		return nil
	}
	reply := dnsmessage.Header{ID: h.ID, Response: true, OpCode: h.OpCode, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	q, err := p.Question()
	if err != nil {
		reply.RCode = dnsmessage.RCodeFormatError
		return build(reply, nil, nil)
	}
	if h.OpCode != 0 || q.Class != dnsmessage.ClassINET {
		reply.RCode = dnsmessage.RCodeNotImplemented
		return build(reply, &q, nil)
	}
	name, ok := netpolicy.CanonicalName(q.Name.String())
	if !ok {
		reply.RCode = dnsmessage.RCodeNameError
		return build(reply, &q, nil)
	}
	s.mu.Lock()
	pol, host := s.policy, s.host
	s.mu.Unlock()
	v := netpolicy.Decide(pol, host, netpolicy.Request{Proto: netpolicy.DNS, Names: []string{name}})
	if !v.Allow {
		if q.Type == dnsmessage.TypeA {
			s.clog.add(Record{Time: time.Now(), Proto: string(netpolicy.DNS), Direction: dirOut, Name: name, Reason: v.Reason}).end("")
		}
		reply.RCode = dnsmessage.RCodeRefused
		return build(reply, &q, nil)
	}
	addrs, err := s.resolve(ctx, name, pol.Mode == netpolicy.ModeAllowlist)
	rec := Record{Time: time.Now(), Proto: string(netpolicy.DNS), Direction: dirOut, Name: name, Allowed: true, Reason: v.Reason}
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			reply.RCode = dnsmessage.RCodeNameError
			rec.Error = "no such name"
		} else {
			reply.RCode = dnsmessage.RCodeServerFailure
			rec.Error = "lookup failed: " + err.Error()
		}
		if q.Type == dnsmessage.TypeA {
			s.clog.add(rec).end("")
		}
		return build(reply, &q, nil)
	}
	if q.Type != dnsmessage.TypeA {
		return build(reply, &q, nil) // the name exists, with no records of this type for the guest
	}
	var answers []netip.Addr
	refusal := ""
	for _, a := range addrs {
		v := netpolicy.Decide(pol, host, netpolicy.Request{Proto: netpolicy.DNS, Names: []string{name}, Addr: a})
		switch {
		case v.Allow && len(answers) < dnsMaxAnswers:
			answers = append(answers, a)
		case !v.Allow && refusal == "":
			refusal = v.Reason + " (" + a.String() + ")"
		}
	}
	if len(answers) > 0 {
		rec.Addr = answers[0].String()
		s.noteNames(name, answers)
	} else if refusal != "" {
		rec.Allowed, rec.Reason = false, "answer refused: "+refusal
	}
	s.clog.add(rec).end("")
	return build(reply, &q, answers)
}

// resolve looks name up with the host's resolver. With pin, the first
// successful answer is kept for good and returned from then on.
func (s *Stack) resolve(ctx context.Context, name string, pin bool) ([]netip.Addr, error) {
	s.mu.Lock()
	if addrs, ok := s.pins[name]; ok && pin {
		s.mu.Unlock()
		return addrs, nil
	}
	if c, ok := s.cache[name]; ok && !pin && time.Now().Before(c.until) {
		s.mu.Unlock()
		return c.addrs, c.err
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, dnsTimeout)
	defer cancel()
	raw, err := s.opts.Resolver.LookupNetIP(ctx, "ip4", name)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			s.remember(name, nil, err)
		}
		return nil, err
	}
	var addrs []netip.Addr
	for _, a := range raw {
		if a = a.Unmap(); a.Is4() {
			addrs = append(addrs, a)
		}
	}
	if pin {
		s.mu.Lock()
		if first, ok := s.pins[name]; ok {
			addrs = first // another question pinned it meanwhile
		} else if len(s.pins) < dnsMaxPins {
			s.pins[name] = addrs
		}
		s.mu.Unlock()
		return addrs, nil
	}
	s.remember(name, addrs, nil)
	return addrs, nil
}

// cachedAnswer keeps an unpinned lookup briefly, so that the A and AAAA
// questions a guest sends together cost one lookup.
type cachedAnswer struct {
	addrs []netip.Addr
	err   error
	until time.Time
}

func (s *Stack) remember(name string, addrs []netip.Addr, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cache) > dnsMaxPins {
		clear(s.cache)
	}
	s.cache[name] = cachedAnswer{addrs: addrs, err: err, until: time.Now().Add(dnsCacheTTL)}
}

// noteNames remembers which name the guest got each address from, for the
// connection log.
func (s *Stack) noteNames(name string, addrs []netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.names) > dnsMaxPins {
		clear(s.names)
	}
	for _, a := range addrs {
		s.names[a] = name
	}
}

func build(h dnsmessage.Header, q *dnsmessage.Question, answers []netip.Addr) []byte {
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), h)
	b.EnableCompression()
	if q == nil {
		out, _ := b.Finish()
		return out
	}
	if b.StartQuestions() != nil || b.Question(*q) != nil || b.StartAnswers() != nil {
		return nil
	}
	for _, a := range answers {
		rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: dnsAnswerTTL}
		if b.AResource(rh, dnsmessage.AResource{A: a.As4()}) != nil {
			return nil
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}
