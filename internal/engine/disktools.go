package engine

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/ext4image"
	"github.com/pyro-mcp/pyro/internal/layers"
)

// RuntimeOnlyPaths hold what lives only while a workspace runs (secrets,
// shell and service state): the offline disk tools never show, read or
// export them.
var RuntimeOnlyPaths = []string{"/run/pyro-secrets", "/run/pyro", "/var/lib/pyro"}

func runtimeOnly(guest string) bool {
	for _, p := range RuntimeOnlyPaths {
		if guest == p || strings.HasPrefix(guest, p+"/") {
			return true
		}
	}
	return false
}

// Disks the offline tools read (api.DiskExportOptions.Disk).
const (
	diskWorkspace = "workspace"
	diskRoot      = "root"
)

// diskOf maps a guest path to the disk that holds it and the path there:
// /workspace and below are the data disk's on layout 2; everything else
// (and everything on layout 1) is the root disk's.
func diskOf(rec *vmRecord, guest string) (disk, inImage string) {
	if layoutOf(rec) == api.LayoutData && (guest == api.WorkspaceRoot || strings.HasPrefix(guest, api.WorkspaceRoot+"/")) {
		return diskWorkspace, "/" + strings.TrimPrefix(strings.TrimPrefix(guest, api.WorkspaceRoot), "/")
	}
	return diskRoot, guest
}

// guestPathOf is the inverse of diskOf.
func guestPathOf(disk, inImage string) string {
	if disk == diskWorkspace {
		return path.Join(api.WorkspaceRoot, inImage)
	}
	return inImage
}

// cleanGuestPath makes p absolute (relative paths are under /workspace).
func cleanGuestPath(p string) (string, error) {
	if p == "" {
		p = api.WorkspaceRoot
	}
	if !path.IsAbs(p) {
		p = path.Join(api.WorkspaceRoot, p)
	}
	p = path.Clean(p)
	if err := ext4image.CheckPath(p); err != nil {
		return "", err
	}
	if runtimeOnly(p) {
		return "", errdefs.New(errdefs.ErrInvalidArgument, "runtime-only paths (secrets, shells, services) are never read from a disk",
			"%s is runtime-only", p)
	}
	return p, nil
}

// stoppedForDisk resolves ref to a stopped workspace with a guest disk and
// holds its lock (a boot waits for the tools).
func (e *Engine) stoppedForDisk(ref string) (*vmRecord, func(), error) {
	rec, err := e.loadWorkspace(ref)
	if err != nil {
		return nil, nil, err
	}
	if err := diskSupport(rec, "reading a disk offline"); err != nil {
		return nil, nil, err
	}
	rec, unlock, err := e.locked(e.wss, rec.ID)
	if err != nil {
		return nil, nil, err
	}
	if e.alive(rec) {
		unlock()
		return nil, nil, errdefs.New(errdefs.ErrFailedPrecondition, "stop it first (pyro workspace stop "+rec.ID+"), or read it live with workspace exec",
			"workspace %s is running: its disk is read offline only when stopped", rec.ID)
	}
	return rec, unlock, nil
}

// diskTop is the writable top of a workspace's disk.
func (e *Engine) diskTop(rec *vmRecord, disk string) (string, error) {
	d := rec.Workspace.Disk
	switch {
	case d == nil && disk == diskRoot:
		return rec.Disk, nil // a 2.4 workspace's disk.qcow2
	case d == nil:
		return "", errdefs.New(errdefs.ErrInvalidArgument, "use the root disk: /workspace is on it", "workspace %s has no separate workspace disk", rec.ID)
	case disk == diskRoot:
		return e.layerPath(d.Root), nil
	case d.Data == "":
		return "", errdefs.New(errdefs.ErrInvalidArgument, "use the root disk: /workspace is on it", "workspace %s has no separate workspace disk", rec.ID)
	}
	return e.layerPath(d.Data), nil
}

// rawImage returns a private raw copy of a stopped workspace's disk, kept
// in its directory until the disk changes (a boot removes it).
func (e *Engine) rawImage(ctx context.Context, rec *vmRecord, disk string) (string, error) {
	top, err := e.diskTop(rec, disk)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(top)
	if err != nil {
		return "", errdefs.Wrap(errdefs.ErrInternal, err, "", "workspace %s's disk", rec.ID)
	}
	dir := filepath.Join(e.wss.Path(rec.ID), "disk-cache")
	key := fmt.Sprintf("%s-%d-%d", filepath.Base(top), fi.Size(), fi.ModTime().UnixNano())
	img := filepath.Join(dir, disk+"-"+key+".raw")
	if _, err := os.Stat(img); err == nil {
		return img, nil
	}
	os.RemoveAll(dir)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", err
	}
	tmp := img + ".tmp"
	if err := ext4image.Convert(ctx, top, "qcow2", tmp); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return img, os.Rename(tmp, img)
}

// dropDiskCache removes the raw copies of a workspace's disks; its disk is
// about to change.
func (e *Engine) dropDiskCache(rec *vmRecord) {
	if rec.Kind == kindWorkspace {
		os.RemoveAll(filepath.Join(e.wss.Path(rec.ID), "disk-cache"))
	}
}

// diskPath is a path looked up on a stopped workspace's disk.
type diskPath struct {
	rec   *vmRecord
	guest string           // the path asked for, cleaned
	disk  string           // the disk that holds it
	img   string           // that disk's raw image
	in    string           // the path in img
	st    *ext4image.Entry // what is there
}

// onStoppedDisk cleans the guest path p, holds the stopped workspace ref
// (until the caller calls unlock) and looks p up on its disk: the
// preamble of the offline tools that read a path.
func (e *Engine) onStoppedDisk(ctx context.Context, ref, p string) (*diskPath, func(), error) {
	guest, err := cleanGuestPath(p)
	if err != nil {
		return nil, nil, err
	}
	rec, unlock, err := e.stoppedForDisk(ref)
	if err != nil {
		return nil, nil, err
	}
	d := &diskPath{rec: rec, guest: guest}
	d.disk, d.in = diskOf(rec, guest)
	if d.img, err = e.rawImage(ctx, rec, d.disk); err != nil {
		unlock()
		return nil, nil, err
	}
	if d.st, err = ext4image.Stat(ctx, d.img, d.in); err != nil {
		unlock()
		return nil, nil, notOnDisk(err, rec, guest)
	}
	return d, unlock, nil
}

// ListWorkspaceDisk lists a path of a stopped workspace's disks (a
// directory's entries, or the file itself), runtime-only paths left out.
func (e *Engine) ListWorkspaceDisk(ctx context.Context, ref, p string, recursive bool) (*api.DiskList, error) {
	defer e.enter()()
	d, unlock, err := e.onStoppedDisk(ctx, ref, p)
	if err != nil {
		return nil, err
	}
	defer unlock()
	out := &api.DiskList{WorkspaceID: d.rec.ID, Path: d.guest, Recursive: recursive, Entries: []api.DiskEntry{}}
	ents := []ext4image.Entry{*d.st}
	if d.st.IsDir() {
		ents, err = ext4image.List(ctx, d.img, d.in, recursive, func(p string) bool { return runtimeOnly(guestPathOf(d.disk, p)) })
		if err != nil {
			return nil, err
		}
	}
	for _, en := range ents {
		out.Entries = append(out.Entries, diskEntry(d.disk, en))
	}
	sort.Slice(out.Entries, func(i, j int) bool { return out.Entries[i].Path < out.Entries[j].Path })
	out.Count = len(out.Entries)
	return out, nil
}

func diskEntry(disk string, en ext4image.Entry) api.DiskEntry {
	t := "other"
	switch {
	case en.IsDir():
		t = "directory"
	case en.IsRegular():
		t = "file"
	case en.IsSymlink():
		t = "symlink"
	}
	return api.DiskEntry{Path: guestPathOf(disk, en.Path), Type: t, Size: en.Size, Mode: fmt.Sprintf("%04o", en.Mode&0o7777),
		MTime: en.MTime, LinkTarget: en.Link}
}

func notOnDisk(err error, rec *vmRecord, guest string) error {
	if errors.Is(err, errdefs.ErrNotFound) {
		return errdefs.New(errdefs.ErrNotFound, "list the directory with 'pyro workspace disk list "+rec.ID+" DIR'",
			"%s does not exist on workspace %s's disk", guest, rec.ID)
	}
	return err
}

// ReadWorkspaceDisk reads up to maxBytes of a regular file on a stopped
// workspace's disks. A symlink is reported, never followed.
func (e *Engine) ReadWorkspaceDisk(ctx context.Context, ref, p string, maxBytes int) (*api.DiskRead, error) {
	defer e.enter()()
	if maxBytes == 0 {
		maxBytes = api.DefaultDiskReadBytes
	}
	if maxBytes < 0 {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "give a positive `max_bytes`", "max_bytes %d is negative", maxBytes)
	}
	d, unlock, err := e.onStoppedDisk(ctx, ref, p)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if !d.st.IsRegular() {
		what := "a directory: list it with 'pyro workspace disk list'"
		if d.st.IsSymlink() {
			what = "a symlink to " + d.st.Link + ": read its target's path instead"
		}
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "", "%s is not a regular file; it is %s", d.guest, what)
	}
	data, err := ext4image.Read(ctx, d.img, d.st, int64(maxBytes))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	r := &api.DiskRead{WorkspaceID: d.rec.ID, Path: d.guest, Size: d.st.Size, Truncated: int64(len(data)) < d.st.Size, SHA256: hex.EncodeToString(sum[:])}
	if utf8.Valid(data) {
		r.Content, r.Encoding = string(data), "utf-8"
	} else {
		r.Content, r.Encoding = base64.StdEncoding.EncodeToString(data), "base64"
	}
	return r, nil
}

// ExportWorkspaceDisk writes a stopped workspace's disk to output as a
// sparse raw ext4 image, its journal replayed and runtime-only paths
// removed. It never replaces an existing file without o.Force, and never
// writes through a symlink at output (the image is renamed into place).
func (e *Engine) ExportWorkspaceDisk(ctx context.Context, ref, output string, o api.DiskExportOptions) (*api.DiskExportResult, error) {
	defer e.enter()()
	if output == "" {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "give the host path to write the image to (`output_path`)", "no output path")
	}
	out, err := filepath.Abs(output)
	if err != nil {
		return nil, err
	}
	if o.Disk != "" && o.Disk != diskWorkspace && o.Disk != diskRoot {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "use `disk` workspace or root", "unknown disk %q", o.Disk)
	}
	if fi, err := os.Lstat(out); err == nil {
		if !o.Force {
			return nil, errdefs.New(errdefs.ErrAlreadyExists, "pick another path, or replace it with `force`", "%s already exists", out)
		}
		if fi.IsDir() {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "give a file path", "%s is a directory", out)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "", "checking %s", out)
	}
	rec, unlock, err := e.stoppedForDisk(ref)
	if err != nil {
		return nil, err
	}
	defer unlock()
	disk := o.Disk
	if disk == "" {
		disk = diskRoot
		if layoutOf(rec) == api.LayoutData {
			disk = diskWorkspace
		}
	}
	top, err := e.diskTop(rec, disk)
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".pyro-export-")
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "give a path in a writable directory", "writing %s", out)
	}
	tmp.Close()
	os.Remove(tmp.Name())
	defer os.Remove(tmp.Name())
	if err := ext4image.Convert(ctx, top, layers.Format(top), tmp.Name()); err != nil {
		return nil, err
	}
	res := &api.DiskExportResult{WorkspaceID: rec.ID, Disk: disk, OutputPath: out, Scrubbed: []string{}}
	for _, p := range RuntimeOnlyPaths {
		d, in := diskOf(rec, p)
		if d != disk {
			continue
		}
		removed, err := ext4image.Remove(ctx, tmp.Name(), in)
		if err != nil {
			return nil, err
		}
		if removed {
			res.Scrubbed = append(res.Scrubbed, p)
		}
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInternal, err, "", "writing %s", out)
	}
	if fi, err := os.Stat(out); err == nil {
		res.Bytes = fi.Size()
	}
	res.AllocatedBytes = layers.Allocated(out)
	return res, nil
}
