package firecracker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// Jailer runs Firecracker through its jailer: chrooted under
// ChrootBase/firecracker/<id>/root, in its own namespaces and cgroup, as
// UID:GID. Configure it with PYRO_FIRECRACKER_JAILER (the jailer binary),
// PYRO_FIRECRACKER_UID, PYRO_FIRECRACKER_GID and
// PYRO_FIRECRACKER_CHROOT_BASE, or Options.Jailer.
type Jailer struct {
	Bin        string
	UID, GID   int
	ChrootBase string // default /srv/jailer
	NetNS      string // optional: --netns PATH
}

// DefaultChrootBase is the jailer's own default.
const DefaultChrootBase = "/srv/jailer"

// JailerFromEnv reads the jailer configuration; nil when
// PYRO_FIRECRACKER_JAILER is unset.
func JailerFromEnv() (*Jailer, error) {
	bin := os.Getenv("PYRO_FIRECRACKER_JAILER")
	if bin == "" {
		return nil, nil
	}
	j := &Jailer{Bin: bin, ChrootBase: os.Getenv("PYRO_FIRECRACKER_CHROOT_BASE"), NetNS: os.Getenv("PYRO_FIRECRACKER_NETNS")}
	for _, v := range []struct {
		env string
		dst *int
	}{{"PYRO_FIRECRACKER_UID", &j.UID}, {"PYRO_FIRECRACKER_GID", &j.GID}} {
		s := os.Getenv(v.env)
		if s == "" {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "set "+v.env+" to the unprivileged id the jailed firecracker runs as",
				"PYRO_FIRECRACKER_JAILER is set but %s is not", v.env)
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "use a numeric id", "%s=%q is not a numeric id", v.env, s)
		}
		*v.dst = n
	}
	return j, nil
}

func (j *Jailer) base() string {
	if j.ChrootBase == "" {
		return DefaultChrootBase
	}
	return j.ChrootBase
}

// ChrootDir is the jail root for a VM: <base>/<exec-file name>/<id>/root.
func (j *Jailer) ChrootDir(fcBin, id string) string {
	return filepath.Join(j.base(), filepath.Base(fcBin), id, "root")
}

// Args is the jailer command line; Firecracker's own arguments follow "--"
// and are resolved inside the chroot.
func (j *Jailer) Args(fcBin, id string) []string {
	a := []string{
		"--id", id, "--exec-file", fcBin,
		"--uid", strconv.Itoa(j.UID), "--gid", strconv.Itoa(j.GID),
		"--chroot-base-dir", j.base(),
	}
	if j.NetNS != "" {
		a = append(a, "--netns", j.NetNS)
	}
	return append(a, "--", "--api-sock", "/"+APISocket, "--log-path", "/"+LogFIFO, "--level", "Warning")
}

// stageAll stages the kernel, initrd and disks of spec into the chroot at
// root and returns how host paths map to the paths Firecracker sees.
func (j *Jailer) stageAll(root string, spec vmm.MachineSpec) (func(string) string, error) {
	staged := map[string]string{}
	stage := func(p, name string, writable bool) error {
		if p == "" || staged[p] != "" {
			return nil
		}
		in, err := j.stage(root, p, name, writable)
		staged[p] = in
		return err
	}
	if spec.Restore == nil {
		if err := stage(spec.Kernel, filepath.Base(spec.Kernel), false); err != nil {
			return nil, err
		}
		if err := stage(spec.Initrd, filepath.Base(spec.Initrd), false); err != nil {
			return nil, err
		}
	} else {
		// A restore reads the state and memory files instead (snapshot.go).
		// They are 0600: hard links given to the jailer's user, so that it
		// can read them (pyro runs as root with the jailer and reads them
		// still), never copies (a memory file is the guest's whole RAM).
		memory, err := restoreMemory(spec)
		if err != nil {
			return nil, err
		}
		if err := stage(spec.Restore.State, jailState, true); err != nil {
			return nil, err
		}
		if err := stage(memory, jailMemory, true); err != nil {
			return nil, err
		}
	}
	// Drives by fixed names: a snapshot refers to them by path.
	for i, d := range spec.Disks {
		if err := stage(d.Path, drivePrefix+driveID(i, d), !d.ReadOnly); err != nil {
			return nil, err
		}
	}
	return func(p string) string {
		if s, ok := staged[p]; ok {
			return s
		}
		if rel, err := filepath.Rel(root, p); err == nil && !strings.HasPrefix(rel, "..") {
			return "/" + rel
		}
		return p
	}, nil
}

// stage makes a host file visible inside the jail as name: a hard link
// (so that a writable scratch disk's writes land in the real file), else,
// for read-only files only, a copy. It returns the path Firecracker sees.
func (j *Jailer) stage(root, hostPath, name string, writable bool) (string, error) {
	dst := filepath.Join(root, name)
	_ = os.Remove(dst)
	err := os.Link(hostPath, dst)
	if err != nil {
		if writable || !errors.Is(err, syscall.EXDEV) {
			return "", errdefs.Wrap(errdefs.ErrFailedPrecondition, err,
				"put PYRO_FIRECRACKER_CHROOT_BASE on the same filesystem as pyro's state and cache directories",
				"linking %s into the jailer chroot", hostPath)
		}
		if err := copyFile(hostPath, dst); err != nil {
			return "", fmt.Errorf("copying %s into the jailer chroot: %w", hostPath, err)
		}
	}
	if writable {
		if err := os.Chown(dst, j.UID, j.GID); err != nil {
			return "", fmt.Errorf("chown %s: %w", dst, err)
		}
	}
	return "/" + name, nil
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}
