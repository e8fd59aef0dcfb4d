package engine

import (
	"log/slog"

	"github.com/pyro-mcp/pyro/internal/vmm"
	"github.com/pyro-mcp/pyro/internal/vmm/hostcompat"
	"github.com/pyro-mcp/pyro/internal/vmm/qemu"
)

// newBackend builds the backend a supervisor boots with.
func newBackend(mode, probeKernel string, log *slog.Logger) (vmm.Backend, error) {
	if mode == ModeHostCompat {
		return hostcompat.New(), nil
	}
	return qemu.New(qemu.Options{ProbeKernel: probeKernel, Logger: log})
}

// backendName names the backend a VM in mode will use, e.g. "qemu-tcg".
func (e *Engine) backendName(mode, probeKernel string) string {
	if mode == ModeHostCompat {
		return "host_compat"
	}
	b, err := qemu.New(qemu.Options{ProbeKernel: probeKernel, Logger: e.log})
	if err != nil {
		return "qemu"
	}
	return "qemu-" + b.Accel()
}
