// Package template owns the store of warm-start templates: guests booted
// to "agent ready", quiesced and saved, that new VMs and workspaces are
// restored from instead of booted.
//
// A template is three files saved together and only ever used together:
//
//	state        the VMM's device state (QEMU's migration stream with
//	             x-ignore-shared: no RAM), tens of KB
//	memory       the guest's RAM, a sparse file of the machine's memory
//	             size; clones map it private (copy-on-write), so every
//	             page none of them changed is shared
//	root.qcow2   the root disk as it was at the save: a qcow2 layer over
//	             the environment's root image (by absolute path). A clone's
//	             root is a new layer over it, so it reads exactly what the
//	             saved guest's page cache expects
//
// plus template.json (Meta): the Key it was built for and what to check
// before use. A template is named by its key's ID; each build lives in
// its own directory (templates/ID/BUILD/), and templates/ID/current names
// the one in use. Builds are immutable once committed: a clone takes the
// files of one build, never a mix, even while a rebuild replaces it. One
// build runs at a time per key (Lock).
package template

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro/internal/atomicfile"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/paths"
)

// FormatVersion is the version of a template's files and Meta. A change
// to either makes every older template stale (it is part of the Key).
const FormatVersion = 1

// File names inside a build directory.
const (
	StateFile  = "state"
	MemoryFile = "memory"
	RootFile   = "root.qcow2"
	MetaFile   = "template.json"
	// ConsoleFile is the build's guest console, kept for diagnosis.
	ConsoleFile = "console.log"
)

// Kinds of template: the drive topology of what is cloned from it.
const (
	KindVM        = "vm"        // one drive: the root
	KindWorkspace = "workspace" // root, /workspace's data disk, the baseline
)

// Drive is one drive of a template's machine, in order.
type Drive struct {
	Role      string `json:"role"` // "root", "data", "baseline"
	Serial    string `json:"serial,omitempty"`
	SizeBytes int64  `json:"size_bytes"`
	ReadOnly  bool   `json:"read_only,omitempty"`
}

// Key is everything a saved guest depends on: a clone may be restored
// from a template only if its own key is equal.
type Key struct {
	Format      int    `json:"format"`
	Kind        string `json:"kind"`    // KindVM or KindWorkspace
	Backend     string `json:"backend"` // "qemu" or "firecracker"
	Accel       string `json:"accel"`   // "kvm" or "tcg"
	Environment string `json:"environment"`
	// The environment's blobs, by digest.
	Kernel  string `json:"kernel"`
	Modules string `json:"modules"`
	Rootfs  string `json:"rootfs"`
	// Agent and Initramfs are the digests of the agent binary and of the
	// initramfs actually booted (not a version string: a development
	// build keeps its version while the agent changes).
	Agent     string `json:"agent"`
	Initramfs string `json:"initramfs"`
	// VMM identifies the VMM binary (path, size and modification time).
	VMM     string  `json:"vmm"`
	VCPUs   int     `json:"vcpus"`
	MemMiB  int     `json:"mem_mib"`
	Network bool    `json:"network"` // a network device
	NetMode string  `json:"net_mode,omitempty"`
	Drives  []Drive `json:"drives"`
	// Machine is the digest of the VMM's arguments for the template's
	// machine, paths normalised: whatever else changes the machine (a
	// device, a kernel argument, the CPU model) changes it.
	Machine string `json:"machine"`
}

// ID names the template of k: the first 32 hex digits of the SHA-256 of
// its JSON encoding (fields in declaration order).
func (k Key) ID() string {
	b, _ := json.Marshal(k)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// Meta is a build's template.json.
type Meta struct {
	ID        string    `json:"id"`
	Key       Key       `json:"key"`
	Build     string    `json:"build"`
	CreatedAt time.Time `json:"created_at"`
	// Pyro is the version of pyro that built it (for humans; the key
	// holds the agent's digest).
	Pyro       string `json:"pyro"`
	VMMVersion string `json:"vmm_version,omitempty"`
	// BootMs is the cold boot to "agent ready"; SaveMs the quiesce, pause
	// and state write; BuildMs the whole build.
	BootMs  int64 `json:"boot_ms"`
	SaveMs  int64 `json:"save_ms"`
	BuildMs int64 `json:"build_ms"`
	// StateSHA256 and the sizes are checked before every use.
	StateSHA256 string `json:"state_sha256"`
	StateBytes  int64  `json:"state_bytes"`
	// MemoryBytes is the memory file's length (the guest's RAM size);
	// MemoryAllocated what it occupies (the pages the guest touched).
	MemoryBytes     int64 `json:"memory_bytes"`
	MemoryAllocated int64 `json:"memory_allocated"`
	RootBytes       int64 `json:"root_bytes"`
	// RootBacking is the file root.qcow2 is a layer over.
	RootBacking string `json:"root_backing"`
}

// Template is a committed build.
type Template struct {
	Meta
	Dir string // the build directory
	// Rebuild says why the template was marked for rebuild ("" when not).
	Rebuild string `json:"rebuild,omitempty"`
}

// StatePath is the device state file.
func (t *Template) StatePath() string { return filepath.Join(t.Dir, StateFile) }

// MemoryPath is the memory file.
func (t *Template) MemoryPath() string { return filepath.Join(t.Dir, MemoryFile) }

// RootPath is the root disk layer.
func (t *Template) RootPath() string { return filepath.Join(t.Dir, RootFile) }

// DiskBytes is what the build occupies on the host's disk.
func (t *Template) DiskBytes() int64 {
	return allocated(t.StatePath()) + allocated(t.MemoryPath()) + allocated(t.RootPath())
}

// Errors of Current.
var (
	// ErrMissing: no template was built for the key.
	ErrMissing = errors.New("no template")
	// ErrCorrupt: the template's files do not match its template.json.
	ErrCorrupt = errors.New("template is corrupt")
)

// Store is the templates directory of an environment cache.
type Store struct {
	Dir string
}

// Open returns the store under cacheDir ($PYRO_CACHE_DIR/templates).
func Open(cacheDir string) *Store { return &Store{Dir: filepath.Join(cacheDir, "templates")} }

func (s *Store) keyDir(id string) string { return filepath.Join(s.Dir, id) }

// LockPath is the file whose flock serialises the builds of id.
func (s *Store) LockPath(id string) string { return filepath.Join(s.Dir, id+".lock") }

// current names the build in use: templates/ID/current holds its name.
func (s *Store) current(id string) (string, error) {
	b, err := os.ReadFile(filepath.Join(s.keyDir(id), "current"))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// Current returns the committed build of id after checking its files
// against its Meta: ErrMissing when there is none, ErrCorrupt when a file
// is missing, of the wrong size, or the state's digest differs. A
// template marked for rebuild is still returned (Rebuild says why); the
// caller decides.
func (s *Store) Current(id string) (*Template, error) {
	build, err := s.current(id)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, ErrMissing
		}
		return nil, err
	}
	t, err := s.read(id, build)
	if err != nil {
		return nil, err
	}
	if err := t.check(); err != nil {
		return t, err
	}
	return t, nil
}

func (s *Store) read(id, build string) (*Template, error) {
	dir := filepath.Join(s.keyDir(id), build)
	data, err := os.ReadFile(filepath.Join(dir, MetaFile))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	t := &Template{Dir: dir}
	if err := json.Unmarshal(data, &t.Meta); err != nil || t.ID != id || t.Build != build {
		return nil, fmt.Errorf("%w: %s does not describe this build", ErrCorrupt, MetaFile)
	}
	if b, err := os.ReadFile(filepath.Join(s.keyDir(id), "rebuild")); err == nil {
		t.Rebuild = strings.TrimSpace(string(b))
		if t.Rebuild == "" {
			t.Rebuild = "marked"
		}
	}
	return t, nil
}

// check compares the files with the Meta: sizes of all three, the
// state's digest (it is small), and that the root layer names the
// recorded backing file.
func (t *Template) check() error {
	size := func(p string) int64 {
		fi, err := os.Stat(p)
		if err != nil {
			return -1
		}
		return fi.Size()
	}
	switch {
	case size(t.StatePath()) != t.StateBytes:
		return fmt.Errorf("%w: %s has %d bytes, want %d", ErrCorrupt, StateFile, size(t.StatePath()), t.StateBytes)
	case size(t.MemoryPath()) != t.MemoryBytes:
		return fmt.Errorf("%w: %s has %d bytes, want %d", ErrCorrupt, MemoryFile, size(t.MemoryPath()), t.MemoryBytes)
	case size(t.RootPath()) != t.RootBytes:
		return fmt.Errorf("%w: %s has %d bytes, want %d", ErrCorrupt, RootFile, size(t.RootPath()), t.RootBytes)
	}
	sum, err := FileSHA256(t.StatePath())
	if err != nil || sum != t.StateSHA256 {
		return fmt.Errorf("%w: %s's digest differs from the one recorded", ErrCorrupt, StateFile)
	}
	if _, err := os.Stat(t.RootBacking); err != nil {
		return fmt.Errorf("%w: the root layer's backing file %s: %v", ErrCorrupt, t.RootBacking, err)
	}
	return nil
}

// NewBuild creates an empty build directory for id.
func (s *Store) NewBuild(id string) (build, dir string, err error) {
	if err := paths.EnsurePrivate(s.keyDir(id)); err != nil {
		return "", "", errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "check that $PYRO_CACHE_DIR is writable", "creating the template directory")
	}
	var b [6]byte
	rand.Read(b[:])
	build = time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
	dir = filepath.Join(s.keyDir(id), build)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", "", errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "check that $PYRO_CACHE_DIR is writable", "creating the template directory")
	}
	return build, dir, nil
}

// Commit writes m into its build directory and makes the build current,
// then removes the builds it replaced (a clone started from one keeps its
// open files and hard links) and the rebuild mark.
func (s *Store) Commit(m Meta) error {
	dir := filepath.Join(s.keyDir(m.ID), m.Build)
	data, _ := json.MarshalIndent(m, "", "  ")
	if err := atomicfile.WriteFile(filepath.Join(dir, MetaFile), append(data, '\n'), 0o600); err != nil {
		return errdefs.Wrap(errdefs.ErrInternal, err, "check free disk space", "writing the template's description")
	}
	if err := atomicfile.WriteFile(filepath.Join(s.keyDir(m.ID), "current"), []byte(m.Build+"\n"), 0o600); err != nil {
		return errdefs.Wrap(errdefs.ErrInternal, err, "check free disk space", "committing the template")
	}
	os.Remove(filepath.Join(s.keyDir(m.ID), "rebuild"))
	s.removeOldBuilds(m.ID, m.Build)
	return nil
}

// removeOldBuilds removes every build of id but keep.
func (s *Store) removeOldBuilds(id, keep string) {
	ents, _ := os.ReadDir(s.keyDir(id))
	for _, e := range ents {
		if e.IsDir() && e.Name() != keep {
			os.RemoveAll(filepath.Join(s.keyDir(id), e.Name()))
		}
	}
}

// MarkRebuild records that the template of id must be built again (it
// failed to restore, or its files are corrupt): it is not used until then.
func (s *Store) MarkRebuild(id, reason string) {
	if _, err := os.Stat(s.keyDir(id)); err != nil {
		return
	}
	_ = atomicfile.WriteFile(filepath.Join(s.keyDir(id), "rebuild"), []byte(reason+"\n"), 0o600)
}

// List returns every template's current build, newest first, and the
// IDs of key directories without a usable one (to prune).
func (s *Store) List() (ts []*Template, broken []string, err error) {
	ents, err := os.ReadDir(s.Dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, nil
		}
		return nil, nil, err
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		id := e.Name()
		build, err := s.current(id)
		if err != nil {
			broken = append(broken, id)
			continue
		}
		t, err := s.read(id, build)
		if err != nil {
			broken = append(broken, id)
			continue
		}
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].CreatedAt.After(ts[j].CreatedAt) })
	return ts, broken, nil
}

// Remove deletes every build of id. A clone started from it keeps its
// open files and hard links.
func (s *Store) Remove(id string) (freed int64, err error) {
	filepath.WalkDir(s.keyDir(id), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			freed += allocated(p)
		}
		return nil
	})
	if err := os.RemoveAll(s.keyDir(id)); err != nil {
		return 0, err
	}
	return freed, nil
}

// FileSHA256 is the hex SHA-256 of a file's content.
func FileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
