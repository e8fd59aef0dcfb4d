package agent

import (
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/api"
)

// Where a workspace's disks are mounted. BaselineMount is the read-only
// view of the workspace's data disk as it was at its baseline snapshot,
// which `workspace diff` compares against.
const (
	WorkspaceMount = api.WorkspaceRoot
	BaselineMount  = api.BaselineMount
)

// DiskParams are the kernel arguments that give a workspace its own data
// disk (layout 2): the virtio-blk serial numbers of the data and baseline
// disks, found in /sys/block/*/serial whatever order the devices came in.
type DiskParams struct {
	Workspace string // pyro_wsdisk: the data disk, mounted read-write at /workspace
	Baseline  string // pyro_basedisk: the baseline, mounted read-only at BaselineMount
	// Chown is pyro_wschown=UID:GID: a seed built by a host user other
	// than root; files it owns are given to root once.
	Chown string
}

// ParseDiskParams reads the data-disk arguments from a kernel command line.
func ParseDiskParams(cmdline string) DiskParams {
	var p DiskParams
	for _, f := range strings.Fields(cmdline) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "pyro_wsdisk":
			p.Workspace = v
		case "pyro_basedisk":
			p.Baseline = v
		case "pyro_wschown":
			p.Chown = v
		}
	}
	return p
}

// mountedDisks lists what mountDisks mounted, for powerOff.
var mountedDisks []string

// mountDisks mounts a workspace's data disk at /workspace and its
// baseline read-only (ext4 noload: never replay or write a journal) at
// BaselineMount. Without pyro_wsdisk there is nothing to do: /workspace
// is a directory of the root disk (a VM, or a workspace made by 2.4).
func mountDisks(log *slog.Logger, p DiskParams) error {
	if p.Workspace == "" {
		return nil
	}
	dev, err := diskBySerial(p.Workspace, 15*time.Second)
	if err != nil {
		return err
	}
	os.MkdirAll(WorkspaceMount, 0o755)
	if err := unix.Mount(dev, WorkspaceMount, "ext4", 0, ""); err != nil {
		return fmt.Errorf("mounting the workspace disk %s on %s: %w", dev, WorkspaceMount, err)
	}
	mountedDisks = append(mountedDisks, WorkspaceMount)
	if p.Chown != "" {
		chownSeed(log, p.Chown)
	}
	if p.Baseline == "" {
		return nil
	}
	bdev, err := diskBySerial(p.Baseline, 5*time.Second)
	if err != nil {
		return err
	}
	os.MkdirAll(BaselineMount, 0o755)
	if err := unix.Mount(bdev, BaselineMount, "ext4", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "noload"); err != nil {
		// diff loses its baseline, the workspace still works.
		log.Warn("mounting the baseline", "dev", bdev, "err", err)
		return nil
	}
	mountedDisks = append(mountedDisks, BaselineMount)
	return nil
}

// unmountDisks leaves the data disks clean before power-off: the
// baseline is unmounted, /workspace remounted read-only (processes may
// still hold it after the final kill).
func unmountDisks() {
	for i := len(mountedDisks) - 1; i >= 0; i-- {
		m := mountedDisks[i]
		// Killed processes release their files a moment after the kill.
		for try := 0; try < 50; try++ {
			if unix.Unmount(m, 0) == nil || unix.Mount("", m, "", unix.MS_REMOUNT|unix.MS_RDONLY, "") == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// diskBySerial finds /dev/vdX whose virtio-blk serial is serial.
func diskBySerial(serial string, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		ents, _ := os.ReadDir("/sys/block")
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join("/sys/block", e.Name(), "serial"))
			if err != nil || strings.TrimSpace(string(b)) != serial {
				continue
			}
			dev := "/dev/" + e.Name()
			if _, err := os.Stat(dev); err == nil {
				return dev, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no disk with serial %s appeared within %s", serial, wait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// chownSeed gives root the files of /workspace that the host user who
// built the seed image owns (mkfs.ext4 -d copies owners), as a seed
// unpacked by root in the guest always was.
func chownSeed(log *slog.Logger, owner string) {
	u, g, _ := strings.Cut(owner, ":")
	uid, err1 := strconv.Atoi(u)
	gid, err2 := strconv.Atoi(g)
	if err1 != nil || err2 != nil {
		return
	}
	filepath.WalkDir(WorkspaceMount, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) == nil && int(st.Uid) == uid && int(st.Gid) == gid {
			if err := unix.Lchown(p, 0, 0); err != nil {
				log.Warn("chown", "path", p, "err", err)
			}
		}
		return nil
	})
}
