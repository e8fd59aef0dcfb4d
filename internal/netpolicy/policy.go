// Package netpolicy owns the one decision every guest network asks: may
// this guest open this connection, resolve this name, publish a port. It
// is pure: the facts it needs about the host (its own addresses and the
// networks it is directly on) come in as a Host, read by ReadHost, so
// every backend and every test gets the same answer for the same input.
//
//	p, err := netpolicy.New("allowlist", []string{"198.18.0.5:8080", "example.com:443"}, false)
//	v := netpolicy.Decide(p, host, netpolicy.Request{Proto: netpolicy.TCP, Addr: dst, Port: 8080})
//	if !v.Allow { refuse(v.Reason) }
package netpolicy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// Mode is a network policy's kind.
type Mode string

const (
	// ModeOff gives the guest no network device at all.
	ModeOff Mode = "off"
	// ModeEgress lets the guest reach public internet addresses over TCP
	// and UDP, and resolve names.
	ModeEgress Mode = "egress"
	// ModeEgressPublish is egress, and the guest's ports may be published
	// on the host's loopback.
	ModeEgressPublish Mode = "egress+published-ports"
	// ModePublish lets the guest's ports be published on the host's
	// loopback, with no outbound connections and no name resolution.
	ModePublish Mode = "published-ports"
	// ModeAllowlist lets the guest reach only the destinations its rules
	// name; publishing ports needs Policy.AllowPublish.
	ModeAllowlist Mode = "allowlist"
)

// Modes lists every mode, in the order documentation shows them.
func Modes() []Mode {
	return []Mode{ModeOff, ModeEgress, ModeEgressPublish, ModePublish, ModeAllowlist}
}

// Policy is what one guest may do on the network. The zero value is
// invalid; use New, Off or Egress.
type Policy struct {
	Mode Mode `json:"mode"`
	// Allow holds the allowlist's rules (ModeAllowlist only).
	Allow []Rule `json:"allow,omitempty"`
	// AllowPublish lets an allowlist guest's ports be published.
	AllowPublish bool `json:"allow_publish,omitempty"`
}

// Off is the policy of a guest without a network.
func Off() Policy { return Policy{Mode: ModeOff} }

// Egress is the policy `--network` has always meant.
func Egress() Policy { return Policy{Mode: ModeEgress} }

// New builds and validates a policy from its user-facing parts: a mode
// name, --allow entries and --allow-publish.
func New(mode string, allow []string, allowPublish bool) (Policy, error) {
	p := Policy{Mode: Mode(strings.TrimSpace(mode)), AllowPublish: allowPublish}
	for _, a := range allow {
		r, err := ParseRule(a)
		if err != nil {
			return Policy{}, err
		}
		p.Allow = append(p.Allow, r)
	}
	if err := p.Validate(); err != nil {
		return Policy{}, err
	}
	return p, nil
}

// Validate reports whether p is a policy a backend can apply.
func (p Policy) Validate() error {
	if !slices.Contains(Modes(), p.Mode) {
		return errdefs.New(errdefs.ErrInvalidArgument, "use one of: "+modeList(),
			"unknown network policy %q", p.Mode)
	}
	if p.Mode == ModeAllowlist && len(p.Allow) == 0 {
		return errdefs.New(errdefs.ErrInvalidArgument,
			"name at least one destination with --allow HOST[:PORT] or --allow CIDR[:PORT]",
			"the allowlist policy has no entries")
	}
	if p.Mode != ModeAllowlist && len(p.Allow) > 0 {
		return errdefs.New(errdefs.ErrInvalidArgument, "use --network-policy allowlist with --allow",
			"--allow applies only to the allowlist policy, not %s", p.Mode)
	}
	if p.Mode != ModeAllowlist && p.AllowPublish {
		return errdefs.New(errdefs.ErrInvalidArgument,
			"egress+published-ports and published-ports allow publishing already; --allow-publish is for allowlist",
			"--allow-publish applies only to the allowlist policy, not %s", p.Mode)
	}
	for _, r := range p.Allow {
		if r.Name == "" && !r.Prefix.IsValid() {
			return errdefs.New(errdefs.ErrInvalidArgument, "", "allow rule has neither a name nor an address")
		}
	}
	return nil
}

func modeList() string {
	var s []string
	for _, m := range Modes() {
		s = append(s, string(m))
	}
	return strings.Join(s, ", ")
}

// NIC says whether the guest gets a network device.
func (p Policy) NIC() bool { return p.Mode != "" && p.Mode != ModeOff }

// Publish says whether the guest's ports may be published on the host.
func (p Policy) Publish() bool {
	return p.Mode == ModeEgressPublish || p.Mode == ModePublish || (p.Mode == ModeAllowlist && p.AllowPublish)
}

// String is the policy as a user would type it: "allowlist(198.18.0.5:8080, example.com)".
func (p Policy) String() string {
	if p.Mode != ModeAllowlist {
		return string(p.Mode)
	}
	var s []string
	for _, r := range p.Allow {
		s = append(s, r.String())
	}
	out := string(p.Mode) + "(" + strings.Join(s, ", ") + ")"
	if p.AllowPublish {
		out += "+publish"
	}
	return out
}

// Rule is one allowlist entry: a host name or an address prefix, and a
// port (0: any). A rule matches TCP and UDP alike.
type Rule struct {
	// Name is a lower-case host name without trailing dot; "*.example.com"
	// matches every name under example.com (not example.com itself).
	Name string
	// Prefix is the address or network when Name is empty; a single
	// address is a /32 (/128).
	Prefix netip.Prefix
	Port   uint16
}

// ParseRule reads HOST[:PORT], IP[:PORT], CIDR[:PORT], [IPv6]:PORT or
// [IPv6/BITS]:PORT.
func ParseRule(s string) (Rule, error) {
	bad := func(why string) (Rule, error) {
		return Rule{}, errdefs.New(errdefs.ErrInvalidArgument,
			"write HOST[:PORT] or CIDR[:PORT], e.g. example.com:443, 198.51.100.7, 203.0.113.0/24:80, [2001:db8::1]:443",
			"allow entry %q: %s", s, why)
	}
	in := strings.TrimSpace(s)
	host, port := in, ""
	switch {
	case strings.HasPrefix(in, "["):
		end := strings.Index(in, "]")
		if end < 0 {
			return bad("missing ]")
		}
		host, port = in[1:end], strings.TrimPrefix(in[end+1:], ":")
		if rest := in[end+1:]; rest != "" && !strings.HasPrefix(rest, ":") {
			return bad("unexpected text after ]")
		}
	case strings.Count(in, ":") == 1:
		host, port, _ = strings.Cut(in, ":")
	}
	if host == "" {
		return bad("no host")
	}
	var r Rule
	if port != "" || strings.HasSuffix(in, ":") {
		n, err := parsePort(port)
		if err != nil {
			return bad(err.Error())
		}
		r.Port = n
	}
	if strings.Contains(host, "/") {
		pfx, err := netip.ParsePrefix(host)
		if err != nil {
			return bad("not a CIDR network")
		}
		r.Prefix = unmapPrefix(pfx).Masked()
		return r, nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return bad("zones are not supported")
		}
		a = a.Unmap()
		r.Prefix = netip.PrefixFrom(a, a.BitLen())
		return r, nil
	}
	name, ok := CanonicalName(host)
	if !ok {
		return bad("not a host name, address or CIDR network")
	}
	r.Name = name
	return r, nil
}

func parsePort(s string) (uint16, error) {
	if s == "" {
		return 0, fmt.Errorf("empty port")
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("port %q is not a number", s)
		}
		n = n*10 + int(c-'0')
		if n > 65535 {
			break
		}
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %s is out of range 1-65535", s)
	}
	return uint16(n), nil
}

// CanonicalName lower-cases a DNS name and drops its trailing dot; ok is
// false unless it is a syntactically valid host name (a leading "*." is
// allowed, for rules).
func CanonicalName(s string) (name string, ok bool) {
	s = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
	if s == "" || len(s) > 253 {
		return "", false
	}
	labels := strings.Split(s, ".")
	for i, l := range labels {
		if i == 0 && l == "*" && len(labels) > 1 {
			continue
		}
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", false
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", false
			}
		}
	}
	// An all-numeric last label is an address, not a name (1.2.3 is neither).
	if last := labels[len(labels)-1]; strings.Trim(last, "0123456789") == "" {
		return "", false
	}
	return s, true
}

func unmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}

// String is the rule as ParseRule reads it.
func (r Rule) String() string {
	host := r.Name
	if host == "" {
		host = r.Prefix.String()
		if r.Prefix.IsSingleIP() {
			host = r.Prefix.Addr().String()
		}
		if r.Prefix.Addr().Is6() && r.Port != 0 {
			host = "[" + host + "]"
		}
	}
	if r.Port != 0 {
		return fmt.Sprintf("%s:%d", host, r.Port)
	}
	return host
}

// MarshalText writes the rule as a user would.
func (r Rule) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads what MarshalText wrote.
func (r *Rule) UnmarshalText(b []byte) error {
	v, err := ParseRule(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// MatchName says whether the rule names host (already canonical).
func (r Rule) MatchName(host string) bool {
	if r.Name == "" {
		return false
	}
	if suffix, ok := strings.CutPrefix(r.Name, "*"); ok {
		return strings.HasSuffix(host, suffix) && len(host) > len(suffix)
	}
	return r.Name == host
}

func (r Rule) matchPort(port uint16) bool { return r.Port == 0 || r.Port == port }
