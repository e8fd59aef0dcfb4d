// Package agent is pyro's guest agent: the request handlers (exec,
// put_archive, ping, shutdown) served over agentproto, and the PID-1 setup
// that runs them inside a microVM (mounts, modules, switch_root, network,
// the virtio-serial or vsock channel).
//
// The handlers are root-relative (Config.FSRoot) so that the host-compat
// backend serves the very same code in-process on the host: only the PID-1
// setup differs.
package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/version"
)

// Config configures a Handler.
type Config struct {
	// FSRoot is where guest paths are rooted: "/" in a guest, a private
	// host directory under host-compat (where "/workspace" is
	// FSRoot/workspace). Empty means "/".
	FSRoot string
	// BaseEnv is the environment commands start from before the request's
	// own variables; nil means DefaultEnv.
	BaseEnv []string
	// PowerOff runs after a shutdown request has been answered; nil does
	// nothing (host-compat).
	PowerOff func()
	// Reap is set when the agent is PID 1 and must reap every orphan: the
	// handler then waits for its commands through the reaper.
	Reap *Reaper
	// Logger receives diagnostics; nil discards.
	Logger *slog.Logger
	// Baseline is the guest path of the tree `diff` compares /workspace
	// with; "" means BaselineMount when a filesystem is mounted there.
	Baseline string
	// Durable makes put_archive, and exec when the request asks for it,
	// flush the guest's writes to its disk before answering, so their
	// effects survive the VMM being killed right after (a workspace's promise).
	Durable bool
	// SecretsDir is where secrets are written as files (GuestSecretsDir
	// in a guest, a tmpfs); "" keeps them in memory only (host-compat,
	// which has no private tmpfs).
	SecretsDir string
}

// DefaultEnv is what a guest command sees before its own variables.
var DefaultEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	"LANG=C.UTF-8",
	"TERM=dumb",
	"USER=root",
}

// Handler serves agentproto requests.
type Handler struct {
	cfg   Config
	log   *slog.Logger
	start time.Time
	warm  warmState // identity.go
	live  *living   // secrets, shells and services (living.go)

	flushMu  sync.Mutex
	flushFDs map[string]flushDir // by guest path
}

var _ agentproto.Handler = (*Handler)(nil)

// NewHandler returns a handler for cfg.
func NewHandler(cfg Config) *Handler {
	if cfg.FSRoot == "" {
		cfg.FSRoot = "/"
	}
	if cfg.BaseEnv == nil {
		cfg.BaseEnv = DefaultEnv
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, log: log, start: time.Now(), live: newLiving()}
}

// Hello describes the agent in the handshake.
func (h *Handler) Hello() agentproto.Hello {
	return agentproto.Hello{Proto: agentproto.Version, Software: "pyro-agent " + version.Version,
		Features: append([]string{"exec", "put_archive", "stdin", "identity", "shell", "service", "secrets"}, fileFeatures...)}
}

// Handle dispatches one request.
func (h *Handler) Handle(ctx context.Context, s *agentproto.Stream) (any, error) {
	if err := h.warm.gate(s.Method); err != nil {
		return nil, err
	}
	switch s.Method {
	case agentproto.MethodQuiesce:
		return h.quiesce(s)
	case agentproto.MethodIdentity:
		return h.identity(ctx, s)
	case agentproto.MethodPing:
		return h.ping(), nil
	case agentproto.MethodExec:
		var req agentproto.ExecRequest
		if err := decode(s.Params, &req); err != nil {
			return nil, err
		}
		h.live.execs.Add(1)
		defer h.live.execs.Add(-1)
		if !req.Sync {
			return h.exec(ctx, s, req)
		}
		return h.durably(func() (any, error) { return h.exec(ctx, s, req) })
	case agentproto.MethodPutArchive:
		var req agentproto.PutArchiveRequest
		if err := decode(s.Params, &req); err != nil {
			return nil, err
		}
		return h.durably(func() (any, error) { return h.putArchive(ctx, req, s) })
	case agentproto.MethodFreeze:
		return h.freeze(ctx, s)
	case agentproto.MethodShutdown:
		h.stopAll(agentproto.StopAllRequest{GraceMs: 2000}) // services get their TERM
		unix.Sync()
		if h.cfg.PowerOff != nil {
			s.AfterResponse(h.cfg.PowerOff)
		}
		return struct{}{}, nil
	}
	if fn := h.fileMethod(s.Method); fn != nil {
		return fn(ctx, s)
	}
	if res, ok, err := h.handleLiving(ctx, s); ok {
		return res, err
	}
	return nil, errdefs.New(errdefs.ErrInvalidArgument, "upgrade the guest agent (rebuild the initramfs)", "unknown method %q", s.Method)
}

// durableRoots are the guest paths whose filesystems a flush writes to
// disk: the root disk and /workspace's (the same one, unless /workspace is
// a disk of its own). Everything else a command can write is in memory.
var durableRoots = []string{"/", "/workspace"}

// durably runs fn and, when the handler is Durable, flushes the guest's
// writes to its disks before answering, and fails the call when they did
// not reach them: a write-back error (EIO when the host's disk under the
// VM is full or failing, ENOSPC) would otherwise be lost, and the call
// would say yes to data that is gone. The flush is a syncfs of each
// filesystem in durableRoots, once each, rather than sync(), which walks
// every filesystem and block device of the guest. Their directories are
// opened before fn runs and stay open between calls, so each syncfs
// reports every write-back error since the previous one.
func (h *Handler) durably(fn func() (any, error)) (any, error) {
	if !h.cfg.Durable {
		return fn()
	}
	h.flushMu.Lock()
	dirs := h.flushDirs()
	h.flushMu.Unlock()
	res, err := fn()
	for _, d := range dirs {
		if serr := unix.Syncfs(d.fd); serr != nil && err == nil {
			return nil, errdefs.Wrap(errdefs.ErrUnavailable, serr,
				"the VM's disk could not store it: free disk space on the host where pyro keeps its state, then retry",
				"writing to the guest's disk (%s)", d.path)
		}
	}
	return res, err
}

// flushDirs opens (or finds open) one directory per filesystem of
// durableRoots. A stat tells whether an open one still is the same path
// (/workspace is mounted over after boot). Called with flushMu held; the
// descriptors are never closed while the agent runs, so a flush may use
// them without the lock.
func (h *Handler) flushDirs() []flushDir {
	if h.flushFDs == nil {
		h.flushFDs = map[string]flushDir{}
	}
	var dirs []flushDir
	for _, p := range durableRoots {
		var st unix.Stat_t
		if err := unix.Stat(h.hostPath(p), &st); err != nil {
			continue // no /workspace: nothing to flush there
		}
		if slices.ContainsFunc(dirs, func(d flushDir) bool { return d.dev == st.Dev }) {
			continue
		}
		key := fmt.Sprintf("%s@%d:%d", p, st.Dev, st.Ino)
		d, ok := h.flushFDs[key]
		if !ok {
			fd, err := unix.Open(h.hostPath(p), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				continue
			}
			d = flushDir{path: p, fd: fd, dev: st.Dev}
			h.flushFDs[key] = d
		}
		dirs = append(dirs, d)
	}
	return dirs
}

// flushDir is a directory durably keeps open.
type flushDir struct {
	path string
	fd   int
	dev  uint64
}

func decode(raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "", "decoding params")
	}
	return nil
}

// hostPath maps an absolute guest path to where it lives under FSRoot.
func (h *Handler) hostPath(guest string) string {
	return filepath.Join(h.cfg.FSRoot, path.Clean("/"+guest))
}

func (h *Handler) ping() *agentproto.PingResult {
	var u unix.Utsname
	_ = unix.Uname(&u)
	host, _ := os.Hostname()
	r := &agentproto.PingResult{
		KernelRelease: unix.ByteSliceToString(u.Release[:]),
		Hostname:      host,
		UptimeMs:      time.Since(h.start).Milliseconds(),
	}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil && os.Getpid() == 1 { // the guest's own uptime
		r.UptimeMs = int64(si.Uptime) * 1000
	}
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				r.Addresses = append(r.Addresses, ipn.String())
			}
		}
	}
	return r
}

// mergeEnv returns base with over applied (over wins), in a stable order.
func mergeEnv(base []string, over map[string]string) []string {
	out := make([]string, 0, len(base)+len(over))
	seen := map[string]bool{}
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if v, ok := over[k]; ok {
			out = append(out, k+"="+v)
		} else {
			out = append(out, kv)
		}
		seen[k] = true
	}
	keys := make([]string, 0, len(over))
	for k := range over {
		if !seen[k] {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		out = append(out, k+"="+over[k])
	}
	return out
}

func envGet(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}

// lookPath finds file in the command's own PATH (not the agent's).
func lookPath(file, pathEnv string) (string, bool) {
	if strings.Contains(file, "/") {
		return file, true
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}
