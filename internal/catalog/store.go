package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/atomicfile"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/paths"
	"github.com/pyro-mcp/pyro/internal/progress"
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
	// Progress, if set, receives every progress report of Pull and Push;
	// progress.WithFunc adds receivers for one call.
	Progress progress.Func
}

// Store is the environment cache. Its methods are safe to call from several
// processes at once: pulls of one environment are serialised by a file lock,
// and prune excludes installs with another.
type Store struct {
	dir      string
	registry string
	log      *slog.Logger
	onProg   progress.Func
}

// Open returns the store in opts.Dir, creating the directory.
func Open(opts Options) (*Store, error) {
	dir := opts.Dir
	if dir == "" {
		dir = paths.CacheDir()
	}
	s := &Store{dir: dir, registry: opts.Registry, log: opts.Logger, onProg: opts.Progress}
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
	for _, d := range []string{dir, s.path("blobs", algSHA256), s.path("blobs", algSparse), s.path("envs"), s.path("leases"), s.path("locks"), s.path("tmp")} {
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

// begin starts the operation op ("pull", "push") on the environment name:
// the reports of the returned context are that operation's.
func (s *Store) begin(ctx context.Context, op, name string) context.Context {
	ctx, o := progress.Start(ctx, op, s.onProg)
	o.Describe(name, "")
	return ctx
}

// progress reports p as a step of the operation ctx carries (see begin).
func (s *Store) progress(ctx context.Context, p Progress) {
	progress.From(ctx).Report(p)
}

func safeName(name string) string { return strings.NewReplacer(":", "_", "/", "_").Replace(name) }

func (s *Store) manifestPath(name string) string { return s.path("envs", safeName(name)+".json") }

// BlobPath is where the blob with digest "<algorithm>:<hex>" lives:
// blobs/<algorithm>/<hex>.
func (s *Store) BlobPath(digest string) string {
	alg := digestAlg(digest)
	return s.path("blobs", alg, strings.TrimPrefix(digest, alg+":"))
}

// List returns every catalog entry with its install state. An entry whose
// blobs are missing or truncated counts as not installed.
func (s *Store) List(ctx context.Context) ([]api.Environment, error) {
	var out []api.Environment
	for _, e := range entries {
		st := api.Environment{Name: e.Name, Version: e.Version, Description: e.Description, Default: e.Default}
		if m, err := s.readManifest(e.Name); err == nil && s.checkBlobs(m) == nil {
			st.Installed = true
			st.InstalledVersion = m.Version
			st.Outdated = m.Version != e.Version
			st.Source = m.Source.Type
			for _, b := range m.Blobs.List() {
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

// Inspect describes name: the catalog entry, where Pull would look for it,
// and the installed manifest if any.
func (s *Store) Inspect(ctx context.Context, name string) (*api.EnvironmentInfo, error) {
	e, err := Lookup(name)
	if err != nil {
		return nil, err
	}
	info := &api.EnvironmentInfo{Name: e.Name, Version: e.Version, Description: e.Description, Default: e.Default}
	if s.registry != "" {
		info.RegistryRef = s.registry + "/" + name
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

func (s *Store) writeManifest(m *Manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(s.manifestPath(m.Name), append(data, '\n'), 0o600)
}
