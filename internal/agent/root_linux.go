package agent

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// waitDisk waits for a block device node to appear.
func waitDisk(dev string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := os.Stat(dev); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("disk %s did not appear within 15s (is virtio_blk loaded?)", dev)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// mountRoot builds the future root at /newroot: the VM's own disk
// read-write, or (pyro_rootmode=overlay) the shared base read-only under
// an overlayfs whose upper and work directories live on the scratch disk,
// so the VM's writes persist there across reboots.
func mountRoot(p BootParams) error {
	if err := waitDisk(p.Root); err != nil {
		return err
	}
	os.MkdirAll("/newroot", 0o755)
	if p.RootMode != "overlay" {
		if err := unix.Mount(p.Root, "/newroot", "ext4", 0, ""); err != nil {
			return fmt.Errorf("mounting %s on /newroot: %w", p.Root, err)
		}
		return nil
	}
	if err := waitDisk(p.Scratch); err != nil {
		return err
	}
	for _, d := range []string{"/lower", "/scratch"} {
		os.MkdirAll(d, 0o755)
	}
	if err := unix.Mount(p.Root, "/lower", "ext4", unix.MS_RDONLY, "noload"); err != nil {
		return fmt.Errorf("mounting %s read-only on /lower: %w", p.Root, err)
	}
	if err := unix.Mount(p.Scratch, "/scratch", "ext4", 0, ""); err != nil {
		return fmt.Errorf("mounting scratch %s: %w", p.Scratch, err)
	}
	for _, d := range []string{"/scratch/upper", "/scratch/work"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	opts := "lowerdir=/lower,upperdir=/scratch/upper,workdir=/scratch/work"
	if err := unix.Mount("overlay", "/newroot", "overlay", 0, opts); err != nil {
		return fmt.Errorf("mounting the overlay root (%s): %w (is the overlay module in the environment?)", opts, err)
	}
	return nil
}

// switchRoot mounts the root (see mountRoot) at /newroot, moves the early
// mounts into it, mounts the rest and makes it /.
func switchRoot(p BootParams) error {
	if err := mountRoot(p); err != nil {
		return err
	}
	// Free the initramfs copy of the modules and of ourselves: the page
	// cache holds our running text, the rest is dead weight in RAM.
	os.RemoveAll("/lib")
	os.Remove("/init")
	for _, d := range []string{"/proc", "/sys", "/dev"} {
		os.MkdirAll("/newroot"+d, 0o755)
		if err := unix.Mount(d, "/newroot"+d, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("moving %s: %w", d, err)
		}
	}
	if err := os.Chdir("/newroot"); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("moving root: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	os.Chdir("/")
	for _, m := range []struct{ src, dst, typ, data string }{
		{"devpts", "/dev/pts", "devpts", "newinstance,ptmxmode=0666,mode=0620,gid=5"},
		{"tmpfs", "/dev/shm", "tmpfs", "mode=1777"},
		{"tmpfs", "/tmp", "tmpfs", "mode=1777"},
		{"tmpfs", "/run", "tmpfs", "mode=0755"},
	} {
		os.MkdirAll(m.dst, 0o755)
		flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
		if m.typ == "devpts" {
			flags = unix.MS_NOSUID // its ptmx and pts nodes are devices: nodev would refuse them (shells)
		}
		if err := unix.Mount(m.src, m.dst, m.typ, flags, m.data); err != nil {
			slog.Warn("mount", "dst", m.dst, "err", err)
		}
	}
	if _, err := os.Lstat("/dev/ptmx"); err == nil {
		os.Remove("/dev/ptmx")
	}
	os.Symlink("pts/ptmx", "/dev/ptmx")
	return nil
}
