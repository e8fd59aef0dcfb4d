package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/netpolicy"
	"github.com/pyro-mcp/pyro/internal/netstack"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// The network control socket: requests the supervisor answers itself,
// because the guest's network stack lives in its process (vmm.Networked),
// not in the guest. One JSON NetRequest line per connection, answered by
// one JSON NetReply line. Errors keep their class and hint across the
// socket, as Ready's do.

// Network control operations.
const (
	NetOpInfo      = "info"       // the policy, published ports and connection log
	NetOpSetPolicy = "set_policy" // change the policy live
	NetOpPublish   = "publish"    // publish a guest port for an owner (a service)
	NetOpUnpublish = "unpublish"  // release every port of an owner, or one guest port
)

// NetRequest is one request on the network control socket.
type NetRequest struct {
	Op        string            `json:"op"`
	Policy    *netpolicy.Policy `json:"policy,omitempty"`
	Owner     string            `json:"owner,omitempty"`
	GuestPort uint16            `json:"guest_port,omitempty"`
	HostPort  uint16            `json:"host_port,omitempty"`
}

// NetPort is a published port and the owner it was published for.
type NetPort struct {
	netstack.Published
	Owner string `json:"owner,omitempty"`
}

// NetReply answers a NetRequest.
type NetReply struct {
	Error     string            `json:"error,omitempty"`
	ErrorCode string            `json:"error_code,omitempty"`
	Hint      string            `json:"hint,omitempty"`
	Info      *netstack.Info    `json:"info,omitempty"`
	Ports     []NetPort         `json:"ports,omitempty"`
	Log       []netstack.Record `json:"log,omitempty"`
	LogTotal  uint64            `json:"log_total,omitempty"`
}

// netCtl serves the network control socket of one machine.
type netCtl struct {
	st  *netstack.Stack
	log *slog.Logger

	mu     sync.Mutex
	owners map[uint16]string // guest port -> owner
}

// serveNet listens on path when m carries pyro's own network stack. The
// returned function stops it.
func serveNet(path string, m vmm.Machine, log *slog.Logger) func() {
	nw, ok := m.(vmm.Networked)
	if path == "" || !ok || nw.Network() == nil {
		return func() {}
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		log.Warn("listening on the network control socket", "err", err)
		return func() {}
	}
	n := &netCtl{st: nw.Network(), log: log, owners: map[uint16]string{}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go n.serve(c)
		}
	}()
	return func() {
		ln.Close()
		os.Remove(path)
	}
}

func (n *netCtl) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	var req NetRequest
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		return
	}
	var rep NetReply
	if err := json.Unmarshal(line, &req); err != nil {
		err = errdefs.Wrap(errdefs.ErrInvalidArgument, err, "", "bad network request")
		rep = NetReply{Error: err.Error(), ErrorCode: errdefs.Code(err), Hint: errdefs.HintOf(err)}
	} else {
		rep = n.handle(req)
	}
	data, _ := json.Marshal(rep)
	c.Write(append(data, '\n'))
}

func (n *netCtl) handle(req NetRequest) NetReply {
	var err error
	switch req.Op {
	case NetOpInfo:
	case NetOpSetPolicy:
		if req.Policy == nil {
			err = errdefs.New(errdefs.ErrInvalidArgument, "", "set_policy without a policy")
			break
		}
		err = n.st.SetPolicy(*req.Policy)
	case NetOpPublish:
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = n.st.Publish(ctx, req.GuestPort, req.HostPort)
		cancel()
		if err == nil {
			n.mu.Lock()
			n.owners[req.GuestPort] = req.Owner
			n.mu.Unlock()
		}
	case NetOpUnpublish:
		n.mu.Lock()
		var ports []uint16
		for p, o := range n.owners {
			if (req.Owner != "" && o == req.Owner) || (req.GuestPort != 0 && p == req.GuestPort) {
				ports = append(ports, p)
			}
		}
		n.mu.Unlock()
		for _, p := range ports {
			if e := n.st.Unpublish(p); e != nil && errdefs.ClassOf(e) != errdefs.ErrNotFound {
				err = errors.Join(err, e)
			}
		}
	default:
		err = errdefs.New(errdefs.ErrInvalidArgument, "", "unknown network request %q", req.Op)
	}
	if err != nil {
		return NetReply{Error: err.Error(), ErrorCode: errdefs.Code(err), Hint: errdefs.HintOf(err)}
	}
	info := n.st.Info()
	rep := NetReply{Info: &info}
	n.mu.Lock()
	for _, p := range info.Published {
		rep.Ports = append(rep.Ports, NetPort{Published: p, Owner: n.owners[p.GuestPort]})
	}
	// Ports the policy released (SetPolicy) are gone from the stack.
	for p := range n.owners {
		if !slices.ContainsFunc(info.Published, func(x netstack.Published) bool { return x.GuestPort == p }) {
			delete(n.owners, p)
		}
	}
	n.mu.Unlock()
	if req.Op == NetOpInfo {
		rep.Log, rep.LogTotal = n.st.Log()
	}
	return rep
}

// NetCall sends one request to the network control socket at path.
func NetCall(ctx context.Context, path string, req NetRequest) (*NetReply, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrUnavailable, err, "start the workspace again; its network runs with its VM",
			"the guest's network is not running")
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	data, _ := json.Marshal(req)
	if _, err := c.Write(append(data, '\n')); err != nil {
		return nil, fmt.Errorf("network request: %w", err)
	}
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrUnavailable, err, "", "network request %s got no answer", req.Op)
	}
	var rep NetReply
	if err := json.Unmarshal(line, &rep); err != nil {
		return nil, fmt.Errorf("network reply: %w", err)
	}
	if rep.Error != "" {
		return nil, errdefs.New(errdefs.FromCode(rep.ErrorCode), rep.Hint, "%s", rep.Error)
	}
	return &rep, nil
}
