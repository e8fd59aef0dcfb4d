package doctor

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/internal/catalog"
	"github.com/pyro-mcp/pyro/internal/kvm"
)

// fakeHost builds probes for a host with the given tools and KVM/TCG answers.
func fakeHost(tools []string, kvmRes, tcgRes kvm.Result, kernel string) *Probes {
	have := map[string]bool{}
	for _, t := range tools {
		have[t] = true
	}
	return &Probes{
		LookPath: func(name string) (string, error) {
			if have[name] {
				return "/usr/bin/" + name, nil
			}
			return "", errors.New("not found")
		},
		Version: func(_ context.Context, path string, _ ...string) string { return path + " 1.0" },
		KVM:     func(context.Context, string, string) kvm.Result { return kvmRes },
		TCG:     func(context.Context, string, string) kvm.Result { return tcgRes },
		Environment: func(context.Context) (*Environments, string) {
			return &Environments{Items: []catalog.EnvStatus{{Name: "debian:12", Installed: kernel != "", InstalledVersion: "2.4.0-1"}}}, kernel
		},
		Platform: func() Platform { return Platform{OS: "linux", Arch: "amd64", CPUs: 2, MemoryMiB: 4096} },
		Free:     func(string) (bool, uint64) { return true, 10 << 30 },
	}
}

var allTools = []string{"qemu-system-x86_64", "qemu-img", "mmdebstrap", "mkfs.ext4"}

func TestRunPicksBackend(t *testing.T) {
	usable := kvm.Result{Verdict: kvm.Usable, Usable: true, Reason: "booted"}
	pvm := kvm.Result{Verdict: kvm.Unusable, Reason: "failed to set MSR 0x10a"}
	unverified := kvm.Result{Verdict: kvm.Unverified, Reason: "no kernel"}
	absent := kvm.Result{Verdict: kvm.Absent, Reason: "/dev/kvm does not exist"}
	tcgOK := kvm.Result{Verdict: kvm.Usable, Usable: true, Reason: "booted"}
	tcgBad := kvm.Result{Verdict: kvm.Unusable, Reason: "crashed"}
	tcgBusy := kvm.Result{Verdict: kvm.Inconclusive, Reason: "a test guest did not finish booting within 20s, then 40s"}
	kvmBusy := kvm.Result{Verdict: kvm.Inconclusive, Reason: "a test guest did not finish booting within 5s, then 10s"}
	tests := []struct {
		name     string
		tools    []string
		kvm, tcg kvm.Result
		kernel   string
		selected string
		ok       bool
		works    map[string]bool
	}{
		{"real kvm", allTools, usable, tcgOK, "/k", QEMUKVM, true, map[string]bool{QEMUKVM: true, QEMUTCG: true, Firecracker: false, HostCompat: true}},
		{"pvm kvm falls back to tcg", allTools, pvm, tcgOK, "/k", QEMUTCG, true, map[string]bool{QEMUKVM: false, QEMUTCG: true}},
		{"no kernel: kvm untrusted, tcg unverified but usable", allTools, unverified, kvm.Result{}, "", QEMUTCG, true, map[string]bool{QEMUKVM: false, QEMUTCG: true}},
		{"no kvm device", allTools, absent, tcgOK, "/k", QEMUTCG, true, map[string]bool{QEMUKVM: false}},
		{"tcg boot fails", allTools, pvm, tcgBad, "/k", "", false, map[string]bool{QEMUTCG: false, HostCompat: true}},
		{"no qemu at all", []string{"mmdebstrap"}, absent, kvm.Result{}, "/k", "", false, map[string]bool{QEMUKVM: false, QEMUTCG: false, HostCompat: true}},
		{"firecracker on PATH is reported, not used", append(allTools, "firecracker"), pvm, tcgOK, "/k", QEMUTCG, true, map[string]bool{Firecracker: false}},
		{"firecracker with real kvm is selected", append(allTools, "firecracker"), usable, tcgOK, "/k", Firecracker, true, map[string]bool{Firecracker: true, QEMUKVM: true}},
		{"firecracker with unverified kvm is not", append(allTools, "firecracker"), unverified, tcgOK, "/k", QEMUTCG, true, map[string]bool{Firecracker: false}},
		{"firecracker without qemu: none, as the engine says", []string{"firecracker", "mkfs.ext4"}, unverified, kvm.Result{}, "/k", "", false, map[string]bool{Firecracker: false, QEMUTCG: false}},
		{"qemu without qemu-img: none", []string{"qemu-system-x86_64"}, absent, tcgOK, "/k", "", false, map[string]bool{QEMUTCG: false}},
		{"busy host: tcg test boot inconclusive still works", allTools, absent, tcgBusy, "/k", QEMUTCG, true, map[string]bool{QEMUTCG: true}},
		{"busy host: kvm probe inconclusive falls back to tcg", allTools, kvmBusy, tcgOK, "/k", QEMUTCG, true, map[string]bool{QEMUKVM: false, QEMUTCG: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Run(t.Context(), Options{CacheDir: "/c", Probes: fakeHost(tt.tools, tt.kvm, tt.tcg, tt.kernel)})
			if r.Selected != tt.selected || r.OK != tt.ok {
				t.Fatalf("selected %q ok=%v (%s), want %q ok=%v", r.Selected, r.OK, r.NoneReason, tt.selected, tt.ok)
			}
			if (r.Selected == "") != (r.NoneReason != "") {
				t.Errorf("selected %q but none_reason %q", r.Selected, r.NoneReason)
			}
			for _, b := range r.Backends {
				if b.Name == r.Selected && !b.Works {
					t.Errorf("selected %s, which the report says does not work: %s", b.Name, b.Reason)
				}
				if want, ok := tt.works[b.Name]; ok && b.Works != want {
					t.Errorf("%s works=%v (%s), want %v", b.Name, b.Works, b.Reason, want)
				}
				if !b.Works && b.Fix == "" {
					t.Errorf("%s does not work and says nothing about a fix", b.Name)
				}
			}
			if strings.HasPrefix(tt.name, "firecracker") && !strings.Contains(r.Backends[2].Reason, "/usr/bin/firecracker") {
				t.Errorf("firecracker reason %q lacks its path", r.Backends[2].Reason)
			}
		})
	}
}

func TestToolsNameTheirPackage(t *testing.T) {
	r := Run(t.Context(), Options{Probes: fakeHost([]string{"qemu-system-x86_64"}, kvm.Result{}, kvm.Result{}, "")})
	var text bytes.Buffer
	r.WriteText(&text)
	for _, want := range []string{"apt-get install qemu-utils", "apt-get install mmdebstrap", "apt-get install e2fsprogs", "optional, missing: apt-get install passt"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, text.String())
		}
	}
	for _, tool := range r.Tools {
		if tool.Name == "qemu-system-x86_64" && (!tool.Found || tool.Version == "") {
			t.Errorf("qemu not reported with a version: %+v", tool)
		}
	}
}

func TestBootTestHook(t *testing.T) {
	probes := fakeHost(allTools, kvm.Result{Verdict: kvm.Unusable}, kvm.Result{Verdict: kvm.Usable, Usable: true}, "/k")
	tests := []struct {
		name   string
		run    bool
		hook   func(context.Context) error
		status string
		ok     bool
	}{
		{"not requested", false, nil, "not_requested", true},
		{"no hook", true, nil, "not_available", true},
		{"passes", true, func(context.Context) error { return nil }, "passed", true},
		{"fails", true, func(context.Context) error { return errors.New("agent did not answer") }, "failed", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Run(t.Context(), Options{Probes: probes, RunBootTest: tt.run, BootTest: tt.hook})
			if r.BootTest.Status != tt.status || r.OK != tt.ok {
				t.Fatalf("boot test %+v ok=%v, want %s ok=%v", r.BootTest, r.OK, tt.status, tt.ok)
			}
		})
	}
}
