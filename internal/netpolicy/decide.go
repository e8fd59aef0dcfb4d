package netpolicy

import (
	"net/netip"
	"slices"
)

// Proto is what a Request asks for.
type Proto string

const (
	TCP Proto = "tcp"
	UDP Proto = "udp"
	// DNS asks whether the guest may resolve Names[0] (Addr invalid), or
	// whether one answer, Addr, may be handed to it.
	DNS Proto = "dns"
)

// Request is one thing the guest tries to do.
type Request struct {
	Proto Proto
	// Addr is the destination (TCP, UDP) or a DNS answer being checked.
	Addr netip.Addr
	// Port is the destination port (TCP, UDP).
	Port uint16
	// Names is, for DNS, the name asked (one entry, canonical); for TCP and
	// UDP, the names whose pinned answers include Addr (see Pins), so that
	// a name rule can allow the connection.
	Names []string
}

// Verdict is Decide's answer. Reason is short and meant for the
// connection log: what allowed or refused the request.
type Verdict struct {
	Allow  bool
	Reason string
}

// Reasons Decide gives besides the special ranges' own.
const (
	ReasonOff          = "the network is off"
	ReasonNoEgress     = "no outbound traffic under published-ports"
	ReasonNotListed    = "not on the allowlist"
	ReasonPublic       = "public address"
	ReasonNameListed   = "name on the allowlist"
	ReasonNameUnlisted = "name not on the allowlist"
	ReasonResolve      = "resolving names is allowed"
)

// Decide is the policy: every connection a guest opens, every name it
// resolves and every answer it is given passes through here.
//
// Under egress, everything but the special ranges (see Special), the
// host's own addresses and the networks it is on is allowed. Under
// allowlist, a rule allows what it names; it overrides those refusals
// only for an address it names explicitly (its network lies inside the
// refused range: "10.1.2.3" or "10.1.0.0/16" yes, "0.0.0.0/0" no), and a
// name rule never does, so a name cannot be pointed at the host or its
// neighbours.
func Decide(p Policy, h Host, r Request) Verdict {
	switch p.Mode {
	case ModeEgress, ModeEgressPublish, ModePublish, ModeAllowlist:
	default:
		return Verdict{Reason: ReasonOff}
	}
	if r.Proto == DNS {
		return decideDNS(p, h, r)
	}
	if p.Mode == ModePublish {
		return Verdict{Reason: ReasonNoEgress}
	}
	hits := refusedRanges(r.Addr, h)
	if p.Mode != ModeAllowlist {
		if len(hits) > 0 {
			return Verdict{Reason: hits[0].Why}
		}
		return Verdict{Allow: true, Reason: ReasonPublic}
	}
	for _, rule := range p.Allow {
		if !rule.matchPort(r.Port) {
			continue
		}
		if rule.Name != "" {
			if len(hits) == 0 && slices.ContainsFunc(r.Names, rule.MatchName) {
				return Verdict{Allow: true, Reason: "allowed by " + rule.String()}
			}
			continue
		}
		if rule.Prefix.Contains(r.Addr) && explicit(rule.Prefix, hits) {
			return Verdict{Allow: true, Reason: "allowed by " + rule.String()}
		}
	}
	if len(hits) > 0 {
		return Verdict{Reason: hits[0].Why}
	}
	return Verdict{Reason: ReasonNotListed}
}

func decideDNS(p Policy, h Host, r Request) Verdict {
	if p.Mode == ModePublish {
		return Verdict{Reason: ReasonNoEgress}
	}
	name := ""
	if len(r.Names) > 0 {
		name = r.Names[0]
	}
	listed := p.Mode != ModeAllowlist || slices.ContainsFunc(p.Allow, func(rule Rule) bool { return rule.MatchName(name) })
	if !listed {
		return Verdict{Reason: ReasonNameUnlisted}
	}
	if !r.Addr.IsValid() {
		if p.Mode == ModeAllowlist {
			return Verdict{Allow: true, Reason: ReasonNameListed}
		}
		return Verdict{Allow: true, Reason: ReasonResolve}
	}
	// An answer: hand it over unless it points somewhere the guest may
	// never go by name. Only an explicit address rule (whatever its port)
	// lets such an answer through.
	hits := refusedRanges(r.Addr, h)
	if len(hits) == 0 {
		return Verdict{Allow: true, Reason: ReasonPublic}
	}
	if p.Mode == ModeAllowlist {
		for _, rule := range p.Allow {
			if rule.Name == "" && rule.Prefix.Contains(r.Addr) && explicit(rule.Prefix, hits) {
				return Verdict{Allow: true, Reason: "allowed by " + rule.String()}
			}
		}
	}
	return Verdict{Reason: hits[0].Why}
}

// explicit says whether rule names every refused range in hits
// explicitly: it lies inside each of them.
func explicit(rule netip.Prefix, hits []Range) bool {
	for _, h := range hits {
		if rule.Bits() < h.Prefix.Bits() || !h.Prefix.Contains(rule.Addr()) {
			return false
		}
	}
	return true
}

// Range is an address range a guest never reaches unless a rule names it
// explicitly, and why.
type Range struct {
	Prefix netip.Prefix
	Why    string
}

// special lists the ranges a guest never reaches unless a rule names them
// explicitly. Order matters only for the reason given first.
var special = []Range{
	{netip.MustParsePrefix("0.0.0.0/8"), "this-network address (0.0.0.0/8)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private network (RFC 1918)"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private network (RFC 1918)"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private network (RFC 1918)"},
	{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT (RFC 6598)"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local (cloud metadata endpoints live here)"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved (240.0.0.0/4)"},
	{netip.MustParsePrefix("::/128"), "unspecified address"},
	{netip.MustParsePrefix("::1/128"), "IPv6 loopback"},
	{netip.MustParsePrefix("fc00::/7"), "IPv6 unique local"},
	{netip.MustParsePrefix("fe80::/10"), "IPv6 link-local"},
	{netip.MustParsePrefix("ff00::/8"), "IPv6 multicast"},
}

// Special returns the fixed always-refused ranges, for documentation and
// `pyro workspace network`. The host's own addresses and networks come on
// top (see Host).
func Special() []Range { return slices.Clone(special) }

// refusedRanges returns every always-refused range a contains: special
// ranges, the host's own addresses, the networks it is on. An invalid
// address is refused as unspecified.
func refusedRanges(a netip.Addr, h Host) []Range {
	if !a.IsValid() {
		return []Range{{netip.PrefixFrom(netip.IPv4Unspecified(), 0), "no address"}}
	}
	a = a.Unmap().WithZone("")
	var hits []Range
	for _, s := range special {
		if s.Prefix.Contains(a) {
			hits = append(hits, s)
		}
	}
	for _, ha := range h.Addrs {
		if ha == a {
			hits = append(hits, Range{netip.PrefixFrom(a, a.BitLen()), "this host's own address"})
			break
		}
	}
	for _, n := range h.Subnets {
		if n.Contains(a) {
			hits = append(hits, Range{n, "a network this host is on (" + n.String() + ")"})
		}
	}
	return hits
}
