package agent

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"syscall"
	"testing"

	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// fakeOS records what identity would change in a guest.
type fakeOS struct {
	entropy  []byte
	clock    int64
	hostname string
	id       string
	disks    *DiskParams
	order    []string
}

func useFakeOS(t *testing.T) *fakeOS {
	f := &fakeOS{}
	saved := guestOS
	t.Cleanup(func() { guestOS = saved })
	guestOS.addEntropy = func(b []byte) error { f.entropy = b; f.order = append(f.order, "entropy"); return nil }
	guestOS.setClock = func(n int64) error { f.clock = n; f.order = append(f.order, "clock"); return nil }
	guestOS.setHostname = func(h string) error { f.hostname = h; f.order = append(f.order, "hostname"); return nil }
	guestOS.writeMachineID = func(id string) error { f.id = id; f.order = append(f.order, "machine-id"); return nil }
	guestOS.mountDisks = func(_ *slog.Logger, p DiskParams) error { f.disks = &p; f.order = append(f.order, "disks"); return nil }
	return f
}

func serveGuest(t *testing.T) *agentproto.Client {
	t.Helper()
	root := t.TempDir()
	host, guest := net.Pipe()
	done := make(chan error, 1)
	// A Reaper that never reaps: only its presence marks a guest. A real
	// one would collect every child of this test process, exit statuses
	// the other tests wait for included.
	h := NewHandler(Config{FSRoot: root, Reap: &Reaper{waiters: map[int]chan syscall.WaitStatus{}}})
	go func() { done <- agentproto.Serve(context.Background(), guest, h) }()
	c, err := agentproto.NewClient(t.Context(), host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); <-done })
	return c
}

// A template's guest refuses every command until it has been given its
// identity; identity applies randomness and the clock first.
func TestTemplateGate(t *testing.T) {
	f := useFakeOS(t)
	c := serveGuest(t)
	ctx := t.Context()
	if _, err := c.Quiesce(ctx, agentproto.QuiesceRequest{Template: true}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Exec(ctx, agentproto.ExecRequest{Argv: []string{"true"}}, nil, nil, nil)
	if !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("exec before identity: %v, want failed_precondition", err)
	}
	if _, err := c.Ping(ctx); err != nil {
		t.Fatalf("ping before identity: %v", err)
	}
	if _, err := c.Identity(ctx, agentproto.IdentityRequest{Entropy: []byte("short")}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("identity with 5 bytes of entropy: %v", err)
	}
	req := agentproto.IdentityRequest{Entropy: make([]byte, 64), UnixNano: 1_900_000_000e9, Hostname: "pyro-abcd",
		MachineID: "0123456789abcdef0123456789abcdef", Disks: "pyro_wsdisk=pyro-ws pyro_basedisk=pyro-base pyro_wschown=1000:1000"}
	req.Entropy[0] = 7
	if _, err := c.Identity(ctx, req); err != nil {
		t.Fatal(err)
	}
	if f.entropy[0] != 7 || f.clock != req.UnixNano || f.hostname != "pyro-abcd" || f.id != req.MachineID {
		t.Errorf("identity applied %+v", f)
	}
	if f.disks == nil || f.disks.Workspace != "pyro-ws" || f.disks.Baseline != "pyro-base" || f.disks.Chown != "1000:1000" {
		t.Errorf("disks: %+v", f.disks)
	}
	want := []string{"entropy", "clock", "hostname", "machine-id", "disks"}
	if len(f.order) != len(want) {
		t.Fatalf("order %v, want %v", f.order, want)
	}
	for i := range want {
		if f.order[i] != want[i] {
			t.Fatalf("order %v, want %v", f.order, want)
		}
	}
	// The gate is lifted (a call that starts no process: this Reaper
	// never reaps).
	if _, err := c.Activity(ctx); err != nil {
		t.Fatalf("a request after identity: %v", err)
	}
}
