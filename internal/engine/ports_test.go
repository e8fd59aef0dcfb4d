package engine

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/api"
)

func TestRecordPorts(t *testing.T) {
	for _, tc := range []struct {
		name string
		json string
		want map[string][]api.PublishPort
	}{
		{"2.4 record", `{"id":"a","kind":"workspace","workspace":{"seed":{"mode":"empty"},"next_sequence":1,"command_count":0,"restarts":0}}`, nil},
		{"no ports", `{"id":"a","kind":"workspace","workspace":{"seed":{},"next_sequence":1,"command_count":0,"restarts":0,"suspended":{"at":"2026-12-01T00:00:00Z","bytes":1,"tops":[],"vmm":"","initrd":""}}}`, nil},
		{"ports", `{"id":"a","kind":"workspace","workspace":{"seed":{},"next_sequence":1,"command_count":0,"restarts":0,"published_ports":{"web":[{"guest_port":8000,"host_port":41234}]}}}`,
			map[string][]api.PublishPort{"web": {{GuestPort: 8000, HostPort: 41234}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rec vmRecord
			if err := json.Unmarshal([]byte(tc.json), &rec); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(rec.Workspace.Ports, tc.want) {
				t.Fatalf("ports %v, want %v", rec.Workspace.Ports, tc.want)
			}
			data, err := json.Marshal(&rec)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(string(data), `"published_ports"`); got != (tc.want != nil) {
				t.Errorf("written record has published_ports: %v, want %v: %s", got, tc.want != nil, data)
			}
		})
	}
}

func TestSetPorts(t *testing.T) {
	web := []api.PublishPort{{GuestPort: 8000, HostPort: 41234}}
	moved := []api.PublishPort{{GuestPort: 8000, HostPort: 41999}}
	for _, tc := range []struct {
		name    string
		have    map[string][]api.PublishPort
		service string
		ports   []api.PublishPort
		changed bool
		want    map[string][]api.PublishPort
	}{
		{"first", nil, "web", web, true, map[string][]api.PublishPort{"web": web}},
		{"same", map[string][]api.PublishPort{"web": web}, "web", web, false, map[string][]api.PublishPort{"web": web}},
		{"moved", map[string][]api.PublishPort{"web": web}, "web", moved, true, map[string][]api.PublishPort{"web": moved}},
		{"another", map[string][]api.PublishPort{"web": web}, "api", moved, true, map[string][]api.PublishPort{"web": web, "api": moved}},
		{"forget the last", map[string][]api.PublishPort{"web": web}, "web", nil, true, nil},
		{"forget one", map[string][]api.PublishPort{"web": web, "api": moved}, "api", nil, true, map[string][]api.PublishPort{"web": web}},
		{"forget none", nil, "web", nil, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws := &wsState{Ports: tc.have}
			if got := setPorts(ws, tc.service, tc.ports); got != tc.changed {
				t.Errorf("changed %v, want %v", got, tc.changed)
			}
			if !reflect.DeepEqual(ws.Ports, tc.want) {
				t.Errorf("ports %v, want %v", ws.Ports, tc.want)
			}
		})
	}
}

// A boot that is not a resume, or a policy that forbids publishing now,
// leaves no ports to bind (and asks nothing of the guest).
func TestRebindPortsReleases(t *testing.T) {
	e := &Engine{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, tc := range []struct {
		name   string
		start  string
		policy string
	}{
		{"cold boot", startCold, "published-ports"},
		{"warm clone", startWarm, "published-ports"},
		{"resume under egress", startResume, "egress"},
		{"resume under off", startResume, "off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &vmRecord{ID: "a", Kind: kindWorkspace, Workspace: &wsState{Ports: map[string][]api.PublishPort{"web": {{GuestPort: 8000, HostPort: 41234}}}}}
			rec.Start, rec.NetworkPolicy = tc.start, tc.policy
			e.rebindPorts(context.Background(), rec)
			if rec.Workspace.Ports != nil {
				t.Errorf("ports %v kept", rec.Workspace.Ports)
			}
		})
	}
}
