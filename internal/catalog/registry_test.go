package catalog

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"

	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/registrytest"
)

// artifact is an environment as a registry holds it; each field can be
// made hostile.
type artifact struct {
	kernel, modules, rootfs []byte
	// rootfsDeclared, when set, is the raw rootfs size the config claims.
	rootfsDeclared int64
	// configPad grows the config JSON past what any environment needs.
	configPad int
	// marker makes two otherwise equal artifacts differ.
	marker string
	// plainRootfs names the rootfs by its plain sha256, as pyro 2.4 did.
	plainRootfs bool
	// rootfsDigest, when set, is the rootfs digest the config claims.
	rootfsDigest string
}

func goodArtifact(marker string) artifact {
	return artifact{kernel: []byte("kernel " + marker), modules: []byte("modules"), rootfs: bytes.Repeat([]byte("rootfs "+marker), 1000), marker: marker}
}

func sparseBlob(b []byte) Blob { return Blob{Digest: sparseRef(b), Size: int64(len(b))} }

func rawBlob(b []byte) Blob {
	h := sha256.Sum256(b)
	return Blob{Digest: "sha256:" + hex.EncodeToString(h[:]), Size: int64(len(b))}
}

// push publishes a as ref (HOST/prefix/debian:12) and returns the manifest
// digest.
func push(t *testing.T, ref string, a artifact) string {
	t.Helper()
	ctx := t.Context()
	entry, _ := Lookup("debian:12")
	repo, err := repository(ref)
	if err != nil {
		t.Fatal(err)
	}
	var zs bytes.Buffer
	enc, _ := zstd.NewWriter(&zs)
	enc.Write(a.rootfs)
	enc.Close()
	m := Manifest{SchemaVersion: ManifestSchemaVersion, Name: entry.Name, Version: entry.Version, Description: a.marker,
		Blobs: Blobs{Kernel: rawBlob(a.kernel), Modules: rawBlob(a.modules), Rootfs: sparseBlob(a.rootfs)}}
	if a.plainRootfs {
		m.Blobs.Rootfs = rawBlob(a.rootfs)
	}
	if a.rootfsDigest != "" {
		m.Blobs.Rootfs.Digest = a.rootfsDigest
	}
	if a.rootfsDeclared > 0 {
		m.Blobs.Rootfs.Size = a.rootfsDeclared
	}
	if a.configPad > 0 {
		m.Description = strings.Repeat("x", a.configPad)
	}
	cdata, _ := json.Marshal(m)
	cdesc := content.NewDescriptorFromBytes(ConfigMediaType, cdata)
	if err := pushIfMissing(ctx, repo, cdesc, bytes.NewReader(cdata)); err != nil {
		t.Fatal(err)
	}
	var layers []ocispec.Descriptor
	for _, l := range []struct {
		mediaType string
		data      []byte
	}{{KernelMediaType, a.kernel}, {ModulesMediaType, a.modules}, {RootfsMediaType, zs.Bytes()}} {
		d := content.NewDescriptorFromBytes(l.mediaType, l.data)
		if err := pushIfMissing(ctx, repo, d, bytes.NewReader(l.data)); err != nil {
			t.Fatal(err)
		}
		layers = append(layers, d)
	}
	mdesc, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, ArtifactType, oras.PackManifestOptions{
		ConfigDescriptor: &cdesc, Layers: layers})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Tag(ctx, mdesc, repo.Reference.Reference); err != nil {
		t.Fatal(err)
	}
	return mdesc.Digest.String()
}

func startRegistry(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(registrytest.Binary); err != nil {
		t.Skipf("needs %s (apt-get install docker-registry)", registrytest.Binary)
	}
	reg, err := registrytest.Start(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Stop)
	return reg.Addr + "/pyro"
}

// consistent checks that a refused pull left nothing installed and no
// temporary files.
func consistent(t *testing.T, s *Store) {
	t.Helper()
	if _, err := s.Resolve(t.Context(), "debian:12"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("after a refused pull Resolve = %v, want not found", err)
	}
	if ents, _ := os.ReadDir(s.path("tmp")); len(ents) != 0 {
		t.Errorf("temporary files left: %v", ents)
	}
}

// A registry that lies about sizes, or serves more than it declares, is
// refused with a clear error and the cache stays as it was.
func TestRegistryCaps(t *testing.T) {
	prefix := startRegistry(t)
	tests := []struct {
		name    string
		art     func() artifact
		wantErr string
	}{
		{"oversized config", func() artifact { a := goodArtifact("c"); a.configPad = MaxConfigBytes + 1; return a },
			"the environment config of"},
		{"rootfs inflating past its declared size", func() artifact { a := goodArtifact("r"); a.rootfsDeclared = 100; return a },
			"rootfs of " + prefix + "/debian:12 inflates past the 100 bytes its manifest declares"},
		{"kernel past cap", func() artifact { a := goodArtifact("k"); a.kernel = make([]byte, MaxKernelBytes+1); return a },
			"the kernel layer of"},
		{"rootfs not matching its sparse digest", func() artifact {
			a := goodArtifact("s")
			a.rootfsDigest = sparseRef(append(bytes.Clone(a.rootfs), 'x'))
			return a
		}, "rootfs of " + prefix + "/debian:12: content is sparse-sha256:"},
		{"rootfs not matching its plain digest", func() artifact {
			a := goodArtifact("p")
			a.plainRootfs, a.rootfsDigest = true, rawBlob([]byte("other")).Digest
			return a
		}, "rootfs of " + prefix + "/debian:12: content is sha256:"},
		{"rootfs digest of an unknown algorithm", func() artifact {
			a := goodArtifact("u")
			a.rootfsDigest = "md5:" + strings.Repeat("0", 64)
			return a
		}, "bad blob digest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			push(t, prefix+"/debian:12", tt.art())
			s, err := Open(Options{Dir: t.TempDir(), Registry: prefix})
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Pull(t.Context(), "debian:12")
			if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want failed precondition containing %q", err, tt.wantErr)
			}
			if errdefs.HintOf(err) == "" {
				t.Errorf("no hint: %v", err)
			}
			consistent(t, s)
		})
	}
}

// Trust on first use: the first verified pull pins the digest; another
// digest later is refused unless accepted or expected by name.
func TestRegistryTrustOnFirstUse(t *testing.T) {
	prefix := startRegistry(t)
	ref := prefix + "/debian:12"
	first := push(t, ref, goodArtifact("one"))
	s, err := Open(Options{Dir: t.TempDir(), Registry: prefix})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	inst, err := s.Pull(ctx, "debian:12")
	if err != nil {
		t.Fatal(err)
	}
	installedRef := func() string {
		m, err := s.readManifest("debian:12")
		if err != nil {
			t.Fatal(err)
		}
		return m.Source.Ref
	}
	if !strings.HasSuffix(installedRef(), "@"+first) {
		t.Fatalf("installed %s, want %s", installedRef(), first)
	}
	pinned := func() string {
		p, err := s.readPin("debian:12", inst.Version)
		if err != nil || p == nil {
			t.Fatalf("pin: %v %v", p, err)
		}
		return p.Digest
	}
	if pinned() != first {
		t.Fatalf("pinned %s, want %s", pinned(), first)
	}

	// Someone pushes another artifact under the same name and version.
	second := push(t, ref, goodArtifact("two"))
	if err := s.Remove(ctx, "debian:12"); err != nil {
		t.Fatal(err)
	}
	_, err = s.Pull(ctx, "debian:12")
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "trusted on first use") ||
		!strings.Contains(errdefs.HintOf(err), "--trust-new-digest") {
		t.Fatalf("err = %v (hint %q), want a trust refusal", err, errdefs.HintOf(err))
	}
	consistent(t, s)
	if pinned() != first {
		t.Fatalf("a refused pull moved the pin")
	}

	// A wrong expected digest is refused before anything is downloaded.
	_, err = s.Pull(WithPullOptions(ctx, PullOptions{ExpectDigest: first}), "debian:12")
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "not the expected "+first) {
		t.Fatalf("err = %v, want expected-digest refusal", err)
	}
	consistent(t, s)
	if _, err := s.Pull(WithPullOptions(ctx, PullOptions{ExpectDigest: "sha256:zz"}), "debian:12"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("bad digest syntax: %v", err)
	}

	// Accepted explicitly: installed and pinned.
	if _, err = s.Pull(WithPullOptions(ctx, PullOptions{TrustNewDigest: true}), "debian:12"); err != nil || !strings.HasSuffix(installedRef(), "@"+second) || pinned() != second {
		t.Fatalf("accepting the new digest: %v, %s, pin %s", err, installedRef(), pinned())
	}

	// Expecting a digest the cache holds uses the cache; naming the one the
	// registry serves installs it (and pins it) with no other switch.
	if _, err := s.Pull(WithPullOptions(ctx, PullOptions{ExpectDigest: second}), "debian:12"); err != nil {
		t.Fatal(err)
	}
	third := push(t, ref, goodArtifact("three"))
	if _, err = s.Pull(WithPullOptions(ctx, PullOptions{ExpectDigest: third}), "debian:12"); err != nil || !strings.HasSuffix(installedRef(), "@"+third) || pinned() != third {
		t.Fatalf("expected digest: %v, %s, pin %s", err, installedRef(), pinned())
	}

	// An expected digest never falls back to a local build.
	none, _ := Open(Options{Dir: t.TempDir(), Registry: "none"})
	if _, err := none.Pull(WithPullOptions(ctx, PullOptions{ExpectDigest: third}), "debian:12"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("no registry: %v", err)
	}
}

// An artifact pushed by pyro 2.4 (rootfs named by its plain sha256) still
// installs; pushing that install again publishes the sparse digest, and
// that artifact installs under it with the same content.
func TestRegistryDigestAlgorithms(t *testing.T) {
	prefix := startRegistry(t)
	ctx := t.Context()
	a := goodArtifact("legacy")
	a.rootfs = append(make([]byte, 3*sparseBlock+5), a.rootfs...) // leading zero blocks
	a.plainRootfs = true
	push(t, prefix+"/debian:12", a)
	old, err := Open(Options{Dir: t.TempDir(), Registry: prefix})
	if err != nil {
		t.Fatal(err)
	}
	inst, err := old.Pull(ctx, "debian:12")
	if err != nil {
		t.Fatal(err)
	}
	if inst.RootfsDigest != rawBlob(a.rootfs).Digest {
		t.Fatalf("legacy install: rootfs %s, want %s", inst.RootfsDigest, rawBlob(a.rootfs).Digest)
	}
	if got, _ := os.ReadFile(inst.RootfsPath); !bytes.Equal(got, a.rootfs) {
		t.Fatal("legacy install: rootfs content differs")
	}

	prefix2 := prefix + "/again"
	if _, err := old.Push(ctx, "debian:12", prefix2); err != nil {
		t.Fatal(err)
	}
	s, err := Open(Options{Dir: t.TempDir(), Registry: prefix2})
	if err != nil {
		t.Fatal(err)
	}
	inst, err = s.Pull(ctx, "debian:12")
	if err != nil {
		t.Fatal(err)
	}
	if inst.RootfsDigest != sparseRef(a.rootfs) {
		t.Fatalf("install of a new push: rootfs %s, want the sparse %s", inst.RootfsDigest, sparseRef(a.rootfs))
	}
	if got, _ := os.ReadFile(inst.RootfsPath); !bytes.Equal(got, a.rootfs) {
		t.Fatal("install of a new push: rootfs content differs")
	}
	if err := s.Verify(ctx, "debian:12"); err != nil {
		t.Fatalf("Verify = %v", err)
	}
}
