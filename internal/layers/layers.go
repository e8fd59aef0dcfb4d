// Package layers owns the pool of disk layers that workspaces are built
// from: qcow2 overlays and raw ext4 seed images in one directory under the
// state dir, each named by a random id, written once and sealed (never
// written again) when a snapshot makes it the backing file of a newer
// layer. A layer's parent is named in its own qcow2 header, relative to the
// pool, so the header is the one record of a chain.
//
// Who needs a layer is decided by the workspaces' records, never by a
// counter kept beside them: Sweep takes the pool lock exclusively, lists
// the files, asks the caller for the layers its records name (tops,
// snapshots, baselines, and the layers an operation is about to create),
// follows every chain through the headers and deletes the rest. A kill -9
// between two files can therefore leak a file until the next sweep, but
// never free one that a chain still reads. Anything that makes a record
// name a layer holds the pool lock shared meanwhile (Shared), so a sweep
// never runs between "listed the files" and "read the records".
//
//	p, _ := layers.Open(filepath.Join(stateDir, "layers"))
//	unlock, _ := p.Shared()
//	top, _ := p.NewOverlay(ctx, parent, size) // after the record names it
//	unlock()
package layers

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/paths"
	"github.com/pyro-mcp/pyro/internal/state"
)

// MaxChainDepth is how many qcow2 layers a disk's chain may hold before it
// is flattened on the next boot. Measured with `qemu-img bench` (4 KiB
// reads that miss every layer but the bottom, bench/ "chain depth"): depth
// 1 ~6 µs a read, 8 ~9 µs, 16 ~13 µs, 32 ~21 µs, 64 ~47 µs, 128 ~150 µs,
// 256 ~800 µs. A TCG guest's own 4 KiB read costs far more than 13 µs, so
// 16 keeps the chain's cost in the noise while flattening rarely.
const MaxChainDepth = 16

// Extensions of the two kinds of layer files.
const (
	ExtQCOW2 = ".qcow2"
	ExtRaw   = ".raw"
)

// Pool is a directory of layers.
type Pool struct {
	Dir string
}

// Open returns the pool in dir, creating it private to the user.
func Open(dir string) (*Pool, error) {
	if err := paths.EnsurePrivate(dir); err != nil {
		return nil, fmt.Errorf("creating the layer pool: %w", err)
	}
	return &Pool{Dir: dir}, nil
}

// Path is the file of layer name (an id with its extension).
func (p *Pool) Path(name string) string { return filepath.Join(p.Dir, name) }

// NewName returns a fresh layer name with extension ext.
func NewName(ext string) string { return state.NewID() + ext }

// Valid reports whether name looks like a pool layer name.
func Valid(name string) bool {
	id, ext := strings.TrimSuffix(name, filepath.Ext(name)), filepath.Ext(name)
	if ext != ExtQCOW2 && ext != ExtRaw || len(id) != 16 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (p *Pool) lock(how int) (func(), error) {
	f, err := os.OpenFile(filepath.Join(p.Dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking the layer pool: %w", err)
	}
	return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// Shared takes the pool lock shared: hold it from before a record first
// names a layer (or an existing layer gains a new referrer) until that
// record is written.
func (p *Pool) Shared() (unlock func(), err error) { return p.lock(unix.LOCK_SH) }

// Create makes an empty file for layer name, mode 0600, failing if it
// exists.
func (p *Pool) Create(name string) (*os.File, error) {
	return os.OpenFile(p.Path(name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
}

// NewOverlay creates layer name: an empty qcow2 of size bytes over parent,
// which is a pool layer name or an absolute path (an environment's
// rootfs). The parent is not opened (it may be in use by a running VM).
func (p *Pool) NewOverlay(ctx context.Context, name, parent string, size int64) error {
	f, err := p.Create(name)
	if err != nil {
		return fmt.Errorf("creating layer %s: %w", name, err)
	}
	err = writeOverlay(f, parent, formatOf(parent), size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(p.Path(name))
		return errdefs.Wrap(errdefs.ErrInternal, err, "check free disk space", "creating disk layer %s", name)
	}
	return nil
}

// formatOf is QEMU's format of a layer or base file: qcow2 for pool
// overlays, raw for seed layers and environment root images.
func formatOf(name string) string {
	if strings.HasSuffix(name, ExtQCOW2) {
		return "qcow2"
	}
	return "raw"
}

// Format is QEMU's format name for a layer or base file.
func Format(name string) string { return formatOf(name) }

// Backing reads the backing file named in a qcow2 header: "" for a raw
// file or a qcow2 without one.
func Backing(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var h [20]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return "", nil // too short to be a qcow2: raw
		}
		return "", err
	}
	if string(h[:4]) != "QFI\xfb" {
		return "", nil
	}
	off := binary.BigEndian.Uint64(h[8:16])
	n := binary.BigEndian.Uint32(h[16:20])
	if off == 0 || n == 0 {
		return "", nil
	}
	if n > 1023 {
		return "", fmt.Errorf("%s: backing file name of %d bytes", path, n)
	}
	name := make([]byte, n)
	if _, err := f.ReadAt(name, int64(off)); err != nil {
		return "", fmt.Errorf("%s: reading backing file name: %w", path, err)
	}
	return string(name), nil
}

// Chain returns layer name and its ancestors that live in the pool, top
// first, and the bottom file outside it ("" when the chain ends in the
// pool, e.g. at a raw seed layer).
func (p *Pool) Chain(name string) (chain []string, outside string, err error) {
	for name != "" {
		if filepath.IsAbs(name) {
			if filepath.Dir(name) != p.Dir {
				return chain, name, nil
			}
			name = filepath.Base(name)
		}
		if len(chain) > 4096 {
			return nil, "", fmt.Errorf("layer chain of %s loops", chain[0])
		}
		chain = append(chain, name)
		if !strings.HasSuffix(name, ExtQCOW2) {
			return chain, "", nil
		}
		next, err := Backing(p.Path(name))
		if err != nil {
			return nil, "", fmt.Errorf("reading layer %s: %w", name, err)
		}
		name = next
	}
	return chain, "", nil
}

// Depth is the number of qcow2 layers in name's chain, name included.
func (p *Pool) Depth(name string) (int, error) {
	chain, _, err := p.Chain(name)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, l := range chain {
		if strings.HasSuffix(l, ExtQCOW2) {
			n++
		}
	}
	return n, nil
}

// Flatten rewrites top, which no running VM may have open, so that its
// parent is bottom: the data of every layer between them is copied into
// top first (qemu-img rebase in its safe mode only copies what differs),
// so top's content never changes. Interrupted, it leaves top valid on its
// old chain with some identical clusters copied.
func (p *Pool) Flatten(ctx context.Context, top, bottom string) error {
	out, err := exec.CommandContext(ctx, "qemu-img", "rebase", "-q", "-f", "qcow2", "-b", bottom, "-F", formatOf(bottom), p.Path(top)).CombinedOutput()
	if err != nil {
		return errdefs.Wrap(errdefs.ErrInternal, err, "check free disk space", "flattening disk layer %s: %s", top, bytes.TrimSpace(out))
	}
	return nil
}

// Allocated is the bytes a file occupies on disk (sparse files count only
// what is written); 0 if it is missing.
func Allocated(path string) int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0
	}
	return st.Blocks * 512
}

// Names lists the layer files in the pool.
func (p *Pool) Names() ([]string, error) {
	ents, err := os.ReadDir(p.Dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() && Valid(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// SweepResult says what a sweep kept and freed.
type SweepResult struct {
	Kept       int
	Freed      []string
	FreedBytes int64
}

// Sweep deletes every layer that no chain of roots reaches. roots is
// called after the files are listed, with the pool lock held exclusively:
// it returns every layer the records name.
func (p *Pool) Sweep(roots func() ([]string, error)) (*SweepResult, error) {
	unlock, err := p.lock(unix.LOCK_EX)
	if err != nil {
		return nil, err
	}
	defer unlock()
	names, err := p.Names()
	if err != nil {
		return nil, err
	}
	rs, err := roots()
	if err != nil {
		return nil, err
	}
	live := map[string]bool{}
	for _, r := range rs {
		if r == "" || live[r] {
			continue
		}
		chain, _, err := p.Chain(r)
		if err != nil {
			// A layer we cannot read keeps everything: freeing on a guess
			// is the one mistake a sweep must not make.
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, err
		}
		for _, l := range chain {
			live[l] = true
		}
	}
	res := &SweepResult{}
	for _, n := range names {
		if live[n] {
			res.Kept++
			continue
		}
		size := Allocated(p.Path(n))
		if err := os.Remove(p.Path(n)); err == nil {
			res.Freed = append(res.Freed, n)
			res.FreedBytes += size
		}
	}
	return res, nil
}

// Usage adds up the bytes on disk of the pool layers that the chains of
// roots reach, each layer once.
func (p *Pool) Usage(roots []string) (layers int, bytes int64) {
	seen := map[string]bool{}
	for _, r := range roots {
		if r == "" {
			continue
		}
		chain, _, err := p.Chain(r)
		if err != nil {
			continue
		}
		for _, l := range chain {
			if !seen[l] {
				seen[l] = true
				layers++
				bytes += Allocated(p.Path(l))
			}
		}
	}
	return layers, bytes
}
