package catalog

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/atomicfile"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

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

// checkBlobs is the cheap check done on every use: existence and size.
func (s *Store) checkBlobs(m *Manifest) error {
	for _, b := range m.Blobs.List() {
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

// verifyFull hashes every blob of m (a sparse digest reads only the data
// of the image, see sparse.go). With trustStamps, a blob whose inode, size
// and change time still match the record of its last full hash is taken as
// intact: any write through the filesystem changes ctime.
func (s *Store) verifyFull(ctx context.Context, m *Manifest, trustStamps bool) error {
	if err := s.checkBlobs(m); err != nil {
		return err
	}
	for i, b := range m.Blobs.List() {
		if trustStamps && s.stampOK(b.Digest) {
			continue
		}
		d, _, err := hashBlob(ctx, s.BlobPath(b.Digest), digestAlg(b.Digest), s.hashProgress(ctx, blobNames[i], b.Size))
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
	if digestAlg(digest) == algSparse {
		return s.path("verified", algSparse+"-"+strings.TrimPrefix(digest, algSparse+":"))
	}
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

// validDigest accepts "sha256:<hex>" and "sparse-sha256:<hex>".
func validDigest(d string) bool {
	h, ok := strings.CutPrefix(d, digestAlg(d)+":")
	if !ok || len(h) != digestHexLen {
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

// hashFile returns the digest and size of a file, calling report (if not
// nil) with the bytes hashed so far as it goes.
func hashFile(ctx context.Context, path string, report func(n int64)) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	var w io.Writer = h
	if report != nil {
		w = &countingWriter{w: h, report: report}
	}
	n, err := io.CopyBuffer(w, ctxReader{ctx, f}, make([]byte, 1<<20))
	if err != nil {
		return "", 0, err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), n, nil
}

// hashProgress reports the hashing of a blob as bytes of the current
// verify phase.
func (s *Store) hashProgress(ctx context.Context, step string, size int64) func(int64) {
	return func(n int64) {
		s.progress(ctx, Progress{Phase: "verify", Step: step, Unit: api.UnitBytes, Done: n, Total: size})
	}
}

// countingWriter reports the running total of what it writes.
type countingWriter struct {
	w      io.Writer
	n      int64
	report func(n int64)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.report(c.n)
	return n, err
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

// putBlob moves a finished file into the blob store under its digest of
// algorithm alg. When want is set the content must hash to it.
func (s *Store) putBlob(ctx context.Context, tmp, alg, want, step string) (Blob, error) {
	var size int64
	if fi, err := os.Stat(tmp); err == nil {
		size = fi.Size()
	}
	d, n, err := hashBlob(ctx, tmp, alg, s.hashProgress(ctx, step, size))
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
