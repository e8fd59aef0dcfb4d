// Package vmlinux owns turning a Linux x86 bzImage into the uncompressed ELF
// vmlinux that Firecracker needs on x86_64. It reads the boot protocol's
// setup header (payload_offset/payload_length, boot protocol >= 2.08),
// decompresses the payload (LZ4 legacy, gzip, xz or zstd, found by magic)
// and checks the result is an x86-64 ELF. Derived kernels are cached
// content-addressed by the bzImage's sha256, so each kernel is expanded once.
//
//	elfPath, err := vmlinux.Cached(cacheDir, "/path/to/vmlinuz")
package vmlinux

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
)

// Setup header offsets (Documentation/arch/x86/boot.rst).
const (
	offSetupSects    = 0x1f1
	offHeaderMagic   = 0x202
	offVersion       = 0x206
	offPayloadOffset = 0x248
	offPayloadLength = 0x24c
	minHeaderLen     = 0x250
)

// maxVmlinux bounds decompression, so a corrupt or hostile image cannot
// fill the disk or memory.
const maxVmlinux = 512 << 20

// Compression names the payload's compression, found by its magic.
type Compression string

const (
	LZ4  Compression = "lz4"
	Gzip Compression = "gzip"
	XZ   Compression = "xz"
	Zstd Compression = "zstd"
)

// Payload locates the compressed kernel inside a bzImage.
type Payload struct {
	ProtocolVersion uint16 // e.g. 0x020f
	Offset          int64  // from the start of the file
	Length          int64
	Compression     Compression
}

// IsELF reports whether the file at path starts with the ELF magic.
func IsELF(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var m [4]byte
	_, err = io.ReadFull(f, m[:])
	return err == nil && string(m[:]) == elf.ELFMAG
}

// Locate parses a bzImage's setup header.
func Locate(img []byte) (Payload, error) {
	var p Payload
	if len(img) < minHeaderLen || string(img[offHeaderMagic:offHeaderMagic+4]) != "HdrS" {
		return p, errors.New("not a bzImage (no HdrS setup header)")
	}
	p.ProtocolVersion = binary.LittleEndian.Uint16(img[offVersion:])
	if p.ProtocolVersion < 0x0208 {
		return p, fmt.Errorf("boot protocol %#x has no payload fields (need 2.08 or later)", p.ProtocolVersion)
	}
	setupSects := int64(img[offSetupSects])
	if setupSects == 0 {
		setupSects = 4
	}
	pm := (setupSects + 1) * 512 // protected-mode code starts here
	p.Offset = pm + int64(binary.LittleEndian.Uint32(img[offPayloadOffset:]))
	p.Length = int64(binary.LittleEndian.Uint32(img[offPayloadLength:]))
	if p.Length < 8 || p.Offset+p.Length > int64(len(img)) {
		return p, fmt.Errorf("payload %d+%d lies outside the %d-byte image", p.Offset, p.Length, len(img))
	}
	pl := img[p.Offset : p.Offset+p.Length]
	switch {
	case bytes.HasPrefix(pl, []byte{0x02, 0x21, 0x4c, 0x18}):
		p.Compression = LZ4
	case bytes.HasPrefix(pl, []byte{0x1f, 0x8b}):
		p.Compression = Gzip
	case bytes.HasPrefix(pl, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		p.Compression = XZ
	case bytes.HasPrefix(pl, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		p.Compression = Zstd
	default:
		return p, fmt.Errorf("unsupported payload compression (magic % x); rebuild the kernel with LZ4, gzip, xz or zstd", pl[:4])
	}
	return p, nil
}

// Extract returns the uncompressed vmlinux inside a bzImage.
func Extract(img []byte) ([]byte, Payload, error) {
	p, err := Locate(img)
	if err != nil {
		return nil, p, err
	}
	pl := img[p.Offset : p.Offset+p.Length]
	// Every compressor but gzip gets the uncompressed size appended as a
	// little-endian u32 (scripts/Makefile.lib, size_append).
	var want int64 = -1
	if p.Compression != Gzip {
		want = int64(binary.LittleEndian.Uint32(pl[len(pl)-4:]))
		pl = pl[:len(pl)-4]
	}
	var r io.Reader
	switch p.Compression {
	case LZ4:
		r = lz4.NewReader(bytes.NewReader(pl))
	case Gzip:
		zr, err := gzip.NewReader(bytes.NewReader(pl))
		if err != nil {
			return nil, p, err
		}
		zr.Multistream(false)
		r = zr
	case XZ:
		xr, err := xz.NewReader(bytes.NewReader(pl))
		if err != nil {
			return nil, p, err
		}
		r = xr
	case Zstd:
		zr, err := zstd.NewReader(bytes.NewReader(pl), zstd.WithDecoderMaxMemory(maxVmlinux))
		if err != nil {
			return nil, p, err
		}
		defer zr.Close()
		r = zr
	}
	var out bytes.Buffer
	if want > 0 && want <= maxVmlinux {
		out.Grow(int(want))
	}
	n, err := io.Copy(&out, io.LimitReader(r, maxVmlinux+1))
	if err != nil && !(want >= 0 && n == want) {
		return nil, p, fmt.Errorf("decompressing %s payload: %w", p.Compression, err)
	}
	if n > maxVmlinux {
		return nil, p, fmt.Errorf("decompressed kernel exceeds %d bytes", maxVmlinux)
	}
	if want >= 0 && n != want {
		return nil, p, fmt.Errorf("decompressed %d bytes, the image says %d", n, want)
	}
	if err := CheckELF(bytes.NewReader(out.Bytes())); err != nil {
		return nil, p, err
	}
	return out.Bytes(), p, nil
}

// CheckELF verifies an x86-64 executable ELF whose entry point lies inside
// a PT_LOAD segment: what Firecracker's loader needs.
func CheckELF(r io.ReaderAt) error {
	f, err := elf.NewFile(r)
	if err != nil {
		return fmt.Errorf("vmlinux is not an ELF: %w", err)
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("vmlinux is %s/%s, want ELFCLASS64/EM_X86_64", f.Class, f.Machine)
	}
	if f.Type != elf.ET_EXEC {
		return fmt.Errorf("vmlinux is %s, want ET_EXEC", f.Type)
	}
	if EntrySegment(f) == nil {
		return fmt.Errorf("entry point %#x lies in no PT_LOAD segment", f.Entry)
	}
	return nil
}

// EntrySegment is the PT_LOAD program header holding e_entry, by physical
// or virtual address (vmlinux's e_entry is the physical startup_64), or nil.
func EntrySegment(f *elf.File) *elf.Prog {
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD {
			continue
		}
		if (f.Entry >= p.Paddr && f.Entry < p.Paddr+p.Memsz) || (f.Entry >= p.Vaddr && f.Entry < p.Vaddr+p.Memsz) {
			return p
		}
	}
	return nil
}

// Cached returns an uncompressed ELF kernel for kernel: kernel itself when
// it already is one, else <cacheDir>/vmlinux/<sha256 of kernel>, derived
// once and written atomically.
func Cached(cacheDir, kernel string) (string, error) {
	if IsELF(kernel) {
		return kernel, nil
	}
	img, err := os.ReadFile(kernel)
	if err != nil {
		return "", fmt.Errorf("reading guest kernel: %w", err)
	}
	sum := sha256.Sum256(img)
	dir := filepath.Join(cacheDir, "vmlinux")
	out := filepath.Join(dir, hex.EncodeToString(sum[:]))
	if IsELF(out) {
		return out, nil
	}
	elfData, _, err := Extract(img)
	if err != nil {
		return "", fmt.Errorf("deriving vmlinux from %s: %w", kernel, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, ".vmlinux-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(elfData); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", err
	}
	return out, nil
}
