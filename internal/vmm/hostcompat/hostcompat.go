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
	"github.com/pyro-mcp/pyro/internal/proctree"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// Backend implements vmm.Backend.
type Backend struct {
	// contain makes this process the subreaper of every command it starts
	// (see NewContained).
	contain bool
}

var _ vmm.Backend = (*Backend)(nil)

// New returns the host-compat backend. Kill ends each command's process
// group; a command that left its group (setsid, a daemon) survives it.
// Tests use it in-process.
func New() *Backend { return &Backend{} }

// NewContained is New for a process that serves one machine and nothing
// else (the supervisor): it becomes the child subreaper of every command
// it starts, and reaps them all, so that a command that daemonizes (setsid
// and a double fork) stays its descendant, and Kill ends every process the
// machine's commands started. The engine kills them the same way before it
// kills the supervisor (internal/proctree).
func NewContained() *Backend { return &Backend{contain: true} }

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
	cfg := agent.Config{FSRoot: spec.WorkDir, BaseEnv: env}
	if b.contain {
		if err := proctree.BecomeSubreaper(); err != nil {
			return nil, errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "", "becoming the subreaper of host_compat commands")
		}
		// Adopted orphans must be reaped too; the reaper hands the
		// handler its own commands' statuses.
		cfg.Reap = agent.NewReaper()
	}
	host, guest := net.Pipe()
	sctx, cancel := context.WithCancel(context.Background())
	// A shutdown request ends the "machine" like a guest powering off.
	cfg.PowerOff = cancel
	h := agent.NewHandler(cfg)
	m := &machine{host: host, cancel: cancel, done: make(chan struct{}), contain: b.contain}
	go func() {
		defer close(m.done)
		// Serve cancels every handler (killing their process groups) and
		// waits for them before it returns.
		m.err = agentproto.Serve(sctx, guest, h)
		// The machine is off, however it ended (Kill, a shutdown
		// request, the TTL): like a guest powering off, nothing it ran
		// outlives it.
		if m.contain {
			proctree.KillDescendants(os.Getpid())
		}
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
	// contain: this process is the commands' subreaper; Kill ends all
	// its descendants.
	contain bool
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

// Kill stops serving and kills every running command's process group,
// and, contained, every other process the commands started.
func (m *machine) Kill() error {
	m.cancel()
	<-m.done
	return nil
}
