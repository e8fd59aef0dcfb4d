package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestMCPNetwork: a policy round trip and a published port through MCP.
func TestMCPNetwork(t *testing.T) {
	needGuestHere(t)
	m := startMCP(t)
	ws := m.ok(t, "workspace_create", map[string]any{"environment": "debian:12-build", "mem_mib": 512, "network_policy": "published-ports"})
	id, _ := ws["workspace_id"].(string)
	defer m.ok(t, "workspace_delete", map[string]any{"workspace_id": id})
	if ws["network_policy"] != "published-ports" {
		t.Fatalf("workspace_create: %v", ws)
	}
	svc := m.ok(t, "service_start", map[string]any{"workspace_id": id, "name": "web", "command": "python3 -m http.server 8000",
		"readiness": map[string]any{"type": "tcp", "port": 8000}, "published_ports": []any{map[string]any{"guest_port": 8000}}})
	ports, _ := svc["published_ports"].([]any)
	if len(ports) != 1 {
		t.Fatalf("service_start: %v", svc)
	}
	hostPort := ports[0].(map[string]any)["host_port"]
	c := &http.Client{Timeout: 20 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%v/", hostPort))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Directory listing") {
		t.Errorf("GET: %s %q", resp.Status, body)
	}
	n := m.ok(t, "workspace_network", map[string]any{"workspace_id": id})
	if pp, _ := n["published_ports"].([]any); n["policy"] != "published-ports" || len(pp) != 1 || pp[0].(map[string]any)["service"] != "web" {
		t.Errorf("workspace_network: %v", n)
	}
	if u := m.ok(t, "workspace_update", map[string]any{"workspace_id": id, "network_policy": "egress"}); u["network_policy"] != "egress" {
		t.Errorf("workspace_update: %v", u)
	}
	if n := m.ok(t, "workspace_network", map[string]any{"workspace_id": id}); len(n["published_ports"].([]any)) != 0 || n["live_policy"] != "egress" {
		t.Errorf("after update: %v", n)
	}
	if _, err := c.Get(fmt.Sprintf("http://127.0.0.1:%v/", hostPort)); err == nil {
		t.Error("the published port still answers under egress")
	}
}
