package catalog

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/internal/atomicfile"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/flock"
	"github.com/pyro-mcp/pyro/internal/paths"
)

// Options configures a Store. The zero value is usable.
type Options struct {
	// Dir is the cache directory; "" means paths.CacheDir().
	Dir string
	// Registry is where Pull looks for prebuilt environments before building
	// one, as "HOST[:PORT]/prefix" (the environment "debian:12" is then
	// "HOST[:PORT]/prefix/debian:12"). "" means $PYRO_ENV_REGISTRY, else the
	// config file's "env_registry"; "none" disables the registry.
	Registry string
	// Logger receives debug logs (build tool output); nil discards.
	Logger *slog.Logger
	// Progress, if set, is called with every progress event of Pull and Push.
	Progress func(Progress)
}

// Progress is one step of a pull or push.
type Progress struct {
	Op          string `json:"op"`    // "pull" or "push"
	Phase       string `json:"phase"` // resolve, download, upload, build, verify, install, done
	Environment string `json:"environment"`
	Step        string `json:"step,omitempty"` // build: kernel, mmdebstrap; download/upload: kernel, modules, rootfs
	Bytes       int64  `json:"bytes,omitempty"`
	Total       int64  `json:"total,omitempty"`
	Source      string `json:"source,omitempty"` // done: cache, registry, build
}

// String renders a progress event as a log line:
// "[pull] phase=download environment=debian:12 step=rootfs bytes=1 total=2".
func (p Progress) String() string {
	op := p.Op
	if op == "" {
		op = "pull"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] phase=%s environment=%s", op, p.Phase, p.Environment)
	if p.Step != "" {
		fmt.Fprintf(&b, " step=%s", p.Step)
	}
	if p.Total > 0 || p.Bytes > 0 {
		fmt.Fprintf(&b, " bytes=%d total=%d", p.Bytes, p.Total)
	}
	if p.Source != "" {
		fmt.Fprintf(&b, " source=%s", p.Source)
	}
	return b.String()
}

// Store is the environment cache. Its methods are safe to call from several
// processes at once: pulls of one environment are serialised by a file lock,
// and prune excludes installs with another.
type Store struct {
	dir      string
	registry string
	log      *slog.Logger
	onProg   func(Progress)
	op       string
}

// Open returns the store in opts.Dir, creating the directory.
func Open(opts Options) (*Store, error) {
	dir := opts.Dir
	if dir == "" {
		dir = paths.CacheDir()
	}
	s := &Store{dir: dir, registry: opts.Registry, log: opts.Logger, onProg: opts.Progress, op: "pull"}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.registry == "" {
		s.registry = defaultRegistry()
	}
	if s.registry == "none" {
		s.registry = ""
	}
	s.registry = strings.TrimSuffix(s.registry, "/")
	for _, d := range []string{dir, s.path("blobs", "sha256"), s.path("envs"), s.path("leases"), s.path("locks"), s.path("tmp")} {
		if err := paths.EnsurePrivate(d); err != nil {
			return nil, errdefs.Wrap(errdefs.ErrFailedPrecondition, err,
				"set PYRO_CACHE_DIR to a writable directory", "opening the environment cache %s", dir)
		}
	}
	return s, nil
}

// Dir is the cache directory.
func (s *Store) Dir() string { return s.dir }

// Registry is the registry Pull consults, "" for none.
func (s *Store) Registry() string { return s.registry }

func defaultRegistry() string {
	if r := os.Getenv("PYRO_ENV_REGISTRY"); r != "" {
		return r
	}
	data, err := os.ReadFile(paths.ConfigFile())
	if err != nil {
		return ""
	}
	var cfg struct {
		EnvRegistry string `json:"env_registry"`
	}
	if json.Unmarshal(data, &cfg) != nil {
		return ""
	}
	return cfg.EnvRegistry
}

func (s *Store) path(elem ...string) string {
	return filepath.Join(append([]string{s.dir}, elem...)...)
}

func (s *Store) progress(p Progress) {
	if p.Op == "" {
		p.Op = s.op
	}
	if s.onProg != nil {
		s.onProg(p)
	}
}

func safeName(name string) string { return strings.NewReplacer(":", "_", "/", "_").Replace(name) }

func (s *Store) manifestPath(name string) string { return s.path("envs", safeName(name)+".json") }

// BlobPath is where the blob with digest "sha256:<hex>" lives.
func (s *Store) BlobPath(digest string) string {
	return s.path("blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
}

// EnvStatus is one catalog entry and whether it is installed.
type EnvStatus struct {
	Name             string `json:"name"`
	Version          string `json:"version"`
	Description      string `json:"description"`
	Default          bool   `json:"default"`
	Installed        bool   `json:"installed"`
	InstalledVersion string `json:"installed_version,omitempty"`
	Outdated         bool   `json:"outdated"` // installed, but an older recipe than the catalog's
	Source           string `json:"source,omitempty"`
	DiskBytes        int64  `json:"disk_bytes,omitempty"` // bytes used on disk by its blobs (sparse)
}

// List returns every catalog entry with its install state. An entry whose
// blobs are missing or truncated counts as not installed.
func (s *Store) List(ctx context.Context) ([]EnvStatus, error) {
	var out []EnvStatus
	for _, e := range entries {
		st := EnvStatus{Name: e.Name, Version: e.Version, Description: e.Description, Default: e.Default}
		if m, err := s.readManifest(e.Name); err == nil && s.checkBlobs(m) == nil {
			st.Installed = true
			st.InstalledVersion = m.Version
			st.Outdated = m.Version != e.Version
			st.Source = m.Source.Type
			for _, b := range m.Blobs.list() {
				st.DiskBytes += diskUsage(s.BlobPath(b.Digest))
			}
		}
		out = append(out, st)
	}
	return out, ctx.Err()
}

// Resolve returns the installed environment name after checking that every
// blob exists with its recorded size. Not installed, or damaged, is an
// errdefs.ErrNotFound error telling the user to pull it.
func (s *Store) Resolve(ctx context.Context, name string) (*Installed, error) {
	if _, err := Lookup(name); err != nil {
		return nil, err
	}
	hint := "run 'pyro env pull " + name + "'"
	m, err := s.readManifest(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errdefs.New(errdefs.ErrNotFound, hint, "environment %s is not installed", name)
	}
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrNotFound, err, hint, "environment %s is not installed", name)
	}
	if err := s.checkBlobs(m); err != nil {
		return nil, errdefs.Wrap(errdefs.ErrNotFound, err, hint, "environment %s is damaged", name)
	}
	return s.installed(m), ctx.Err()
}

func (s *Store) installed(m *Manifest) *Installed {
	return &Installed{
		Name: m.Name, Version: m.Version, KernelVersion: m.KernelVersion,
		KernelPath:    s.BlobPath(m.Blobs.Kernel.Digest),
		ModulesPath:   s.BlobPath(m.Blobs.Modules.Digest),
		RootfsPath:    s.BlobPath(m.Blobs.Rootfs.Digest),
		KernelDigest:  m.Blobs.Kernel.Digest,
		ModulesDigest: m.Blobs.Modules.Digest,
		RootfsDigest:  m.Blobs.Rootfs.Digest,
	}
}

// EnvInfo is everything known about one environment.
type EnvInfo struct {
	Entry     Entry      `json:"entry"`
	Installed bool       `json:"installed"`
	Problem   string     `json:"problem,omitempty"` // why an installed environment does not count
	Manifest  *Manifest  `json:"manifest,omitempty"`
	Paths     *Installed `json:"paths,omitempty"`
	Registry  string     `json:"registry_ref,omitempty"` // where Pull would look, if a registry is set
}

// Inspect describes name: the catalog entry, and the installed manifest if any.
func (s *Store) Inspect(ctx context.Context, name string) (*EnvInfo, error) {
	e, err := Lookup(name)
	if err != nil {
		return nil, err
	}
	info := &EnvInfo{Entry: e}
	if s.registry != "" {
		info.Registry = s.registry + "/" + name
	}
	m, err := s.readManifest(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		info.Problem = err.Error()
	default:
		info.Manifest = m
		if err := s.checkBlobs(m); err != nil {
			info.Problem = err.Error()
		} else {
			info.Installed = true
			info.Paths = s.installed(m)
		}
	}
	return info, ctx.Err()
}

// Verify checks the full digest of every blob of an installed environment.
func (s *Store) Verify(ctx context.Context, name string) error {
	if _, err := s.Resolve(ctx, name); err != nil {
		return err
	}
	m, err := s.readManifest(name)
	if err != nil {
		return err
	}
	return s.verifyFull(ctx, m, false)
}

func (s *Store) readManifest(name string) (*Manifest, error) {
	data, err := os.ReadFile(s.manifestPath(name))
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("reading the manifest of %s: %w", name, err)
	}
	if m.Name != name {
		return nil, fmt.Errorf("manifest of %s names %q", name, m.Name)
	}
	return &m, nil
}

// checkBlobs is the cheap check done on every use: existence and size.
func (s *Store) checkBlobs(m *Manifest) error {
	for _, b := range m.Blobs.list() {
		if !validDigest(b.Digest) {
			return fmt.Errorf("manifest has a bad digest %q", b.Digest)
		}
		fi, err := os.Stat(s.BlobPath(b.Digest))
		if err != nil {
			return fmt.Errorf("blob %s is missing", b.Digest)
		}
		if fi.Size() != b.Size {
			return fmt.Errorf("blob %s has size %d, want %d", b.Digest, fi.Size(), b.Size)
		}
	}
	return nil
}

// verifyFull hashes every blob of m. With trustStamps, a blob whose inode,
// size and change time still match the record of its last full hash is
// taken as intact: any write through the filesystem changes ctime, and
// hashing a 4 GiB image costs seconds on every pull.
func (s *Store) verifyFull(ctx context.Context, m *Manifest, trustStamps bool) error {
	if err := s.checkBlobs(m); err != nil {
		return err
	}
	for _, b := range m.Blobs.list() {
		if trustStamps && s.stampOK(b.Digest) {
			continue
		}
		d, _, err := hashFile(ctx, s.BlobPath(b.Digest))
		if err != nil {
			return err
		}
		if d != b.Digest {
			return fmt.Errorf("blob %s is corrupt (content hashes to %s)", b.Digest, d)
		}
		s.stamp(b.Digest)
	}
	return nil
}

func fileStamp(path string) string {
	var st syscall.Stat_t
	if syscall.Stat(path, &st) != nil {
		return ""
	}
	return fmt.Sprintf("%d %d %d %d.%d %d.%d", st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
}

func (s *Store) stampPath(digest string) string {
	return s.path("verified", strings.TrimPrefix(digest, "sha256:"))
}

// stamp records that the blob digest was just hashed and found intact.
func (s *Store) stamp(digest string) {
	if st := fileStamp(s.BlobPath(digest)); st != "" {
		_ = os.MkdirAll(s.path("verified"), 0o700)
		_ = atomicfile.WriteFile(s.stampPath(digest), []byte(st), 0o600)
	}
}

func (s *Store) stampOK(digest string) bool {
	data, err := os.ReadFile(s.stampPath(digest))
	return err == nil && string(data) == fileStamp(s.BlobPath(digest))
}

func validDigest(d string) bool {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(h) != 64 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}

// ctxReader stops a long copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func hashFile(ctx context.Context, path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, ctxReader{ctx, f}, make([]byte, 1<<20))
	if err != nil {
		return "", 0, err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), n, nil
}

func diskUsage(path string) int64 {
	var st syscall.Stat_t
	if syscall.Stat(path, &st) != nil {
		return 0
	}
	return st.Blocks * 512
}

// tempDir makes a private working directory under the cache (same
// filesystem as the blobs, so finished files are renamed, never copied).
func (s *Store) tempDir(name string) (string, error) {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	d := s.path("tmp", fmt.Sprintf("%s.%d.%x", safeName(name), os.Getpid(), rnd))
	return d, os.Mkdir(d, 0o700)
}

// putBlob moves a finished file into the blob store under its digest. When
// want is set the content must hash to it.
func (s *Store) putBlob(ctx context.Context, tmp, want string) (Blob, error) {
	d, n, err := hashFile(ctx, tmp)
	if err != nil {
		return Blob{}, err
	}
	if want != "" && d != want {
		return Blob{}, errdefs.New(errdefs.ErrFailedPrecondition, "the registry or the network returned bad data; try again",
			"digest mismatch: got %s, want %s", d, want)
	}
	b, err := s.putHashedBlob(tmp, Blob{Digest: d, Size: n})
	if err == nil {
		s.stamp(b.Digest)
	}
	return b, err
}

func (s *Store) putHashedBlob(tmp string, b Blob) (Blob, error) {
	dst := s.BlobPath(b.Digest)
	if fi, err := os.Stat(dst); err == nil && fi.Size() == b.Size && s.stampOK(b.Digest) {
		// Already there and known intact (another environment shares it).
		return b, os.Remove(tmp)
	}
	_ = os.Chmod(tmp, 0o644)
	if err := os.Rename(tmp, dst); err != nil {
		return Blob{}, err
	}
	return b, nil
}

func (s *Store) writeManifest(m *Manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(s.manifestPath(m.Name), append(data, '\n'), 0o600)
}

// Pull makes name installed and intact: a verified cached copy is used as
// is; otherwise it is downloaded from the registry (if one is set and has
// it), else built locally. Interrupting it leaves nothing that counts as
// installed; the next Pull repairs whatever is missing or corrupt.
func (s *Store) Pull(ctx context.Context, name string) (*Installed, error) {
	entry, err := Lookup(name)
	if err != nil {
		return nil, err
	}
	opts := pullOptions(ctx)
	if err := opts.check(); err != nil {
		return nil, err
	}
	s.progress(Progress{Phase: "resolve", Environment: name})
	envLock, err := s.acquire(ctx, "env-"+safeName(name), flock.Exclusive)
	if err != nil {
		return nil, err
	}
	defer envLock.Unlock()

	if m, err := s.readManifest(name); err == nil && m.Version == entry.Version && opts.usesCache(m) {
		s.progress(Progress{Phase: "verify", Environment: name})
		err := s.verifyFull(ctx, m, true)
		if err == nil {
			s.progress(Progress{Phase: "done", Environment: name, Source: "cache"})
			return s.installed(m), nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		s.log.Warn("installed environment is damaged; repairing", "environment", name, "err", err)
		s.dropCorrupt(ctx, m)
	}

	// Installs hold the GC lock shared so that a concurrent prune never
	// deletes a blob between its rename and the manifest naming it.
	gcLock, err := s.acquire(ctx, "gc", flock.Shared)
	if err != nil {
		return nil, err
	}
	defer gcLock.Unlock()
	tmp, err := s.tempDir(name)
	if err != nil {
		return nil, cacheWriteErr(s.dir, err)
	}
	defer removeTree(tmp)

	var m *Manifest
	if s.registry != "" {
		m, err = s.pullRegistry(ctx, entry, tmp, opts)
		if errors.Is(err, errNotInRegistry) && opts.ExpectDigest != "" {
			return nil, opts.noRegistryPull(name, s.registry)
		}
		if errors.Is(err, errNotInRegistry) {
			s.log.Info("environment not in the registry; building it locally", "ref", s.ref(name))
			m, err = nil, nil
		} else if err != nil {
			return nil, err
		}
	}
	if m == nil {
		if err := opts.noRegistryPull(name, s.registry); err != nil {
			return nil, err
		}
		if m, err = s.buildInstall(ctx, entry, tmp); err != nil {
			return nil, err
		}
	}
	s.progress(Progress{Phase: "install", Environment: name})
	if err := s.writeManifest(m); err != nil {
		return nil, cacheWriteErr(s.dir, err)
	}
	s.progress(Progress{Phase: "done", Environment: name, Source: m.Source.Type})
	return s.installed(m), nil
}

// dropCorrupt removes the manifest and every blob of m that fails its
// digest, so the repair fetches them again.
func (s *Store) dropCorrupt(ctx context.Context, m *Manifest) {
	_ = os.Remove(s.manifestPath(m.Name))
	for _, b := range m.Blobs.list() {
		if d, _, err := hashFile(ctx, s.BlobPath(b.Digest)); err == nil && d != b.Digest {
			_ = os.Remove(s.BlobPath(b.Digest))
		}
	}
}

func (s *Store) buildInstall(ctx context.Context, entry Entry, tmp string) (*Manifest, error) {
	start := time.Now()
	b, err := s.build(ctx, entry, tmp)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	s.log.Info("built environment", "environment", entry.Name, "seconds", time.Since(start).Seconds())
	s.progress(Progress{Phase: "verify", Environment: entry.Name})
	m := &Manifest{
		SchemaVersion: ManifestSchemaVersion, Name: entry.Name, Version: entry.Version,
		CatalogVersion: CatalogVersion, Description: entry.Description, Arch: "amd64", Suite: Suite,
		KernelVersion: b.kernelVersion, KernelPackage: b.kernelPackage, Packages: b.packages,
		Created: time.Now().UTC().Truncate(time.Second),
		Source:  Source{Type: "build", Mirror: mirror(), Epoch: sourceDateEpoch()},
	}
	for _, x := range []struct {
		file string
		dst  *Blob
	}{{b.kernel, &m.Blobs.Kernel}, {b.modules, &m.Blobs.Modules}, {b.rootfs, &m.Blobs.Rootfs}} {
		blob, err := s.putBlob(ctx, x.file, "")
		if err != nil {
			return nil, cacheWriteErr(s.dir, err)
		}
		*x.dst = blob
	}
	return m, nil
}

func cacheWriteErr(dir string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var e *errdefs.Error
	if errors.As(err, &e) {
		return err
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return errdefs.Wrap(errdefs.ErrFailedPrecondition, err,
			"free disk space (try 'pyro env prune') or point PYRO_CACHE_DIR at a larger disk",
			"the environment cache %s is full", dir)
	}
	return errdefs.Wrap(errdefs.ErrInternal, err, "check that PYRO_CACHE_DIR is writable", "writing the environment cache %s", dir)
}

// Remove uninstalls name (its manifest). Its blobs stay until Prune, and
// never go while a lease holds them.
func (s *Store) Remove(ctx context.Context, name string) error {
	if _, err := Lookup(name); err != nil {
		return err
	}
	envLock, err := s.acquire(ctx, "env-"+safeName(name), flock.Exclusive)
	if err != nil {
		return err
	}
	defer envLock.Unlock()
	if err := os.Remove(s.manifestPath(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

type lease struct {
	ID          string    `json:"id"`
	Environment string    `json:"environment"`
	Digests     []string  `json:"digests"`
	Created     time.Time `json:"created"`
}

func validLeaseID(id string) bool {
	return id != "" && len(id) <= 128 && !strings.ContainsAny(id, "/\\\x00") && id != "." && id != ".."
}

// Acquire records that leaseID (a VM or workspace) uses inst's blobs:
// Prune keeps them until Release, even if the environment is removed or
// replaced meanwhile. Acquiring an existing lease replaces it.
func (s *Store) Acquire(leaseID string, inst *Installed) error {
	if !validLeaseID(leaseID) {
		return errdefs.New(errdefs.ErrInvalidArgument, "", "bad lease id %q", leaseID)
	}
	if inst == nil {
		return errdefs.New(errdefs.ErrInvalidArgument, "", "lease %s: no environment", leaseID)
	}
	l := lease{ID: leaseID, Environment: inst.Name, Created: time.Now().UTC(),
		Digests: []string{inst.KernelDigest, inst.ModulesDigest, inst.RootfsDigest}}
	data, err := json.Marshal(l)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(s.path("leases", leaseID+".json"), data, 0o600)
}

// Release drops a lease. Releasing an unknown lease is not an error.
func (s *Store) Release(leaseID string) error {
	if !validLeaseID(leaseID) {
		return errdefs.New(errdefs.ErrInvalidArgument, "", "bad lease id %q", leaseID)
	}
	err := os.Remove(s.path("leases", leaseID+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// PruneResult says what Prune removed.
type PruneResult struct {
	RemovedEnvironments []string `json:"removed_environments"` // stale installs (unknown name or old recipe)
	RemovedBlobs        []string `json:"removed_blobs"`        // digests
	FreedBytes          int64    `json:"freed_bytes"`          // disk blocks freed
	LeasedBlobs         []string `json:"leased_blobs"`         // unreferenced blobs kept because a lease holds them
	RemovedTemp         int      `json:"removed_temp"`         // leftovers of interrupted pulls
}

// Prune removes installs that no longer match the catalog (unknown names,
// older recipe versions), blobs no installed environment references, and
// leftovers of interrupted pulls. A blob held by a lease is never freed.
func (s *Store) Prune(ctx context.Context) (*PruneResult, error) {
	gcLock, err := s.acquire(ctx, "gc", flock.Exclusive)
	if err != nil {
		return nil, err
	}
	defer gcLock.Unlock()
	res := &PruneResult{RemovedEnvironments: []string{}, RemovedBlobs: []string{}, LeasedBlobs: []string{}}
	keep := map[string]bool{}
	files, _ := filepath.Glob(s.path("envs", "*.json"))
	for _, f := range files {
		var m Manifest
		data, err := os.ReadFile(f)
		stale := err != nil || json.Unmarshal(data, &m) != nil
		if !stale {
			e, err := Lookup(m.Name)
			stale = err != nil || e.Version != m.Version || s.manifestPath(m.Name) != f
		}
		if stale {
			if err := os.Remove(f); err != nil {
				return nil, err
			}
			name := m.Name
			if name == "" {
				name = strings.TrimSuffix(filepath.Base(f), ".json")
			}
			res.RemovedEnvironments = append(res.RemovedEnvironments, name)
			continue
		}
		for _, b := range m.Blobs.list() {
			keep[b.Digest] = true
		}
	}
	leased := map[string]bool{}
	leases, _ := filepath.Glob(s.path("leases", "*.json"))
	for _, f := range leases {
		var l lease
		if data, err := os.ReadFile(f); err == nil && json.Unmarshal(data, &l) == nil {
			for _, d := range l.Digests {
				leased[d] = true
			}
		}
	}
	blobs, _ := os.ReadDir(s.path("blobs", "sha256"))
	for _, de := range blobs {
		d := "sha256:" + de.Name()
		if keep[d] {
			continue
		}
		if leased[d] {
			res.LeasedBlobs = append(res.LeasedBlobs, d)
			continue
		}
		p := s.BlobPath(d)
		freed := diskUsage(p)
		if err := os.RemoveAll(p); err != nil {
			return nil, err
		}
		_ = os.Remove(s.stampPath(d))
		res.RemovedBlobs = append(res.RemovedBlobs, d)
		res.FreedBytes += freed
	}
	// A temp dir belongs to a pull that holds its environment's lock; if
	// the lock is free, the pull is gone.
	tmps, _ := os.ReadDir(s.path("tmp"))
	for _, de := range tmps {
		env, _, _ := strings.Cut(de.Name(), ".")
		if l, ok := s.tryAcquire("env-" + env); ok {
			err := removeTree(s.path("tmp", de.Name()))
			l.Unlock()
			if err != nil {
				return nil, err
			}
			res.RemovedTemp++
		}
	}
	slices.Sort(res.RemovedEnvironments)
	return res, ctx.Err()
}

// removeTree removes a build directory, first detaching anything still
// mounted below it (an interrupted mmdebstrap can leave /proc, /sys and
// /dev/pts mounted in its chroot): RemoveAll must never walk into those.
func removeTree(dir string) error {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err == nil {
		var mounts []string
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) > 4 && strings.HasPrefix(unescapeMount(f[4]), dir+"/") {
				mounts = append(mounts, unescapeMount(f[4]))
			}
		}
		slices.Sort(mounts)
		slices.Reverse(mounts)
		for _, m := range mounts {
			if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
				return fmt.Errorf("unmounting %s before removing %s: %w", m, dir, err)
			}
		}
	}
	return os.RemoveAll(dir)
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}
