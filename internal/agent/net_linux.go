package agent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// linkUp sets IFF_UP on an interface.
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s flags: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s up: %w", name, err)
	}
	return nil
}

// configureNet gives eth0 its address, a default route and resolv.conf:
// minbase has no DHCP client or iproute2, so the agent does it itself.
func configureNet(p BootParams) error {
	ip, ipn, err := net.ParseCIDR(p.IP)
	if err != nil {
		return fmt.Errorf("pyro_ip %q: %w", p.IP, err)
	}
	const dev = "eth0"
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := net.InterfaceByName(dev); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear (is virtio_net loaded?)", dev)
		}
		time.Sleep(10 * time.Millisecond)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for _, set := range []struct {
		req uint
		ip  net.IP
	}{{unix.SIOCSIFADDR, ip.To4()}, {unix.SIOCSIFNETMASK, net.IP(ipn.Mask).To4()}} {
		ifr, _ := unix.NewIfreq(dev)
		if err := ifr.SetInet4Addr(set.ip); err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, set.req, ifr); err != nil {
			return fmt.Errorf("%s address: %w", dev, err)
		}
	}
	if err := linkUp(dev); err != nil {
		return err
	}
	if p.Gateway != "" {
		ifc, _ := net.InterfaceByName(dev)
		if err := addDefaultRoute(net.ParseIP(p.Gateway).To4(), ifc.Index); err != nil {
			return fmt.Errorf("default route via %s: %w", p.Gateway, err)
		}
	}
	if p.DNS != "" {
		os.Remove("/etc/resolv.conf") // may be a dangling symlink
		return os.WriteFile("/etc/resolv.conf", []byte("nameserver "+p.DNS+"\n"), 0o644)
	}
	return nil
}

// addDefaultRoute sends one RTM_NEWROUTE over rtnetlink and reads the ack.
func addDefaultRoute(gw net.IP, ifindex int) error {
	if gw == nil {
		return errors.New("not an IPv4 address")
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	attr := func(typ uint16, data []byte) []byte {
		b := make([]byte, 4, 4+len(data))
		*(*uint16)(unsafePointer(&b[0])) = uint16(4 + len(data))
		*(*uint16)(unsafePointer(&b[2])) = typ
		return append(b, data...)
	}
	oif := make([]byte, 4)
	*(*uint32)(unsafePointer(&oif[0])) = uint32(ifindex)
	rtm := []byte{unix.AF_INET, 0, 0, 0, unix.RT_TABLE_MAIN, unix.RTPROT_BOOT, unix.RT_SCOPE_UNIVERSE, unix.RTN_UNICAST, 0, 0, 0, 0}
	body := append(rtm, attr(unix.RTA_GATEWAY, gw)...)
	body = append(body, attr(unix.RTA_OIF, oif)...)
	msg := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(body))
	hdr := (*unix.NlMsghdr)(unsafePointer(&msg[0]))
	hdr.Len = uint32(unix.NLMSG_HDRLEN + len(body))
	hdr.Type = unix.RTM_NEWROUTE
	hdr.Flags = unix.NLM_F_REQUEST | unix.NLM_F_CREATE | unix.NLM_F_EXCL | unix.NLM_F_ACK
	hdr.Seq = 1
	msg = append(msg, body...)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return err
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if m.Header.Type == unix.NLMSG_ERROR && len(m.Data) >= 4 {
			if code := int32(*(*uint32)(unsafePointer(&m.Data[0]))); code != 0 {
				return unix.Errno(-code)
			}
		}
	}
	return nil
}
