package pyro_test

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro"
	"github.com/pyro-mcp/pyro/internal/guesttest"
)

// TestSDKNetwork: the policy round trip and a published port through the
// Go SDK, on a real guest.
func TestSDKNetwork(t *testing.T) {
	guesttest.Need(t)
	c := newClient(t)
	ctx := t.Context()
	if _, err := c.CreateWorkspace(ctx, pyro.CreateWorkspaceOptions{Environment: "debian:12",
		Shape: pyro.Shape{NetworkPolicy: "everything"}}); !errors.Is(err, pyro.ErrInvalidArgument) {
		t.Fatalf("bad policy: %v", err)
	}
	w, err := c.CreateWorkspace(ctx, pyro.CreateWorkspaceOptions{Environment: "debian:12-build",
		Shape: pyro.Shape{MemMiB: 512, NetworkPolicy: pyro.NetworkEgress}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.DeleteWorkspace(ctx, w.WorkspaceID)
	if w.NetworkPolicy != pyro.NetworkEgress || !w.Network {
		t.Errorf("created: policy %q network %v", w.NetworkPolicy, w.Network)
	}
	svc := pyro.ServiceStartOptions{Command: "python3 -m http.server 8000", Readiness: &pyro.Readiness{Type: pyro.ReadyTCP, Port: 8000},
		PublishedPorts: []pyro.PublishPort{{GuestPort: 8000}}}
	if _, err := c.StartService(ctx, w.WorkspaceID, "web", svc); !errors.Is(err, pyro.ErrFailedPrecondition) {
		t.Fatalf("publish under egress: %v", err)
	}
	if w, err = c.UpdateWorkspace(ctx, w.WorkspaceID, pyro.WorkspaceUpdateOptions{NetworkPolicy: pyro.NetworkEgressPublish}); err != nil {
		t.Fatal(err)
	}
	if w.NetworkPolicy != pyro.NetworkEgressPublish || w.Note != "" {
		t.Errorf("updated: policy %q note %q", w.NetworkPolicy, w.Note)
	}
	s, err := c.StartService(ctx, w.WorkspaceID, "web", svc)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.PublishedPorts) != 1 || s.PublishedPorts[0].HostAddress != "127.0.0.1" {
		t.Fatalf("published: %+v", s.PublishedPorts)
	}
	hc := &http.Client{Timeout: 20 * time.Second}
	resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/", s.PublishedPorts[0].HostPort))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET: %s", resp.Status)
	}
	n, err := c.WorkspaceNetwork(ctx, w.WorkspaceID)
	if err != nil {
		t.Fatal(err)
	}
	if n.Policy != pyro.NetworkEgressPublish || len(n.PublishedPorts) != 1 || n.PublishedPorts[0].Service != "web" || len(n.Connections) == 0 {
		t.Errorf("network: %+v", n)
	}
	if _, err := c.StopService(ctx, w.WorkspaceID, "web"); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.WorkspaceNetwork(ctx, w.WorkspaceID); len(n.PublishedPorts) != 0 {
		t.Errorf("after stop: %+v", n.PublishedPorts)
	}
}
