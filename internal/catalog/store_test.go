package catalog

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/flock"
)

func TestLookup(t *testing.T) {
	tests := []struct {
		name    string
		wantErr error
	}{
		{"debian:12", nil},
		{"debian:12-base", nil},
		{"debian:12-build", nil},
		{"debian:11", errdefs.ErrNotFound},
		{"", errdefs.ErrNotFound},
	}
	for _, tt := range tests {
		e, err := Lookup(tt.name)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("Lookup(%q) = %v, want %v", tt.name, err, tt.wantErr)
		}
		if err == nil && e.Name != tt.name {
			t.Errorf("Lookup(%q).Name = %q", tt.name, e.Name)
		}
		if err != nil && !strings.Contains(errdefs.HintOf(err), "debian:12-build") {
			t.Errorf("Lookup(%q) hint %q does not list the valid names", tt.name, errdefs.HintOf(err))
		}
	}
	if diff := cmp.Diff([]string{"debian:12", "debian:12-base", "debian:12-build"}, Names()); diff != "" {
		t.Errorf("Names() (-want +got):\n%s", diff)
	}
}

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(Options{Dir: t.TempDir(), Registry: "none"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// installFake installs name with small made-up blobs, as a build would.
func installFake(t *testing.T, s *Store, name, version string) *Manifest {
	t.Helper()
	m := &Manifest{SchemaVersion: ManifestSchemaVersion, Name: name, Version: version, Source: Source{Type: "build"}}
	for i, dst := range []*Blob{&m.Blobs.Kernel, &m.Blobs.Modules, &m.Blobs.Rootfs} {
		p := filepath.Join(s.path("tmp"), "blob")
		if err := os.WriteFile(p, []byte(name+version+strings.Repeat("x", i+1)), 0o644); err != nil {
			t.Fatal(err)
		}
		alg := algSHA256
		if dst == &m.Blobs.Rootfs {
			alg = algSparse
		}
		b, err := s.putBlob(t.Context(), p, alg, "", name)
		if err != nil {
			t.Fatal(err)
		}
		*dst = b
	}
	if err := s.writeManifest(m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestResolve(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	_, err := s.Resolve(ctx, "debian:12")
	if !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(errdefs.HintOf(err), "pyro env pull debian:12") {
		t.Fatalf("Resolve before install = %v (hint %q), want not found telling to pull", err, errdefs.HintOf(err))
	}
	m := installFake(t, s, "debian:12", "2.4.0-1")
	inst, err := s.Resolve(ctx, "debian:12")
	if err != nil {
		t.Fatal(err)
	}
	if inst.RootfsPath != s.BlobPath(m.Blobs.Rootfs.Digest) || inst.KernelDigest != m.Blobs.Kernel.Digest {
		t.Errorf("Resolve = %+v, want paths of %+v", inst, m.Blobs)
	}
	if _, err := s.Resolve(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Resolve(unknown) = %v", err)
	}
}

// A damaged blob makes the environment "not installed", everywhere.
func TestDamagedIsNotInstalled(t *testing.T) {
	tests := []struct {
		name   string
		damage func(path string) error
	}{
		{"missing", os.Remove},
		{"truncated", func(p string) error { return os.Truncate(p, 1) }},
		{"grown", func(p string) error {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteString("more")
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			m := installFake(t, s, "debian:12", "2.4.0-1")
			if err := tt.damage(s.BlobPath(m.Blobs.Rootfs.Digest)); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Resolve(t.Context(), "debian:12"); !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("Resolve = %v, want not found", err)
			}
			envs, err := s.List(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if envs[0].Name != "debian:12" || envs[0].Installed {
				t.Errorf("List()[0] = %+v, want debian:12 not installed", envs[0])
			}
			info, err := s.Inspect(t.Context(), "debian:12")
			if err != nil || info.Installed || info.Problem == "" {
				t.Errorf("Inspect = %+v, %v; want not installed with a problem", info, err)
			}
		})
	}
}

// Same-size corruption passes the cheap check but not a full verify, and
// the verified stamp does not hide it: writing changes the file's ctime.
func TestVerifyDetectsCorruption(t *testing.T) {
	s := newStore(t)
	m := installFake(t, s, "debian:12", "2.4.0-1")
	if err := s.Verify(t.Context(), "debian:12"); err != nil {
		t.Fatalf("Verify intact = %v", err)
	}
	if err := s.verifyFull(t.Context(), m, true); err != nil {
		t.Fatalf("verifyFull(stamps) intact = %v", err)
	}
	p := s.BlobPath(m.Blobs.Kernel.Digest)
	data, _ := os.ReadFile(p)
	data[0] ^= 0xff
	time.Sleep(10 * time.Millisecond) // a distinct ctime even on coarse clocks
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Resolve(t.Context(), "debian:12"); err != nil {
		t.Fatalf("Resolve (cheap check) = %v, want ok", err)
	}
	if err := s.verifyFull(t.Context(), m, true); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("verifyFull(stamps) after corruption = %v, want corrupt", err)
	}
	// The repair path drops the bad blob and the manifest.
	s.dropCorrupt(t.Context(), m)
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("corrupt blob still there: %v", err)
	}
	if _, err := s.Resolve(t.Context(), "debian:12"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Resolve after drop = %v, want not found", err)
	}
}

func TestPruneKeepsLeasedBlobs(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	current := installFake(t, s, "debian:12", "2.4.0-1")
	stale := installFake(t, s, "debian:12-base", "0.0.1") // an older recipe
	leased := installFake(t, s, "debian:12-build", "0.0.1")
	inst, err := s.Resolve(ctx, "debian:12-build")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Acquire("vm-1", inst); err != nil {
		t.Fatal(err)
	}
	// A leftover of an interrupted pull.
	if err := os.Mkdir(s.path("tmp", "debian_12.1.abc"), 0o700); err != nil {
		t.Fatal(err)
	}
	res, err := s.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"debian:12-base", "debian:12-build"}, res.RemovedEnvironments); diff != "" {
		t.Errorf("removed environments (-want +got):\n%s", diff)
	}
	if len(res.RemovedBlobs) != 3 || len(res.LeasedBlobs) != 3 || res.RemovedTemp != 1 {
		t.Errorf("Prune = %+v, want 3 removed, 3 leased, 1 temp", res)
	}
	for _, b := range leased.Blobs.List() {
		if _, err := os.Stat(s.BlobPath(b.Digest)); err != nil {
			t.Errorf("leased blob freed: %v", err)
		}
	}
	for _, b := range stale.Blobs.List() {
		if _, err := os.Stat(s.BlobPath(b.Digest)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale blob kept: %v", err)
		}
	}
	if _, err := s.Resolve(ctx, current.Name); err != nil {
		t.Errorf("current environment pruned: %v", err)
	}
	// Once released, the blobs go.
	if err := s.Release("vm-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Release("vm-1"); err != nil {
		t.Errorf("second Release = %v, want nil", err)
	}
	res, err = s.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.RemovedBlobs) != 3 || len(res.LeasedBlobs) != 0 {
		t.Errorf("Prune after release = %+v, want the 3 formerly leased blobs removed", res)
	}
}

func TestLeaseIDs(t *testing.T) {
	s := newStore(t)
	inst := &Installed{Name: "debian:12"}
	for _, id := range []string{"", "../x", "a/b", ".."} {
		if err := s.Acquire(id, inst); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Acquire(%q) = %v, want invalid argument", id, err)
		}
	}
}

// A second pull of the same environment waits for the first: the lock is
// exclusive and the wait ends with the caller's context.
func TestPullLockIsExclusive(t *testing.T) {
	s := newStore(t)
	held, err := s.acquire(t.Context(), "env-debian_12", flock.Exclusive)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := s.Pull(ctx, "debian:12"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Pull while locked = %v, want deadline exceeded", err)
	}
	if time.Since(start) < 250*time.Millisecond {
		t.Errorf("Pull returned before its deadline")
	}
	held.Unlock()
	// Nothing counts as installed after the interrupted pull.
	if _, err := s.Resolve(t.Context(), "debian:12"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Resolve = %v, want not found", err)
	}
}

func TestWriteSparse(t *testing.T) {
	data := make([]byte, 1<<20)
	copy(data[100:], "hello")
	copy(data[900_000:], "world")
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := writeSparse(t.Context(), f, bytes.NewReader(data))
	if err != nil || n != int64(len(data)) {
		t.Fatalf("writeSparse = %d, %v", n, err)
	}
	got, _ := os.ReadFile(f.Name())
	if !bytes.Equal(got, data) {
		t.Fatal("content differs")
	}
	if du := diskUsage(f.Name()); du >= int64(len(data)) {
		t.Errorf("not sparse: %d bytes on disk", du)
	}
}

func TestProgressString(t *testing.T) {
	tests := []struct {
		p    Progress
		want string
	}{
		{Progress{Phase: "resolve", Environment: "debian:12"}, "[pull] phase=resolve environment=debian:12"},
		{Progress{Op: "push", Phase: "upload", Environment: "debian:12", Step: "rootfs", Unit: "bytes", Done: 1, Total: 2}, "[push] phase=upload environment=debian:12 step=rootfs bytes=1 total=2"},
		{Progress{Phase: "done", Environment: "debian:12", Source: "build"}, "[pull] phase=done environment=debian:12 source=build"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

func TestRegistryDefaults(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfg, []byte(`{"env_registry": "reg.example:5000/pyro/"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PYRO_CONFIG", cfg)
	tests := []struct{ opt, env, want string }{
		{"", "", "reg.example:5000/pyro"},
		{"", "127.0.0.1:5000/x", "127.0.0.1:5000/x"},
		{"none", "127.0.0.1:5000/x", ""},
		{"h:1/p", "127.0.0.1:5000/x", "h:1/p"},
	}
	for _, tt := range tests {
		t.Setenv("PYRO_ENV_REGISTRY", tt.env)
		s, err := Open(Options{Dir: dir, Registry: tt.opt})
		if err != nil {
			t.Fatal(err)
		}
		if s.Registry() != tt.want {
			t.Errorf("Open(%q) with env %q: registry %q, want %q", tt.opt, tt.env, s.Registry(), tt.want)
		}
	}
	for host, want := range map[string]bool{"127.0.0.1:5000": true, "localhost:1": true, "[::1]:5000": true, "ghcr.io": false} {
		t.Setenv("PYRO_ENV_REGISTRY_INSECURE", "")
		if got := insecureHost(host); got != want {
			t.Errorf("insecureHost(%q) = %v", host, got)
		}
	}
}

func TestFSUUIDIsStable(t *testing.T) {
	a, b := fsUUID("debian:12"), fsUUID("debian:12-base")
	if a != fsUUID("debian:12") || a == b || len(a) != 36 || a[14] != '4' {
		t.Errorf("fsUUID: %q %q", a, b)
	}
}
