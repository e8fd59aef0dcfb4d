package agent

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// A guest saved as a template, or suspended, is quiesced first: its
// filesystems are frozen (so the disk it was saved with is consistent on
// its own, for offline tools, snapshots and a cold boot of the same disk)
// and, for a template, every request but ping and identity is refused
// until the restored clone has been given its identity. The freeze ends
// with the identity request, or on its own past a deadline when the host
// never saved the guest.

// Bounds of a quiesce's freeze.
const (
	defaultQuiesceTimeout = 30 * time.Second
	maxQuiesceTimeout     = 120 * time.Second
)

// machineIDFile is where a guest's machine id lives (systemd's format: 32
// lowercase hex digits and a newline).
const machineIDFile = "/etc/machine-id"

// warmState is the handler's part for saves and restores.
type warmState struct {
	mu           sync.Mutex
	frozen       []int // descriptors of frozen mounts, in freeze order
	thawTimer    *time.Timer
	needIdentity bool
}

// gate refuses a request while a template's guest waits for its identity.
func (w *warmState) gate(method string) error {
	if method == agentproto.MethodPing || method == agentproto.MethodIdentity {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.needIdentity {
		return errdefs.New(errdefs.ErrFailedPrecondition, "this is a bug: the host must send identity first",
			"the guest has not been given its identity since it was restored")
	}
	return nil
}

// quiesce serves agentproto.MethodQuiesce.
func (h *Handler) quiesce(s *agentproto.Stream) (any, error) {
	var req agentproto.QuiesceRequest
	if err := decode(s.Params, &req); err != nil {
		return nil, err
	}
	if h.cfg.Reap == nil {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "", "quiesce: only a guest is saved")
	}
	timeout := time.Duration(req.TimeoutMs) * time.Millisecond
	if timeout <= 0 {
		timeout = defaultQuiesceTimeout
	}
	timeout = min(timeout, maxQuiesceTimeout)
	w := &h.warm
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.frozen) > 0 {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "try again", "quiesce: the guest is already quiesced")
	}
	unix.Sync()
	res := &agentproto.QuiesceResult{Frozen: []string{}}
	for _, m := range req.Mounts {
		fd, err := unix.Open(h.hostPath(m), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			w.thawLocked(h)
			return nil, errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "", "quiesce: opening %s", m)
		}
		if err := unix.IoctlSetInt(fd, ioctlFIFREEZE, 0); err != nil {
			unix.Close(fd)
			w.thawLocked(h)
			return nil, errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "try again (a snapshot may be in progress)", "quiesce: freezing %s", m)
		}
		w.frozen = append(w.frozen, fd)
		res.Frozen = append(res.Frozen, m)
	}
	w.thawTimer = time.AfterFunc(timeout, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if len(w.frozen) > 0 {
			h.log.Warn("thawing at the quiesce deadline: the host never restored or resumed the guest", "timeout", timeout)
			w.thawLocked(h)
		}
	})
	w.needIdentity = req.Template
	return res, nil
}

// thawLocked thaws what quiesce froze, in reverse order; w.mu is held.
func (w *warmState) thawLocked(h *Handler) int {
	n := len(w.frozen)
	for i := n - 1; i >= 0; i-- {
		if err := unix.IoctlSetInt(w.frozen[i], ioctlFITHAW, 0); err != nil {
			h.log.Error("thawing a filesystem", "err", err)
		}
		unix.Close(w.frozen[i])
	}
	w.frozen = nil
	if w.thawTimer != nil {
		w.thawTimer.Stop()
		w.thawTimer = nil
	}
	return n
}

// identity serves agentproto.MethodIdentity, in an order that keeps
// every later step honest: randomness and the clock first (nothing after
// should see the template's), then the filesystems thawed, then what is
// written to them.
func (h *Handler) identity(_ context.Context, s *agentproto.Stream) (any, error) {
	start := time.Now()
	var req agentproto.IdentityRequest
	if err := decode(s.Params, &req); err != nil {
		return nil, err
	}
	if h.cfg.Reap == nil {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "", "identity: only a guest is restored")
	}
	if len(req.Entropy) < 32 {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "", "identity: %d bytes of entropy, want at least 32", len(req.Entropy))
	}
	if err := guestOS.addEntropy(req.Entropy); err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInternal, err, "", "identity: seeding the kernel's random pool")
	}
	res := &agentproto.IdentityResult{}
	if req.UnixNano > 0 {
		before := time.Now()
		if err := guestOS.setClock(req.UnixNano); err != nil {
			return nil, errdefs.Wrap(errdefs.ErrInternal, err, "", "identity: setting the clock")
		}
		res.ClockStepMs = time.Unix(0, req.UnixNano).Sub(before).Milliseconds()
	}
	w := &h.warm
	w.mu.Lock()
	res.Thawed = w.thawLocked(h)
	w.mu.Unlock()
	if req.Hostname != "" {
		if err := guestOS.setHostname(req.Hostname); err != nil {
			return nil, errdefs.Wrap(errdefs.ErrInternal, err, "", "identity: setting the hostname")
		}
	}
	if req.MachineID != "" {
		if err := guestOS.writeMachineID(req.MachineID); err != nil {
			return nil, err
		}
	}
	if req.Disks != "" {
		if err := guestOS.mountDisks(h.log, ParseDiskParams(req.Disks)); err != nil {
			return nil, err
		}
	}
	w.mu.Lock()
	w.needIdentity = false
	w.mu.Unlock()
	res.TookMs = time.Since(start).Milliseconds()
	return res, nil
}

// guestOS is what identity changes in the guest; tests replace it (on a
// host, it would set the host's clock).
var guestOS = struct {
	addEntropy     func([]byte) error
	setClock       func(unixNano int64) error
	setHostname    func(string) error
	writeMachineID func(string) error
	mountDisks     func(*slog.Logger, DiskParams) error
}{
	addEntropy: addEntropy,
	setClock: func(n int64) error {
		ts := unix.NsecToTimespec(n)
		return unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
	},
	setHostname:    func(h string) error { return unix.Sethostname([]byte(h)) },
	writeMachineID: writeMachineID,
	mountDisks:     flushAndMount,
}

// flushAndMount drops the guest's cached blocks of a clone's data disk
// and baseline (the template saw placeholders there) and mounts them.
func flushAndMount(log *slog.Logger, p DiskParams) error {
	for _, serial := range []string{p.Workspace, p.Baseline} {
		if err := flushDisk(serial); err != nil {
			return errdefs.Wrap(errdefs.ErrInternal, err, "", "identity: dropping the cached blocks of disk %s", serial)
		}
	}
	if err := mountDisks(log, p); err != nil {
		return errdefs.Wrap(errdefs.ErrInternal, err, "", "identity")
	}
	return nil
}

// addEntropy credits b to the kernel's input pool and reseeds the CRNG
// from it at once: credited entropy alone would only reach /dev/urandom's
// output at the next scheduled reseed, up to a minute later.
func addEntropy(b []byte) error {
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	words := (len(b) + 3) / 4
	info := make([]byte, 8+words*4)
	binary.NativeEndian.PutUint32(info[0:], uint32(len(b)*8))
	binary.NativeEndian.PutUint32(info[4:], uint32(len(b)))
	copy(info[8:], b)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&info[0]))); e != 0 {
		return fmt.Errorf("RNDADDENTROPY: %w", e)
	}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDRESEEDCRNG, 0); e != 0 {
		return fmt.Errorf("RNDRESEEDCRNG: %w", e)
	}
	return nil
}

// writeMachineID replaces /etc/machine-id.
func writeMachineID(id string) error {
	if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		return errdefs.New(errdefs.ErrInvalidArgument, "", "identity: machine id %q is not 32 hex digits", id)
	}
	if err := os.WriteFile(machineIDFile+".pyro-tmp", []byte(id+"\n"), 0o444); err != nil {
		return errdefs.Wrap(errdefs.ErrInternal, err, "", "identity: writing the machine id")
	}
	if err := os.Rename(machineIDFile+".pyro-tmp", machineIDFile); err != nil {
		return errdefs.Wrap(errdefs.ErrInternal, err, "", "identity: writing the machine id")
	}
	return nil
}

// ensureMachineID gives a cold-booted guest a machine id of its own when
// its root has none (environment images ship an empty one).
func ensureMachineID() {
	if b, err := os.ReadFile(machineIDFile); err == nil && len(strings.TrimSpace(string(b))) == 32 {
		return
	}
	var id [16]byte
	rand.Read(id[:])
	_ = writeMachineID(hex.EncodeToString(id[:]))
}

// flushDisk drops the guest's cached blocks of the disk with serial (the
// template's placeholder was read at probe time). No serial: nothing.
func flushDisk(serial string) error {
	if serial == "" {
		return nil
	}
	dev, err := diskBySerial(serial, 5*time.Second)
	if err != nil {
		return err
	}
	f, err := os.Open(dev)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0)
}
