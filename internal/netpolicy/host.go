package netpolicy

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
)

// Host is what Decide must know about the machine the guest runs on: a
// guest never reaches the host's own addresses, nor any network the host
// is directly connected to (its LAN, a container bridge, a VPN), unless a
// rule names them explicitly.
type Host struct {
	Addrs   []netip.Addr   // every address of every interface, up or down
	Subnets []netip.Prefix // the network of each of those addresses
}

// ReadHost reads the interfaces of the network namespace the calling
// thread is in. Call it again when the host's addresses may have changed.
func ReadHost() (Host, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return Host{}, fmt.Errorf("listing the host's interfaces: %w", err)
	}
	var h Host
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			return Host{}, fmt.Errorf("listing the addresses of %s: %w", ifc.Name, err)
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			h.add(ipn)
		}
	}
	return h, nil
}

func (h *Host) add(ipn *net.IPNet) {
	a, ok := netip.AddrFromSlice(ipn.IP)
	if !ok {
		return
	}
	a = a.Unmap()
	ones, _ := ipn.Mask.Size()
	if a.Is4() && ones > 32 {
		ones -= 96
	}
	if !slices.Contains(h.Addrs, a) {
		h.Addrs = append(h.Addrs, a)
	}
	if p := netip.PrefixFrom(a, ones).Masked(); p.IsValid() && !slices.Contains(h.Subnets, p) {
		h.Subnets = append(h.Subnets, p)
	}
}
