// Package hostbin owns how pyro finds the host programs it runs (QEMU,
// qemu-img, passt, Firecracker...): one function per policy, so doctor, the
// engine, the backends and the KVM probe never disagree about which binary
// is meant. A program is the caller's explicit path, else its environment
// override ($PYRO_QEMU_BIN...), else the first match on PATH, else the
// system directories a user's PATH often lacks (/usr/sbin, /sbin).
//
//	qemu, err := hostbin.QEMU.Find("")
package hostbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// Bin is one host program pyro may run.
type Bin struct {
	Name    string // the program's usual name, looked up on PATH
	Env     string // the environment variable that overrides it, or ""
	Package string // the Debian package that provides it, or "" (not packaged)
	Install string // what to do when it is missing
}

// The programs pyro runs.
var (
	QEMU = Bin{Name: "qemu-system-x86_64", Env: "PYRO_QEMU_BIN", Package: "qemu-system-x86",
		Install: "install QEMU: apt-get install qemu-system-x86 (or set PYRO_QEMU_BIN)"}
	QEMUImg = Bin{Name: "qemu-img", Package: "qemu-utils",
		Install: "install qemu-img: apt-get install qemu-utils"}
	Passt = Bin{Name: "passt", Env: "PYRO_PASST_BIN", Package: "passt",
		Install: "install passt for PYRO_NET_BACKEND=passt: apt-get install passt (or set PYRO_PASST_BIN); --network needs nothing installed"}
	Firecracker = Bin{Name: "firecracker", Env: "PYRO_FIRECRACKER_BIN",
		Install: "install firecracker from github.com/firecracker-microvm/firecracker/releases (or set PYRO_FIRECRACKER_BIN)"}
	Mmdebstrap = Bin{Name: "mmdebstrap", Package: "mmdebstrap",
		Install: "install mmdebstrap: apt-get install mmdebstrap"}
	MkfsExt4 = Bin{Name: "mkfs.ext4", Package: "e2fsprogs",
		Install: "install e2fsprogs: apt-get install e2fsprogs"}
	DockerRegistry = Bin{Name: "docker-registry", Package: "docker-registry",
		Install: "install docker-registry: apt-get install docker-registry"}
)

// sbinDirs hold programs (mkfs.ext4) that a non-root PATH often lacks.
var sbinDirs = []string{"/usr/sbin", "/sbin"}

// Wanted is what Find looks up: override, else $Env, else Name.
func (b Bin) Wanted(override string) string {
	if override != "" {
		return override
	}
	if b.Env != "" {
		if v := os.Getenv(b.Env); v != "" {
			return v
		}
	}
	return b.Name
}

// Find resolves b to an absolute path. A missing program is a
// failed-precondition error whose hint says how to install it.
func (b Bin) Find(override string) (string, error) {
	want := b.Wanted(override)
	p, err := Look(want)
	if err != nil {
		return "", errdefs.Wrap(errdefs.ErrFailedPrecondition, err, b.Install, "%s not found", want)
	}
	return p, nil
}

// Look resolves a program name (or path) the way Find does, without
// overrides: PATH, then /usr/sbin and /sbin.
func Look(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		if abs, aerr := filepath.Abs(p); aerr == nil {
			p = abs
		}
		return p, nil
	}
	if !strings.ContainsRune(name, '/') {
		for _, dir := range sbinDirs {
			c := filepath.Join(dir, name)
			if fi, serr := os.Stat(c); serr == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				return c, nil
			}
		}
	}
	return "", err
}

// Path is Find without the error: "" when b is missing.
func (b Bin) Path() string {
	p, _ := b.Find("")
	return p
}
