package supervisor

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/netpolicy"
	"github.com/pyro-mcp/pyro/internal/netstack"
)

// netMachine is a machine whose network is a stack with no guest behind
// it: enough to publish (a host listener) and change policies.
type netMachine struct{ st *netstack.Stack }

func (m netMachine) Pid() int { return 0 }
func (m netMachine) AgentConn(context.Context) (io.ReadWriteCloser, error) {
	return nil, errors.New("none")
}
func (m netMachine) Wait() error              { return nil }
func (m netMachine) Kill() error              { return nil }
func (m netMachine) Network() *netstack.Stack { return m.st }

// TestNetControl: the control socket publishes for an owner, releases an
// owner's ports, changes the policy, and errors keep their class and hint.
func TestNetControl(t *testing.T) {
	p, err := netpolicy.New("egress+published-ports", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	st, err := netstack.New(netstack.Options{Policy: p})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sock := filepath.Join(t.TempDir(), "net.sock")
	stop := serveNet(sock, netMachine{st}, slog.New(slog.DiscardHandler))
	defer stop()
	ctx := t.Context()

	rep, err := NetCall(ctx, sock, NetRequest{Op: NetOpPublish, Owner: "web", GuestPort: 8000})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Ports) != 1 || rep.Ports[0].Owner != "web" || rep.Ports[0].HostPort == 0 || rep.Ports[0].HostAddress != "127.0.0.1" {
		t.Fatalf("publish: %+v", rep.Ports)
	}
	host := rep.Ports[0].HostPort
	if c, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", itoa(host))); err != nil {
		t.Errorf("published port not listening: %v", err)
	} else {
		c.Close()
	}
	_, err = NetCall(ctx, sock, NetRequest{Op: NetOpPublish, Owner: "api", GuestPort: 8000})
	if !errors.Is(err, errdefs.ErrAlreadyExists) || errdefs.HintOf(err) == "" {
		t.Errorf("publishing twice: %v (hint %q)", err, errdefs.HintOf(err))
	}
	if rep, err = NetCall(ctx, sock, NetRequest{Op: NetOpUnpublish, Owner: "web"}); err != nil || len(rep.Ports) != 0 {
		t.Errorf("unpublish: %+v %v", rep, err)
	}
	if _, err := http.Get("http://127.0.0.1:" + itoa(host) + "/"); err == nil {
		t.Error("the released port still answers")
	}
	egress := netpolicy.Egress()
	if rep, err = NetCall(ctx, sock, NetRequest{Op: NetOpSetPolicy, Policy: &egress}); err != nil || rep.Info.Policy.Mode != netpolicy.ModeEgress {
		t.Fatalf("set_policy: %+v %v", rep, err)
	}
	_, err = NetCall(ctx, sock, NetRequest{Op: NetOpPublish, Owner: "web", GuestPort: 8000})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("publishing under egress: %v", err)
	}
	off := netpolicy.Off()
	if _, err = NetCall(ctx, sock, NetRequest{Op: NetOpSetPolicy, Policy: &off}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("turning a running network off: %v", err)
	}
	if _, err = NetCall(ctx, sock, NetRequest{Op: "reboot"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("unknown op: %v", err)
	}
	if rep, err = NetCall(ctx, sock, NetRequest{Op: NetOpInfo}); err != nil || rep.Info == nil {
		t.Errorf("info: %+v %v", rep, err)
	}
	stop()
	if _, err = NetCall(ctx, sock, NetRequest{Op: NetOpInfo}); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("after stop: %v", err)
	}
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }
