// Package initramfs builds the guest's initial ramdisk: a newc cpio whose
// /init is pyro's own static binary (the guest agent), followed verbatim by
// the environment's kernel-modules cpio. The result is cached by content.
package initramfs

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/pyro-mcp/pyro/internal/cpio"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// AgentBinary returns the binary to use as the guest's /init: p when set,
// else the running executable. It must be statically linked, since the
// initramfs has no dynamic loader or libc.
func AgentBinary(p string) (string, error) {
	if p == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "set PYRO_AGENT_BIN to a static pyro binary", "finding the pyro executable")
		}
		p = exe
	}
	if err := CheckStatic(p); err != nil {
		return "", err
	}
	return p, nil
}

// CheckStatic returns an error unless p is an ELF executable without a
// program interpreter (PT_INTERP).
func CheckStatic(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "set PYRO_AGENT_BIN to a static pyro binary (CGO_ENABLED=0 go build ./cmd/pyro)", "agent binary %s is not an ELF executable", p)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return errdefs.New(errdefs.ErrFailedPrecondition, "build with CGO_ENABLED=0 or set PYRO_AGENT_BIN",
				"pyro is dynamically linked; build with CGO_ENABLED=0 or set PYRO_AGENT_BIN (%s)", p)
		}
	}
	return nil
}

// Build returns the path of a cached initramfs made of the agent binary as
// /init plus the directories it needs, followed by modulesCpio (which may be
// ""). The file lives in cacheDir/initramfs, is named by the sha256 of both
// inputs and is written atomically, so concurrent builders are safe and a
// cache hit costs two hashes.
func Build(ctx context.Context, cacheDir, agentBin, modulesCpio string) (string, error) {
	img, err := Resolve(ctx, cacheDir, agentBin, modulesCpio)
	if err != nil {
		return "", err
	}
	return img.Path, nil
}

// Image is a built initramfs and what it was built from.
type Image struct {
	Path string
	// Digest names the image (the first 32 hex digits of a SHA-256 over
	// its inputs' digests); Agent is the SHA-256 of the agent binary.
	Digest string
	Agent  string
}

// Resolve is Build, also returning the digests a warm-start template is
// keyed by.
func Resolve(ctx context.Context, cacheDir, agentBin, modulesCpio string) (*Image, error) {
	if err := CheckStatic(agentBin); err != nil {
		return nil, err
	}
	dir := filepath.Join(cacheDir, "initramfs")
	h := sha256.New()
	fmt.Fprintf(h, "pyro-initramfs-v1\n")
	img := &Image{}
	for i, p := range []string{agentBin, modulesCpio} {
		if p == "" {
			fmt.Fprintf(h, "none\n")
			continue
		}
		sum, err := cachedSum(dir, p)
		if err != nil {
			return nil, errdefs.Wrap(errdefs.ErrNotFound, err, "reinstall the environment with `pyro env pull`", "hashing %s", p)
		}
		if i == 0 {
			img.Agent = sum
		}
		fmt.Fprintf(h, "%s\n", sum)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	img.Digest = hex.EncodeToString(h.Sum(nil))[:32]
	img.Path = filepath.Join(dir, img.Digest+".cpio")
	if _, err := os.Stat(img.Path); err == nil {
		return img, nil
	}
	if err := write1(dir, img.Path, agentBin, modulesCpio); err != nil {
		return nil, err
	}
	return img, nil
}

// write1 writes the image at out atomically.
func write1(dir, out, agentBin, modulesCpio string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "check PYRO_CACHE_DIR is writable", "creating %s", dir)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "check PYRO_CACHE_DIR is writable", "creating initramfs")
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp, agentBin, modulesCpio); err != nil {
		tmp.Close()
		return errdefs.Wrap(errdefs.ErrInternal, err, "", "writing initramfs")
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return errdefs.Wrap(errdefs.ErrInternal, err, "", "writing initramfs")
	}
	if err := tmp.Close(); err != nil {
		return errdefs.Wrap(errdefs.ErrInternal, err, "", "writing initramfs")
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return errdefs.Wrap(errdefs.ErrInternal, err, "", "installing initramfs")
	}
	return nil
}

// write puts our archive then the modules archive into w. The kernel's
// built-in initramfs already provides /dev/console, and the agent mounts
// devtmpfs before it needs any other node, so no device entries are needed
// (a cpio can describe them, but only root could extract them elsewhere).
func write(w io.Writer, agentBin, modulesCpio string) error {
	bin, err := os.ReadFile(agentBin)
	if err != nil {
		return err
	}
	cw := cpio.NewWriter(w, 0)
	for _, d := range []string{"dev", "proc", "sys", "newroot", "run", "tmp"} {
		cw.Mkdir(d, 0o755)
	}
	cw.File("init", 0o755, bin)
	if err := cw.Close(); err != nil {
		return err
	}
	if modulesCpio == "" {
		return nil
	}
	f, err := os.Open(modulesCpio)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

func fileSum(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
