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
	// Durable makes put_archive, and exec when the request asks for it,
	// flush the guest's writes to its disk before answering, so their
	// effects survive the VMM being killed right after (a workspace's promise).
	Durable bool
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
	return &Handler{cfg: cfg, log: log, start: time.Now()}
}

// Hello describes the agent in the handshake.
func (h *Handler) Hello() agentproto.Hello {
	return agentproto.Hello{Proto: agentproto.Version, Software: "pyro-agent " + version.Version,
		Features: []string{"exec", "put_archive", "stdin"}}
}

// Handle dispatches one request.
func (h *Handler) Handle(ctx context.Context, s *agentproto.Stream) (any, error) {
	switch s.Method {
	case agentproto.MethodPing:
		return h.ping(), nil
	case agentproto.MethodExec:
		var req agentproto.ExecRequest
		if err := decode(s.Params, &req); err != nil {
			return nil, err
		}
		res, err := h.exec(ctx, s, req)
		if req.Sync && err == nil {
			err = h.flush()
		}
		return res, err
	case agentproto.MethodPutArchive:
		var req agentproto.PutArchiveRequest
		if err := decode(s.Params, &req); err != nil {
			return nil, err
		}
		res, err := h.putArchive(ctx, req, s)
		if ferr := h.flush(); err == nil {
			err = ferr
		}
		return res, err
	case agentproto.MethodShutdown:
		unix.Sync()
		if h.cfg.PowerOff != nil {
			s.AfterResponse(h.cfg.PowerOff)
		}
		return struct{}{}, nil
	}
	return nil, errdefs.New(errdefs.ErrInvalidArgument, "upgrade the guest agent (rebuild the initramfs)", "unknown method %q", s.Method)
}

// durableRoots are the guest paths whose filesystems flush writes to disk:
// the root disk and /workspace's (the same one, unless /workspace is a
// disk of its own). Everything else a command can write is in memory.
var durableRoots = []string{"/", "/workspace"}

// flush makes what a command or an archive wrote durable before the
// request is answered (Config.Durable): syncfs of each filesystem in
// durableRoots, once each, rather than sync(), which walks every
// filesystem and block device of the guest. The directories stay open
// between flushes; a stat tells whether the path still is the same one.
func (h *Handler) flush() error {
	if !h.cfg.Durable {
		return nil
	}
	h.flushMu.Lock()
	defer h.flushMu.Unlock()
	if h.flushFDs == nil {
		h.flushFDs = map[string]flushDir{}
	}
	var done []uint64
	for _, p := range durableRoots {
		var st unix.Stat_t
		if err := unix.Stat(h.hostPath(p), &st); err != nil {
			continue // no /workspace: nothing to flush there
		}
		if slices.Contains(done, st.Dev) {
			continue
		}
		d, ok := h.flushFDs[p]
		if !ok || d.dev != st.Dev || d.ino != st.Ino {
			if ok {
				unix.Close(d.fd)
				delete(h.flushFDs, p)
			}
			fd, err := unix.Open(h.hostPath(p), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				continue
			}
			d = flushDir{fd: fd, dev: st.Dev, ino: st.Ino}
			h.flushFDs[p] = d
		}
		done = append(done, st.Dev)
		if err := unix.Syncfs(d.fd); err != nil {
			return errdefs.Wrap(errdefs.ErrUnavailable, err, "the guest's disk reported an error: check free space on the host and the VM's console log",
				"flushing %s to disk", p)
		}
	}
	return nil
}

// flushDir is a directory flush keeps open.
type flushDir struct {
	fd       int
	dev, ino uint64
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
	if unix.Sysinfo(&si) == nil && h.cfg.Reap != nil {
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
