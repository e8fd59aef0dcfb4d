// Package hostcompat is the host-compat VMM backend: no virtual machine at
// all. The guest agent's handlers run in-process on the host, rooted at the
// machine's private WorkDir (guest /workspace is WorkDir/workspace), and
// commands run as host processes. It is for hosts that cannot boot a guest,
// and it isolates nothing: callers must opt in.
package hostcompat

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/pyro-mcp/pyro/internal/agent"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// Backend implements vmm.Backend.
type Backend struct{}

var _ vmm.Backend = (*Backend)(nil)

// New returns the host-compat backend.
func New() *Backend { return &Backend{} }

// Capabilities reports an unisolated, in-process backend.
func (b *Backend) Capabilities() vmm.Capabilities {
	return vmm.Capabilities{
		Kind:        vmm.KindHostCompat,
		Isolated:    false,
		Network:     true, // the host's own network
		Channel:     "in-process",
		Persistent:  true,
		MaxVCPUs:    0,
		MaxMemMiB:   0,
		Description: "commands run directly on the host in a private directory; NOT isolated",
	}
}

// Start creates spec.WorkDir (private) with a workspace inside and starts
// serving the agent protocol in-process.
func (b *Backend) Start(ctx context.Context, spec vmm.MachineSpec) (vmm.Machine, error) {
	if spec.WorkDir == "" {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "", "host_compat needs a WorkDir")
	}
	if err := os.MkdirAll(filepath.Join(spec.WorkDir, "workspace"), 0o700); err != nil {
		return nil, errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "check the state directory is writable", "creating %s", spec.WorkDir)
	}
	if err := os.Chmod(spec.WorkDir, 0o700); err != nil {
		return nil, errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "", "securing %s", spec.WorkDir)
	}
	env := mergeHostEnv(filepath.Join(spec.WorkDir, "workspace"))
	host, guest := net.Pipe()
	sctx, cancel := context.WithCancel(context.Background())
	// A shutdown request ends the "machine" like a guest powering off.
	h := agent.NewHandler(agent.Config{FSRoot: spec.WorkDir, BaseEnv: env, PowerOff: cancel})
	m := &machine{host: host, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		// Serve cancels every handler (killing their process groups) and
		// waits for them before it returns.
		m.err = agentproto.Serve(sctx, guest, h)
	}()
	return m, nil
}

// mergeHostEnv is the host's PATH with a HOME inside the workdir, so that
// tools writing dotfiles stay in the sandbox directory.
func mergeHostEnv(home string) []string {
	env := []string{"HOME=" + home, "LANG=C.UTF-8", "TERM=dumb"}
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/bin:/usr/bin:/bin"
	}
	return append(env, "PATH="+path)
}

type machine struct {
	host   net.Conn
	cancel context.CancelFunc
	done   chan struct{}
	err    error
	once   sync.Once
}

func (m *machine) Pid() int { return 0 }

func (m *machine) AgentConn(ctx context.Context) (io.ReadWriteCloser, error) {
	var conn io.ReadWriteCloser
	m.once.Do(func() { conn = m.host })
	if conn == nil {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "", "host_compat agent connection already taken")
	}
	return conn, nil
}

// Wait returns when the in-process agent has stopped (after Kill, a
// shutdown request, or the host closing the connection).
func (m *machine) Wait() error {
	<-m.done
	return m.err
}

// Kill stops serving and kills every running command's process group.
func (m *machine) Kill() error {
	m.cancel()
	<-m.done
	return nil
}
