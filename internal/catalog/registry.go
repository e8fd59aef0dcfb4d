package catalog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/errcode"
	"oras.land/oras-go/v2/registry/remote/retry"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// OCI media types of a published environment.
const (
	ArtifactType      = "application/vnd.pyro.environment.v1"
	ConfigMediaType   = "application/vnd.pyro.environment.config.v1+json"
	KernelMediaType   = "application/vnd.pyro.kernel.v1"
	ModulesMediaType  = "application/vnd.pyro.modules.v1.cpio"
	RootfsMediaType   = "application/vnd.pyro.rootfs.v1.ext4+zstd"
	annotationRawHash = "dev.pyro.uncompressed.digest"
)

var errNotInRegistry = errors.New("not in the registry")

// Caps on what a registry may make a pull read, write or hold, checked on
// the sizes the registry declares and again while streaming: a registry is
// not trusted to be honest about either.
const (
	MaxManifestBytes = 1 << 20  // the OCI manifest
	MaxConfigBytes   = 1 << 20  // the environment config (the Manifest JSON)
	MaxKernelBytes   = 64 << 20 // the guest kernel (Debian's is ~14 MB)
	MaxModulesBytes  = 64 << 20 // the modules cpio (~1.1 MB)
	MaxRootfsBytes   = 16 << 30 // the rootfs image, decompressed (RootfsSize, 4 GiB, today)
)

// layerCap is the most a layer of mediaType may hold, compressed or not.
func layerCap(mediaType string) int64 {
	switch mediaType {
	case KernelMediaType:
		return MaxKernelBytes
	case ModulesMediaType:
		return MaxModulesBytes
	default:
		return MaxRootfsBytes
	}
}

func tooBig(ref, what string, size, limit int64) error {
	return errdefs.New(errdefs.ErrFailedPrecondition, "check that the registry holds a pyro environment pushed with 'pyro env push'",
		"%s of %s declares %d bytes, more than the %d pyro accepts; nothing was installed", what, ref, size, limit)
}

func (s *Store) ref(name string) string { return s.registry + "/" + name }

// repository opens ref ("HOST[:PORT]/repo[:tag]") with docker-style
// credentials. Loopback hosts (and PYRO_ENV_REGISTRY_INSECURE=1) use plain HTTP.
func repository(ref string) (*remote.Repository, error) {
	r, err := registry.ParseReference(ref)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInvalidArgument, err,
			"write it as HOST[:PORT]/repository[:tag], e.g. 127.0.0.1:5000/pyro/debian:12", "bad registry reference %q", ref)
	}
	repo := &remote.Repository{Reference: r}
	repo.PlainHTTP = insecureHost(r.Registry)
	client := &auth.Client{Client: retry.DefaultClient, Cache: auth.NewCache()}
	if store, err := credentials.NewStoreFromDocker(credentials.StoreOptions{}); err == nil {
		client.Credential = credentials.Credential(store)
	}
	repo.Client = client
	return repo, nil
}

func insecureHost(hostport string) bool {
	if os.Getenv("PYRO_ENV_REGISTRY_INSECURE") == "1" {
		return true
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// registryErr classifies a registry failure for the user.
func registryErr(err error, ref, doing string) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var resp *errcode.ErrorResponse
	if errors.As(err, &resp) && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
		host, _, _ := strings.Cut(ref, "/")
		return errdefs.Wrap(errdefs.ErrFailedPrecondition, err,
			"log in with 'docker login "+host+"' (pyro reads ~/.docker/config.json)", "%s %s: access denied", doing, ref)
	}
	var nerr net.Error
	var oerr *net.OpError
	if errors.As(err, &nerr) || errors.As(err, &oerr) || errors.Is(err, syscall.ECONNREFUSED) {
		return errdefs.Wrap(errdefs.ErrUnavailable, err,
			"check that the registry is running and reachable, or build locally with --registry=none (or unset PYRO_ENV_REGISTRY)",
			"%s %s: registry unreachable", doing, ref)
	}
	return errdefs.Wrap(errdefs.ErrUnavailable, err,
		"check the registry reference and that the registry is healthy", "%s %s", doing, ref)
}

// progressReader reports bytes read, at most every 4 MiB and at the end.
type progressReader struct {
	r           io.Reader
	n, total    int64
	last        int64
	report      func(n, total int64)
	reportedEOF bool
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if p.n-p.last >= 4<<20 || (err == io.EOF && !p.reportedEOF) || (p.n == p.total && p.last != p.n) {
		p.last = p.n
		p.reportedEOF = p.reportedEOF || err == io.EOF || p.n == p.total
		p.report(p.n, p.total)
	}
	return n, err
}

func (s *Store) pullRegistry(ctx context.Context, entry Entry, tmp string, opts PullOptions) (*Manifest, error) {
	ref := s.ref(entry.Name)
	repo, err := repository(ref)
	if err != nil {
		return nil, err
	}
	repo.MaxMetadataBytes = MaxManifestBytes
	desc, err := repo.Resolve(ctx, repo.Reference.Reference)
	if errors.Is(err, errdef.ErrNotFound) {
		return nil, errNotInRegistry
	}
	if err != nil {
		return nil, registryErr(err, ref, "resolving")
	}
	if desc.Size > MaxManifestBytes {
		return nil, tooBig(ref, "the manifest", desc.Size, MaxManifestBytes)
	}
	mdata, err := content.FetchAll(ctx, repo, desc)
	if err != nil {
		return nil, registryErr(err, ref, "fetching the manifest of")
	}
	var om ocispec.Manifest
	if err := json.Unmarshal(mdata, &om); err != nil || om.Config.MediaType != ConfigMediaType {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "push it again with 'pyro env push'",
			"%s is not a pyro environment (config media type %q)", ref, om.Config.MediaType)
	}
	// FetchAll allocates what the descriptor declares: check it first.
	if om.Config.Size > MaxConfigBytes || om.Config.Size < 0 {
		return nil, tooBig(ref, "the environment config", om.Config.Size, MaxConfigBytes)
	}
	cdata, err := content.FetchAll(ctx, repo, om.Config)
	if err != nil {
		return nil, registryErr(err, ref, "fetching the config of")
	}
	var m Manifest
	if err := json.Unmarshal(cdata, &m); err != nil {
		return nil, errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "push it again with 'pyro env push'", "bad environment config in %s", ref)
	}
	if m.Name != entry.Name || m.Version != entry.Version {
		s.log.Warn("registry has another version of the environment", "ref", ref, "name", m.Name, "version", m.Version, "want", entry.Version)
		return nil, errNotInRegistry
	}
	if err := s.checkTrust(entry, ref, desc.Digest.String(), opts); err != nil {
		return nil, err
	}
	want := map[string]*Blob{KernelMediaType: &m.Blobs.Kernel, ModulesMediaType: &m.Blobs.Modules, RootfsMediaType: &m.Blobs.Rootfs}
	steps := map[string]string{KernelMediaType: "kernel", ModulesMediaType: "modules", RootfsMediaType: "rootfs"}
	seen := 0
	for _, layer := range om.Layers {
		blob, ok := want[layer.MediaType]
		if !ok {
			continue
		}
		seen++
		if !validDigest(blob.Digest) {
			return nil, errdefs.New(errdefs.ErrFailedPrecondition, "push it again with 'pyro env push'", "bad blob digest %q in %s", blob.Digest, ref)
		}
		limit := layerCap(layer.MediaType)
		if layer.Size > limit || layer.Size < 0 {
			return nil, tooBig(ref, "the "+steps[layer.MediaType]+" layer", layer.Size, limit)
		}
		if blob.Size > limit || blob.Size < 0 {
			return nil, tooBig(ref, "the "+steps[layer.MediaType], blob.Size, limit)
		}
		if fi, err := os.Stat(s.BlobPath(blob.Digest)); err == nil && fi.Size() == blob.Size {
			continue // shared with an installed environment (e.g. the kernel)
		}
		if err := s.fetchLayer(ctx, repo, ref, layer, *blob, steps[layer.MediaType], entry.Name, tmp); err != nil {
			return nil, err
		}
	}
	if seen != 3 {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "push it again with 'pyro env push'", "%s lacks kernel, modules or rootfs layers", ref)
	}
	m.Source = Source{Type: "registry", Ref: ref + "@" + desc.Digest.String()}
	if err := s.recordTrust(entry, ref, desc.Digest.String()); err != nil {
		return nil, cacheWriteErr(s.dir, err)
	}
	return &m, nil
}

// fetchLayer downloads one layer and moves it into the cache. Everything is
// checked while it streams, in one pass: the compressed bytes against the
// layer's digest, and what they decompress to against the manifest's digest
// of the blob, computed as the file is written (a rootfs's sparse digest
// skips its all-zero blocks, which become holes and are never hashed).
func (s *Store) fetchLayer(ctx context.Context, repo *remote.Repository, ref string, layer ocispec.Descriptor, want Blob, step, name, tmp string) error {
	rc, err := repo.Fetch(ctx, layer)
	if err != nil {
		return registryErr(err, ref, "downloading "+step+" of")
	}
	defer rc.Close()
	pr := &progressReader{r: rc, total: layer.Size, report: func(n, total int64) {
		s.progress(ctx, Progress{Phase: "download", Environment: name, Step: step, Unit: "bytes", Done: n, Total: total})
	}}
	vr := content.NewVerifyReader(pr, layer)
	path := filepath.Join(tmp, step)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return cacheWriteErr(s.dir, err)
	}
	defer f.Close()
	// Never write more than the manifest declares: a layer that inflates
	// past it (a decompression bomb) is cut one byte over and refused.
	w := newSparseWriter(ctx, f, digestAlg(want.Digest), want.Size)
	if layer.MediaType == RootfsMediaType {
		// The frame's own checksum would hash the whole image again: the
		// layer digest and the blob digest already cover every byte.
		var dec *zstd.Decoder
		dec, err = zstd.NewReader(vr, zstd.WithDecoderConcurrency(2), zstd.IgnoreChecksum(true))
		if err != nil {
			return err
		}
		_, err = dec.WriteTo(w)
		dec.Close()
		if err == nil {
			// Drain so VerifyReader sees the whole layer.
			_, err = io.Copy(io.Discard, vr)
		}
	} else {
		_, err = io.CopyBuffer(w, vr, make([]byte, sparseBlock))
	}
	if errors.Is(err, errInflates) {
		return errdefs.New(errdefs.ErrFailedPrecondition, "check that the registry holds a pyro environment pushed with 'pyro env push'",
			"%s of %s inflates past the %d bytes its manifest declares; refusing it, nothing was installed", step, ref, want.Size)
	}
	if err != nil {
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
			return cacheWriteErr(s.dir, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return registryErr(err, ref, "downloading "+step+" of")
	}
	if err := vr.Verify(); err != nil {
		return errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "try again; if it persists, push the environment again",
			"layer %s of %s failed verification", layer.Digest, ref)
	}
	got, n, err := w.finish()
	if err != nil {
		return cacheWriteErr(s.dir, err)
	}
	if got != want.Digest || n != want.Size {
		return errdefs.New(errdefs.ErrFailedPrecondition, "try again; if it persists, push the environment again",
			"%s of %s: content is %s (%d bytes), manifest says %s (%d bytes)", step, ref, got, n, want.Digest, want.Size)
	}
	if err := f.Sync(); err != nil {
		return cacheWriteErr(s.dir, err)
	}
	if err := f.Close(); err != nil {
		return cacheWriteErr(s.dir, err)
	}
	if _, err := s.putHashedBlob(path, want); err != nil {
		return cacheWriteErr(s.dir, err)
	}
	s.stamp(want.Digest)
	return nil
}

// PushResult says what Push published.
type PushResult = api.PushResult

// Push publishes the installed environment name as an OCI artifact. ref is
// "HOST[:PORT]/repo:tag", or "HOST[:PORT]/prefix" to publish at
// "HOST[:PORT]/prefix/NAME" (where a Store with that Registry pulls from).
func (s *Store) Push(ctx context.Context, name, ref string) (*PushResult, error) {
	ctx = s.begin(ctx, "push", name)
	if _, err := s.Resolve(ctx, name); err != nil {
		return nil, err
	}
	m, err := s.readManifest(name)
	if err != nil {
		return nil, err
	}
	if r, err := registry.ParseReference(ref); err == nil && r.Reference == "" {
		ref = strings.TrimSuffix(ref, "/") + "/" + name
	}
	repo, err := repository(ref)
	if err != nil {
		return nil, err
	}
	if repo.Reference.Reference == "" {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "add a tag, e.g. "+ref+":"+strings.ReplaceAll(name, ":", "-"), "reference %q has no tag", ref)
	}
	s.progress(ctx, Progress{Phase: "verify", Environment: name})
	if err := s.verifyFull(ctx, m, true); err != nil {
		return nil, errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "run 'pyro env pull "+name+"' to repair it", "environment %s is damaged", name)
	}
	tmp, err := s.tempDir(name)
	if err != nil {
		return nil, cacheWriteErr(s.dir, err)
	}
	defer os.RemoveAll(tmp)

	// The artifact names its rootfs by the sparse digest, which a pull
	// checks without hashing holes; an install from before 2.5 has the plain
	// one, so the sparse one is computed here (it reads the image's data only).
	cfg := *m
	if digestAlg(m.Blobs.Rootfs.Digest) != algSparse {
		d, _, err := hashBlob(ctx, s.BlobPath(m.Blobs.Rootfs.Digest), algSparse, s.hashProgress(ctx, "rootfs", m.Blobs.Rootfs.Size))
		if err != nil {
			return nil, err
		}
		cfg.Blobs.Rootfs.Digest = d
	}
	res := &PushResult{Environment: name, Ref: ref}
	var layers []ocispec.Descriptor
	for _, l := range []struct {
		step, mediaType string
		path            string
		blob            Blob
	}{{"kernel", KernelMediaType, s.BlobPath(m.Blobs.Kernel.Digest), cfg.Blobs.Kernel},
		{"modules", ModulesMediaType, s.BlobPath(m.Blobs.Modules.Digest), cfg.Blobs.Modules},
		{"rootfs", RootfsMediaType, s.BlobPath(m.Blobs.Rootfs.Digest), cfg.Blobs.Rootfs}} {
		path := l.path
		desc := ocispec.Descriptor{MediaType: l.mediaType, Digest: digest.Digest(l.blob.Digest), Size: l.blob.Size,
			Annotations: map[string]string{ocispec.AnnotationTitle: l.step, annotationRawHash: l.blob.Digest}}
		if l.mediaType == RootfsMediaType {
			s.progress(ctx, Progress{Phase: "compress", Environment: name, Step: l.step})
			path, desc.Digest, desc.Size, err = compressZstd(ctx, path, filepath.Join(tmp, "rootfs.zst"))
			if err != nil {
				return nil, cacheWriteErr(s.dir, err)
			}
		}
		layers = append(layers, desc)
		res.Layers = append(res.Layers, Blob{Digest: desc.Digest.String(), Size: desc.Size})
		if err := s.pushBlob(ctx, repo, ref, desc, path, l.step, name); err != nil {
			return nil, err
		}
	}
	cfg.Source = Source{Type: "build", Mirror: m.Source.Mirror, Epoch: m.Source.Epoch}
	cdata, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	cdesc := content.NewDescriptorFromBytes(ConfigMediaType, cdata)
	if err := pushIfMissing(ctx, repo, cdesc, strings.NewReader(string(cdata))); err != nil {
		return nil, registryErr(err, ref, "pushing the config of "+name+" to")
	}
	mdesc, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, ArtifactType, oras.PackManifestOptions{
		ConfigDescriptor: &cdesc,
		Layers:           layers,
		ManifestAnnotations: map[string]string{
			ocispec.AnnotationCreated: m.Created.UTC().Format(time.RFC3339),
			ocispec.AnnotationTitle:   name,
			ocispec.AnnotationVersion: m.Version,
		},
	})
	if err != nil {
		return nil, registryErr(err, ref, "pushing the manifest of "+name+" to")
	}
	if err := repo.Tag(ctx, mdesc, repo.Reference.Reference); err != nil {
		return nil, registryErr(err, ref, "tagging")
	}
	res.Digest = mdesc.Digest.String()
	s.progress(ctx, Progress{Phase: "done", Environment: name, Source: "cache"})
	return res, nil
}

func pushIfMissing(ctx context.Context, repo *remote.Repository, desc ocispec.Descriptor, r io.Reader) error {
	ok, err := repo.Exists(ctx, desc)
	if err != nil {
		return err
	}
	if ok {
		return nil
	}
	err = repo.Push(ctx, desc, r)
	if errors.Is(err, errdef.ErrAlreadyExists) {
		return nil
	}
	return err
}

func (s *Store) pushBlob(ctx context.Context, repo *remote.Repository, ref string, desc ocispec.Descriptor, path, step, name string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	pr := &progressReader{r: f, total: desc.Size, report: func(n, total int64) {
		s.progress(ctx, Progress{Phase: "upload", Environment: name, Step: step, Unit: "bytes", Done: n, Total: total})
	}}
	if err := pushIfMissing(ctx, repo, desc, pr); err != nil {
		return registryErr(err, ref, fmt.Sprintf("pushing %s of %s to", step, name))
	}
	return nil
}

// compressZstd writes src compressed to dst and returns its digest and size.
func compressZstd(ctx context.Context, src, dst string) (string, digest.Digest, int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", "", 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return "", "", 0, err
	}
	defer out.Close()
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(out, h)}
	enc, err := zstd.NewWriter(cw, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(2))
	if err != nil {
		return "", "", 0, err
	}
	if _, err := io.CopyBuffer(enc, ctxReader{ctx, in}, make([]byte, 1<<20)); err != nil {
		enc.Close()
		return "", "", 0, err
	}
	if err := enc.Close(); err != nil {
		return "", "", 0, err
	}
	if err := out.Close(); err != nil {
		return "", "", 0, err
	}
	return dst, digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h.Sum(nil))), cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
