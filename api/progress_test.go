package api

import "testing"

func TestProgressText(t *testing.T) {
	for _, tc := range []struct {
		p            Progress
		line, detail string
	}{
		{Progress{Phase: "resolve", Environment: "debian:12"},
			"[pull] phase=resolve environment=debian:12", "pulling debian:12: resolving"},
		{Progress{Op: "pull", Phase: "download", Environment: "debian:12", Step: "rootfs", Unit: UnitBytes, Done: 1 << 20, Total: 3 << 20},
			"[pull] phase=download environment=debian:12 step=rootfs bytes=1048576 total=3145728", "pulling debian:12: downloading rootfs, 1.0 MiB of 3.0 MiB"},
		{Progress{Op: "pull", Phase: "build", Environment: "debian:12", Step: "mmdebstrap", Unit: UnitPackages, Done: 40, Total: 137},
			"[pull] phase=build environment=debian:12 step=mmdebstrap packages=40 total=137", "pulling debian:12: building the root filesystem (mmdebstrap), 40 of 137 packages"},
		{Progress{Op: "pull", Phase: "done", Environment: "debian:12", Source: "build"},
			"[pull] phase=done environment=debian:12 source=build", "pulling debian:12: done"},
		{Progress{Op: "workspace create", Phase: "seed", Environment: "debian:12", ID: "0f3a", Unit: UnitFiles, Done: 4000, Total: 10000, PhaseIndex: 4, PhaseCount: 4},
			"[workspace create] phase=seed environment=debian:12 id=0f3a files=4000 total=10000", "seeding 4,000 of 10,000 files"},
		{Progress{Op: "run", Phase: "boot", Step: "guest"},
			"[run] phase=boot step=guest", "booting (waiting for the guest agent)"},
		{Progress{Op: "sync push", Phase: "push", Unit: UnitFiles, Done: 12},
			"[sync push] phase=push files=12 total=0", "pushing 12 files"},
	} {
		if got := tc.p.String(); got != tc.line {
			t.Errorf("String() = %q, want %q", got, tc.line)
		}
		if got := tc.p.Message(); got != tc.detail {
			t.Errorf("Message() = %q, want %q", got, tc.detail)
		}
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -4000: "-4,000"} {
		if got := Thousands(n); got != want {
			t.Errorf("Thousands(%d) = %q, want %q", n, got, want)
		}
	}
}
