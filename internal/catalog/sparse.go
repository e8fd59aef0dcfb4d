package catalog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Blob digests name an algorithm and a hex SHA-256:
//
//   - "sha256:<hex>" is the SHA-256 of every byte of the blob (the kernel,
//     the modules, and root filesystems installed before 2.5).
//   - "sparse-sha256:<hex>" is the sparse digest, used for root
//     filesystems: a 4 GiB ext4 image that is mostly holes, which a plain
//     digest would have to read and hash in full (seconds, on every pull and
//     verify). The file is cut into 64 KiB blocks (the last may be shorter);
//     the digest is the SHA-256 of, for each block that is not all zeros in
//     order, its offset as a big-endian uint64 followed by its bytes, and
//     then the file's size as a big-endian uint64. Two files with the same
//     sparse digest have the same content; computing it reads only the
//     file's data extents (SEEK_DATA), never its holes.
const (
	algSHA256    = "sha256"
	algSparse    = "sparse-sha256"
	sparseBlock  = 64 << 10
	digestHexLen = 64
)

// digestAlg is the algorithm of a digest ("sha256" when it has none we
// know).
func digestAlg(d string) string {
	if strings.HasPrefix(d, algSparse+":") {
		return algSparse
	}
	return algSHA256
}

var zeroBlock = make([]byte, sparseBlock)

func isZero(b []byte) bool {
	for len(b) > 0 {
		k := min(len(b), len(zeroBlock))
		if !bytes.Equal(b[:k], zeroBlock[:k]) {
			return false
		}
		b = b[k:]
	}
	return true
}

// sparseHash computes a digest of algorithm alg from the blocks of a file,
// given in order: every block for "sha256", only those that are not all
// zeros for "sparse-sha256".
type sparseHash struct {
	alg string
	h   hash.Hash
}

func newSparseHash(alg string) *sparseHash { return &sparseHash{alg: alg, h: sha256.New()} }

// block adds the block at off; zero says it is all zeros.
func (s *sparseHash) block(off int64, b []byte, zero bool) {
	if s.alg != algSparse {
		s.h.Write(b)
		return
	}
	if zero {
		return
	}
	var o [8]byte
	binary.BigEndian.PutUint64(o[:], uint64(off))
	s.h.Write(o[:])
	s.h.Write(b)
}

// sum ends the digest of a file of size bytes.
func (s *sparseHash) sum(size int64) string {
	if s.alg == algSparse {
		var o [8]byte
		binary.BigEndian.PutUint64(o[:], uint64(size))
		s.h.Write(o[:])
	}
	return s.alg + ":" + hex.EncodeToString(s.h.Sum(nil))
}

// errInflates is returned by a sparseWriter that was given more than its
// limit.
var errInflates = errors.New("more data than declared")

// sparseWriter writes a stream to a file in whole blocks, leaving a hole
// for every all-zero block (so a sparse image stays sparse), and digests
// it as it goes with the algorithm of the digest it must match. It never
// writes past limit bytes: a stream that inflates past it is an error, as
// soon as it does.
type sparseWriter struct {
	ctx   context.Context
	f     *os.File
	h     *sparseHash
	limit int64
	pos   int64  // stream offset of buf[0]
	buf   []byte // a partial block
}

func newSparseWriter(ctx context.Context, f *os.File, alg string, limit int64) *sparseWriter {
	return &sparseWriter{ctx: ctx, f: f, h: newSparseHash(alg), limit: limit, buf: make([]byte, 0, sparseBlock)}
}

func (w *sparseWriter) Write(p []byte) (int, error) {
	if err := w.ctx.Err(); err != nil {
		return 0, err
	}
	if w.pos+int64(len(w.buf))+int64(len(p)) > w.limit {
		return 0, errInflates
	}
	n := len(p)
	if len(w.buf) > 0 {
		k := copy(w.buf[len(w.buf):cap(w.buf)], p)
		w.buf = w.buf[:len(w.buf)+k]
		p = p[k:]
		if len(w.buf) < cap(w.buf) {
			return n, nil
		}
		if err := w.block(w.buf); err != nil {
			return 0, err
		}
		w.buf = w.buf[:0]
	}
	for len(p) >= sparseBlock {
		if err := w.block(p[:sparseBlock]); err != nil {
			return 0, err
		}
		p = p[sparseBlock:]
	}
	w.buf = append(w.buf, p...)
	return n, nil
}

// block writes b (a whole block, or the last one) at pos, or skips it.
func (w *sparseWriter) block(b []byte) error {
	zero := isZero(b)
	w.h.block(w.pos, b, zero)
	if !zero {
		if _, err := w.f.WriteAt(b, w.pos); err != nil {
			return err
		}
	}
	w.pos += int64(len(b))
	return nil
}

// finish writes what is left, sets the file's size and returns the
// stream's digest and size.
func (w *sparseWriter) finish() (string, int64, error) {
	if len(w.buf) > 0 {
		if err := w.block(w.buf); err != nil {
			return "", 0, err
		}
		w.buf = w.buf[:0]
	}
	if err := w.f.Truncate(w.pos); err != nil {
		return "", 0, err
	}
	return w.h.sum(w.pos), w.pos, nil
}

// writeSparse copies r to f as a sparseWriter does (plain digest, no
// limit) and returns the bytes copied.
func writeSparse(ctx context.Context, f *os.File, r io.Reader) (int64, error) {
	w := newSparseWriter(ctx, f, algSHA256, 1<<62)
	if _, err := io.CopyBuffer(w, r, make([]byte, sparseBlock)); err != nil {
		return 0, err
	}
	_, n, err := w.finish()
	return n, err
}

// hashBlob returns the digest of path with algorithm alg and its size,
// calling report (if not nil) with the offset reached as it goes. A
// sparse digest reads only the file's data extents.
func hashBlob(ctx context.Context, path, alg string, report func(n int64)) (string, int64, error) {
	if alg != algSparse {
		return hashFile(ctx, path, report)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	size := fi.Size()
	h := newSparseHash(alg)
	buf := make([]byte, sparseBlock)
	fd := int(f.Fd())
	for next := int64(0); next < size; {
		data, err := unix.Seek(fd, next, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil {
			return "", 0, fmt.Errorf("seeking data in %s: %w", path, err)
		}
		end, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return "", 0, fmt.Errorf("seeking a hole in %s: %w", path, err)
		}
		for off := max(data&^(sparseBlock-1), next); off < end && off < size; off += sparseBlock {
			if err := ctx.Err(); err != nil {
				return "", 0, err
			}
			b := buf[:min(sparseBlock, size-off)]
			if _, err := f.ReadAt(b, off); err != nil {
				return "", 0, err
			}
			h.block(off, b, isZero(b))
			next = off + int64(len(b))
			if report != nil {
				report(next)
			}
		}
	}
	if report != nil {
		report(size)
	}
	return h.sum(size), size, nil
}
