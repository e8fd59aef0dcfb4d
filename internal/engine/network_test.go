package engine

import (
	"errors"
	"testing"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/netpolicy"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

func TestShapePolicy(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    api.Shape
		want  netpolicy.Mode
		class error
	}{
		{"default", api.Shape{}, netpolicy.ModeOff, nil},
		{"network is egress", api.Shape{Network: true}, netpolicy.ModeEgress, nil},
		{"network with egress", api.Shape{Network: true, NetworkPolicy: "egress"}, netpolicy.ModeEgress, nil},
		{"published-ports", api.Shape{NetworkPolicy: " published-ports "}, netpolicy.ModePublish, nil},
		{"allowlist", api.Shape{NetworkPolicy: "allowlist", Allow: []string{"198.18.0.5:8080"}, AllowPublish: true}, netpolicy.ModeAllowlist, nil},
		{"unknown", api.Shape{NetworkPolicy: "everything"}, "", errdefs.ErrInvalidArgument},
		{"network contradicts", api.Shape{Network: true, NetworkPolicy: "off"}, "", errdefs.ErrInvalidArgument},
		{"allow without policy", api.Shape{Allow: []string{"198.18.0.5"}}, "", errdefs.ErrInvalidArgument},
		{"allow-publish without policy", api.Shape{AllowPublish: true}, "", errdefs.ErrInvalidArgument},
		{"allow with egress", api.Shape{NetworkPolicy: "egress", Allow: []string{"198.18.0.5"}}, "", errdefs.ErrInvalidArgument},
		{"empty allowlist", api.Shape{NetworkPolicy: "allowlist"}, "", errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.in
			p, err := shapePolicy(&s)
			if tc.class != nil {
				if !errors.Is(err, tc.class) || errdefs.HintOf(err) == "" {
					t.Fatalf("err %v (hint %q), want %v with a hint", err, errdefs.HintOf(err), tc.class)
				}
				return
			}
			if err != nil || p.Mode != tc.want {
				t.Fatalf("got %v %v, want %s", p, err, tc.want)
			}
			// Checking twice (validateCreate, then createRecord) agrees.
			if p2, err := shapePolicy(&s); err != nil || p2.Mode != p.Mode {
				t.Fatalf("second check: %v %v", p2, err)
			}
		})
	}
}

func TestRecordPolicy(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    api.Machine
		want string
		spec netpolicy.Mode // the MachineSpec's NetPolicy: none for 2.4 records
	}{
		{"2.4 record without network", api.Machine{}, "off", ""},
		{"2.4 record with network", api.Machine{Network: true}, "egress", ""},
		{"recorded", api.Machine{Network: true, NetworkPolicy: "published-ports"}, "published-ports", netpolicy.ModePublish},
		{"allowlist", api.Machine{Network: true, NetworkPolicy: "allowlist", NetworkAllow: []string{"example.com:443"}, AllowPublish: true},
			"allowlist", netpolicy.ModeAllowlist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &vmRecord{Machine: tc.m}
			if got := rec.netPolicy(); string(got.Mode) != tc.want {
				t.Errorf("policy %v, want %s", got, tc.want)
			}
			if got := rec.netPolicySpec(); got.Mode != tc.spec {
				t.Errorf("spec policy %v, want %q", got, tc.spec)
			}
			if got := rec.machine(false).NetworkPolicy; got != tc.want {
				t.Errorf("view %q, want %s", got, tc.want)
			}
		})
	}
	var m api.Machine
	p, _ := netpolicy.New("allowlist", []string{"example.com:443", "198.18.0.0/15"}, true)
	setPolicy(&m, p)
	rec := &vmRecord{Machine: m}
	if got := rec.netPolicy(); got.String() != p.String() || !got.AllowPublish || !m.Network {
		t.Errorf("round trip: %v (network %v), want %v", got, m.Network, p)
	}
}

func TestCheckBackendPolicy(t *testing.T) {
	for _, tc := range []struct {
		mode   string
		kind   vmm.Kind
		shape  api.Shape
		refuse bool
	}{
		{api.ModeGuest, vmm.KindQEMU, api.Shape{NetworkPolicy: "egress"}, false},
		{api.ModeGuest, vmm.KindFirecracker, api.Shape{NetworkPolicy: "egress"}, true},
		{api.ModeGuest, vmm.KindFirecracker, api.Shape{NetworkPolicy: "off"}, false},
		{api.ModeGuest, vmm.KindFirecracker, api.Shape{Network: true}, false}, // 2.4's --network
		{api.ModeHostCompat, "", api.Shape{NetworkPolicy: "published-ports"}, true},
		{api.ModeHostCompat, "", api.Shape{Network: true}, false},
	} {
		err := checkBackendPolicy(tc.mode, tc.kind, tc.shape)
		if (err != nil) != tc.refuse || (err != nil && !errors.Is(err, errdefs.ErrFailedPrecondition)) {
			t.Errorf("%s %s %+v: %v", tc.mode, tc.kind, tc.shape, err)
		}
	}
}

func TestCheckPorts(t *testing.T) {
	for _, tc := range []struct {
		ports []api.PublishPort
		ok    bool
	}{
		{nil, true},
		{[]api.PublishPort{{GuestPort: 8000}, {GuestPort: 8001, HostPort: 9000}}, true},
		{[]api.PublishPort{{GuestPort: 0}}, false},
		{[]api.PublishPort{{GuestPort: 70000}}, false},
		{[]api.PublishPort{{GuestPort: 80, HostPort: -1}}, false},
		{[]api.PublishPort{{GuestPort: 8000}, {GuestPort: 8000, HostPort: 1}}, false},
	} {
		if err := checkPorts(tc.ports); (err == nil) != tc.ok {
			t.Errorf("%+v: %v", tc.ports, err)
		}
	}
}
