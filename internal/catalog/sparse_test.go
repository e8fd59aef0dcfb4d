package catalog

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sparseRef is the sparse digest as sparse.go specifies it, computed the
// obvious way from the whole content.
func sparseRef(data []byte) string {
	h := sha256.New()
	var o [8]byte
	for off := 0; off < len(data); off += sparseBlock {
		b := data[off:min(off+sparseBlock, len(data))]
		if bytes.Count(b, []byte{0}) == len(b) {
			continue
		}
		binary.BigEndian.PutUint64(o[:], uint64(off))
		h.Write(o[:])
		h.Write(b)
	}
	binary.BigEndian.PutUint64(o[:], uint64(len(data)))
	h.Write(o[:])
	return algSparse + ":" + hex.EncodeToString(h.Sum(nil))
}

// writeWithHoles writes data to path leaving holes wherever it is zero at
// 4 KiB granularity (as mkfs.ext4 does), so that data extents start and end
// in the middle of 64 KiB blocks.
func writeWithHoles(t *testing.T, path string, data []byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for off := 0; off < len(data); off += 4096 {
		b := data[off:min(off+4096, len(data))]
		if bytes.Count(b, []byte{0}) != len(b) {
			if _, err := f.WriteAt(b, int64(off)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := f.Truncate(int64(len(data))); err != nil {
		t.Fatal(err)
	}
}

func TestSparseDigest(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name string
		size int
		data map[int]string // offset -> bytes there
	}{
		{"empty", 0, nil},
		{"all zeros", 3 * mib, nil},
		{"data at the start", 3 * mib, map[int]string{0: "boot"}},
		{"data across a block boundary", 3 * mib, map[int]string{sparseBlock - 2: "abcd"}},
		{"data in the 4 KiB after a hole inside a block", 3 * mib, map[int]string{5 * 4096: "x", 9 * 4096: "y"}},
		{"short last block", 3*mib + 100, map[int]string{3*mib + 99: "z"}},
		{"short last block of zeros", 3*mib + 100, map[int]string{7: "a"}},
		{"scattered", 5 * mib, map[int]string{1: "a", mib: "b", 2*mib + 4095: "cd", 5*mib - 1: "e"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := make([]byte, tt.size)
			for off, s := range tt.data {
				copy(data[off:], s)
			}
			want := sparseRef(data)
			dir := t.TempDir()

			// Streamed, as a pull writes it.
			f, err := os.Create(filepath.Join(dir, "streamed"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			w := newSparseWriter(t.Context(), f, algSparse, int64(len(data)))
			for rest := data; len(rest) > 0; {
				k := min(len(rest), 12345) // odd writes, across blocks
				if _, err := w.Write(rest[:k]); err != nil {
					t.Fatal(err)
				}
				rest = rest[k:]
			}
			got, n, err := w.finish()
			if err != nil || got != want || n != int64(len(data)) {
				t.Fatalf("streamed: %s, %d, %v; want %s, %d", got, n, err, want, len(data))
			}
			if written, _ := os.ReadFile(f.Name()); !bytes.Equal(written, data) {
				t.Fatal("streamed file differs from the data")
			}

			// The same content, laid out three ways on disk: the digest
			// reads the data extents only and does not depend on them.
			layouts := map[string]func(p string){
				"holes at 4 KiB": func(p string) { writeWithHoles(t, p, data) },
				"no holes":       func(p string) { os.WriteFile(p, data, 0o644) },
				"as streamed":    func(p string) { os.Link(f.Name(), p) },
			}
			for name, write := range layouts {
				p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
				write(p)
				got, n, err := hashBlob(t.Context(), p, algSparse, nil)
				if err != nil || got != want || n != int64(len(data)) {
					t.Errorf("%s: hashBlob = %s, %d, %v; want %s", name, got, n, err, want)
				}
			}
		})
	}
}

// Content that differs anywhere, even only in size, has another sparse
// digest; and the plain digest of a file is unchanged by sparseWriter.
func TestSparseDigestDistinguishes(t *testing.T) {
	base := make([]byte, 1<<20)
	copy(base[70000:], "data")
	variants := map[string][]byte{
		"base":           base,
		"byte flipped":   append(bytes.Clone(base[:70000]), append([]byte("dbta"), base[70004:]...)...),
		"moved a block":  append(make([]byte, sparseBlock), base[:len(base)-sparseBlock]...),
		"one zero more":  append(bytes.Clone(base), 0),
		"one zero less":  base[:len(base)-1],
		"zero block cut": base[sparseBlock:],
	}
	seen := map[string]string{}
	for name, data := range variants {
		d := sparseRef(data)
		if other, ok := seen[d]; ok {
			t.Errorf("%s and %s have the same sparse digest", name, other)
		}
		seen[d] = name
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "plain"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := newSparseWriter(t.Context(), f, algSHA256, int64(len(base)))
	w.Write(base)
	got, _, err := w.finish()
	if want := rawBlob(base).Digest; err != nil || got != want {
		t.Errorf("plain digest through sparseWriter = %s, %v; want %s", got, err, want)
	}
	// Past its limit, a sparseWriter refuses at once.
	w = newSparseWriter(t.Context(), f, algSparse, 10)
	if _, err := w.Write(make([]byte, 11)); !errors.Is(err, errInflates) {
		t.Errorf("11 bytes into a 10-byte writer: %v, want errInflates", err)
	}
}

// A write into a hole of an installed sparse rootfs is found by a full
// verify, and the repair drops it.
func TestVerifyDetectsCorruptionInAHole(t *testing.T) {
	s := newStore(t)
	m := &Manifest{SchemaVersion: ManifestSchemaVersion, Name: "debian:12", Version: "2.4.0-1", Source: Source{Type: "build"}}
	data := make([]byte, 4<<20)
	copy(data[sparseBlock:], "superblock")
	for i, dst := range []*Blob{&m.Blobs.Kernel, &m.Blobs.Modules, &m.Blobs.Rootfs} {
		p := filepath.Join(s.path("tmp"), "blob")
		alg := algSHA256
		if i < 2 {
			os.WriteFile(p, []byte{byte('k' + i)}, 0o644)
		} else {
			writeWithHoles(t, p, data)
			alg = algSparse
		}
		b, err := s.putBlob(t.Context(), p, alg, "", "test")
		if err != nil {
			t.Fatal(err)
		}
		*dst = b
	}
	if !strings.HasPrefix(m.Blobs.Rootfs.Digest, algSparse+":") || m.Blobs.Rootfs.Digest != sparseRef(data) {
		t.Fatalf("rootfs digest %s, want %s", m.Blobs.Rootfs.Digest, sparseRef(data))
	}
	if err := s.writeManifest(m); err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(t.Context(), "debian:12"); err != nil {
		t.Fatalf("Verify intact = %v", err)
	}
	p := s.BlobPath(m.Blobs.Rootfs.Digest)
	if !strings.Contains(p, filepath.Join("blobs", algSparse)) {
		t.Errorf("sparse blob stored at %s", p)
	}
	time.Sleep(10 * time.Millisecond) // a distinct ctime even on coarse clocks
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{1}, 3<<20) // in a hole
	f.Close()
	if err := s.verifyFull(t.Context(), m, true); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("verifyFull(stamps) after a write into a hole = %v, want corrupt", err)
	}
	s.dropCorrupt(t.Context(), m)
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("corrupt blob still there: %v", err)
	}
	// Prune knows the sparse blob directory.
	if res, err := s.Prune(t.Context()); err != nil || len(res.RemovedBlobs) != 2 {
		t.Errorf("Prune = %+v, %v; want the kernel and modules blobs removed", res, err)
	}
}
