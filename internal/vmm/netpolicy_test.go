package vmm

import (
	"encoding/json"
	"testing"

	"github.com/pyro-mcp/pyro/internal/netpolicy"
)

func TestNetworkPolicy(t *testing.T) {
	allow, err := netpolicy.New("allowlist", []string{"198.51.100.7:443"}, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		spec MachineSpec
		want string
	}{
		{"nothing asked", MachineSpec{}, "off"},
		{"--network", MachineSpec{Network: true}, "egress"},
		{"a policy", MachineSpec{NetPolicy: allow}, "allowlist(198.51.100.7:443)"},
		{"the policy wins", MachineSpec{Network: true, NetPolicy: netpolicy.Off()}, "off"},
	} {
		if got := tc.spec.NetworkPolicy().String(); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	// A spec written before policies (pyro 2.4's supervisor.json) reads
	// back with the same meaning.
	var old MachineSpec
	if err := json.Unmarshal([]byte(`{"ID":"ab","Network":true}`), &old); err != nil {
		t.Fatal(err)
	}
	if got := old.NetworkPolicy(); got.Mode != netpolicy.ModeEgress {
		t.Errorf("2.4 spec: %s", got)
	}
	data, _ := json.Marshal(MachineSpec{Network: true})
	var back map[string]any
	json.Unmarshal(data, &back)
	if _, ok := back["NetPolicy"]; ok {
		t.Errorf("an unset policy is written: %s", data)
	}
}
