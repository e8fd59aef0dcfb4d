package netstack

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// link is the stack's one ethernet port: the other end of the guest's
// virtio-net device, carried over QEMU's `-netdev stream` socket. The wire
// format (QEMU's net/stream.c, and gvisor-tap-vsock's "qemu" protocol) is a
// 4-byte big-endian length followed by one ethernet frame, no virtio-net
// header, in both directions.
type link struct {
	mac     tcpip.LinkAddress
	guestIP tcpip.Address
	local   func(tcpip.Address) bool // addresses the stack itself answers ping for
	mtu     uint32

	mu         sync.Mutex // guards dispatcher and conn
	dispatcher stack.NetworkDispatcher
	conn       net.Conn

	wmu  sync.Mutex // serialises frame writes
	wbuf []byte

	rxBytes, txBytes atomic.Uint64
}

// maxFrame bounds a frame read from QEMU before it is allocated: an MTU
// of up to 64 KiB plus the ethernet header.
const maxFrame = 65536 + header.EthernetMinimumSize

var _ stack.LinkEndpoint = (*link)(nil)

func (l *link) MTU() uint32                        { return l.mtu }
func (l *link) SetMTU(mtu uint32)                  { l.mtu = mtu }
func (l *link) MaxHeaderLength() uint16            { return header.EthernetMinimumSize }
func (l *link) LinkAddress() tcpip.LinkAddress     { return l.mac }
func (l *link) SetLinkAddress(a tcpip.LinkAddress) { l.mac = a }
func (l *link) Capabilities() stack.LinkEndpointCapabilities {
	// The guest's kernel checks what it receives; QEMU's stream carries
	// frames without corrupting them.
	return stack.CapabilityResolutionRequired | stack.CapabilityRXChecksumOffload
}
func (l *link) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }
func (l *link) Wait()                                   {}
func (l *link) SetOnCloseAction(func())                 {}

func (l *link) Attach(d stack.NetworkDispatcher) {
	l.mu.Lock()
	l.dispatcher = d
	l.mu.Unlock()
}

func (l *link) IsAttached() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dispatcher != nil
}

func (l *link) Close() {
	l.mu.Lock()
	c := l.conn
	l.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

func (l *link) AddHeader(pkt *stack.PacketBuffer) {
	eth := header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize))
	eth.Encode(&header.EthernetFields{
		SrcAddr: l.mac,
		DstAddr: pkt.EgressRoute.RemoteLinkAddress,
		Type:    pkt.NetworkProtocolNumber,
	})
}

func (l *link) ParseHeader(pkt *stack.PacketBuffer) bool {
	_, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	return ok
}

// WritePackets sends frames to the guest, batched into one write.
func (l *link) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	l.mu.Lock()
	c := l.conn
	l.mu.Unlock()
	if c == nil {
		// No wire yet (QEMU has not connected) or any more: frames are lost,
		// as on an unplugged cable, and ARP or TCP retry.
		return pkts.Len(), nil
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	buf := l.wbuf[:0]
	n := 0
	for _, pkt := range pkts.AsSlice() {
		if l.dropOutbound(pkt) {
			n++
			continue
		}
		size := pkt.Size()
		buf = binary.BigEndian.AppendUint32(buf, uint32(size))
		for _, v := range pkt.AsSlices() {
			buf = append(buf, v...)
		}
		n++
	}
	l.wbuf = buf
	if len(buf) == 0 {
		return n, nil
	}
	if _, err := c.Write(buf); err != nil {
		return 0, &tcpip.ErrClosedForSend{}
	}
	l.txBytes.Add(uint64(len(buf)))
	if cap(l.wbuf) > 1<<20 {
		l.wbuf = nil
	}
	return n, nil
}

// dropOutbound keeps the stack, which answers ARP for any address in
// promiscuous mode, from claiming the guest's own address.
func (l *link) dropOutbound(pkt *stack.PacketBuffer) bool {
	if pkt.NetworkProtocolNumber != header.ARPProtocolNumber {
		return false
	}
	h := header.ARP(pkt.NetworkHeader().Slice())
	return h.IsValid() && h.Op() == header.ARPReply && tcpip.AddrFromSlice(h.ProtocolAddressSender()) == l.guestIP
}

// serve reads frames from c and hands them to the stack until c fails or
// is closed. It returns nil on a clean end of stream.
func (l *link) serve(c net.Conn) error {
	if err := l.connect(c); err != nil {
		c.Close()
		return err
	}
	return l.run()
}

// connect makes c the link's wire; frames the stack sends go to it from now.
func (l *link) connect(c net.Conn) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		return errors.New("the link is already connected")
	}
	l.conn = c
	return nil
}

// run reads frames from the connected wire until it ends.
func (l *link) run() error {
	l.mu.Lock()
	c, d := l.conn, l.dispatcher
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.conn = nil
		l.mu.Unlock()
		c.Close()
	}()
	r := bufio.NewReaderSize(c, 256<<10)
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("reading a frame length: %w", err)
		}
		size := binary.BigEndian.Uint32(hdr[:])
		if size > maxFrame {
			return fmt.Errorf("frame of %d bytes is larger than %d", size, maxFrame)
		}
		frame := make([]byte, size)
		if _, err := io.ReadFull(r, frame); err != nil {
			return fmt.Errorf("reading a frame: %w", err)
		}
		l.rxBytes.Add(uint64(size) + 4)
		l.deliver(d, frame)
	}
}

func (l *link) deliver(d stack.NetworkDispatcher, frame []byte) {
	if len(frame) < header.EthernetMinimumSize || d == nil {
		return
	}
	eth := header.Ethernet(frame)
	dst := eth.DestinationAddress()
	if dst != l.mac && dst != header.EthernetBroadcastAddress {
		return
	}
	if eth.Type() == header.IPv4ProtocolNumber && l.foreignPing(frame[header.EthernetMinimumSize:]) {
		return
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	defer pkt.DecRef()
	if !l.ParseHeader(pkt) {
		return
	}
	if dst == header.EthernetBroadcastAddress {
		pkt.PktType = tcpip.PacketBroadcast
	} else {
		pkt.PktType = tcpip.PacketHost
	}
	d.DeliverNetworkPacket(eth.Type(), pkt)
}

// foreignPing says whether ip is an ICMP echo request to an address the
// stack does not own. In promiscuous mode the stack would answer it
// itself, telling the guest that every host on earth is up; it is dropped
// instead (ping is not carried beyond the stack).
func (l *link) foreignPing(ip []byte) bool {
	h := header.IPv4(ip)
	if !h.IsValid(len(ip)) || h.TransportProtocol() != header.ICMPv4ProtocolNumber {
		return false
	}
	icmp := header.ICMPv4(h.Payload())
	if len(icmp) < header.ICMPv4MinimumSize || icmp.Type() != header.ICMPv4Echo {
		return false
	}
	return !l.local(h.DestinationAddress())
}
