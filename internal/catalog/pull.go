package catalog

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"syscall"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/flock"
)

// Pull makes name installed and intact: a verified cached copy is used as
// is; otherwise it is downloaded from the registry (if one is set and has
// it), else built locally. Interrupting it leaves nothing that counts as
// installed; the next Pull repairs whatever is missing or corrupt. The
// result says where the environment came from: cache, registry or build.
func (s *Store) Pull(ctx context.Context, name string) (*api.PullResult, error) {
	entry, err := Lookup(name)
	if err != nil {
		return nil, err
	}
	opts := pullOptions(ctx)
	if err := opts.check(); err != nil {
		return nil, err
	}
	ctx = s.begin(ctx, "pull", name)
	s.progress(ctx, Progress{Phase: "resolve", Environment: name})
	envLock, err := s.acquire(ctx, "env-"+safeName(name), flock.Exclusive)
	if err != nil {
		return nil, err
	}
	defer envLock.Unlock()

	if m, err := s.readManifest(name); err == nil && m.Version == entry.Version && opts.usesCache(m) {
		s.progress(ctx, Progress{Phase: "verify", Environment: name})
		err := s.verifyFull(ctx, m, true)
		if err == nil {
			s.progress(ctx, Progress{Phase: "done", Environment: name, Source: api.SourceCache})
			return &api.PullResult{InstalledEnvironment: s.installed(m), Source: api.SourceCache}, nil
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
	s.progress(ctx, Progress{Phase: "install", Environment: name})
	if err := s.writeManifest(m); err != nil {
		return nil, cacheWriteErr(s.dir, err)
	}
	s.progress(ctx, Progress{Phase: "done", Environment: name, Source: m.Source.Type})
	return &api.PullResult{InstalledEnvironment: s.installed(m), Source: m.Source.Type}, nil
}

// dropCorrupt removes the manifest and every blob of m that fails its
// digest, so the repair fetches them again.
func (s *Store) dropCorrupt(ctx context.Context, m *Manifest) {
	_ = os.Remove(s.manifestPath(m.Name))
	for _, b := range m.Blobs.List() {
		if d, _, err := hashBlob(ctx, s.BlobPath(b.Digest), digestAlg(b.Digest), nil); err == nil && d != b.Digest {
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
	s.progress(ctx, Progress{Phase: "verify", Environment: entry.Name})
	m := &Manifest{
		SchemaVersion: ManifestSchemaVersion, Name: entry.Name, Version: entry.Version,
		CatalogVersion: CatalogVersion, Description: entry.Description, Arch: "amd64", Suite: Suite,
		KernelVersion: b.kernelVersion, KernelPackage: b.kernelPackage, Packages: b.packages,
		Created: time.Now().UTC().Truncate(time.Second),
		Source:  Source{Type: "build", Mirror: mirror(), Epoch: sourceDateEpoch()},
	}
	for _, x := range []struct {
		file, step, alg string
		dst             *Blob
	}{{b.kernel, "kernel", algSHA256, &m.Blobs.Kernel}, {b.modules, "modules", algSHA256, &m.Blobs.Modules}, {b.rootfs, "rootfs", algSparse, &m.Blobs.Rootfs}} {
		blob, err := s.putBlob(ctx, x.file, x.alg, "", x.step)
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
