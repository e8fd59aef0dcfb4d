package agent

import (
	"archive/tar"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/internal/archive"
)

// stage is the private directory where put_archive writes an archive's
// members as they arrive (archive.go). Names are relative to it, already
// accepted by the member policy: clean, relative, never through a symlink
// (the archive may not put a member under one of its own symlinks, and the
// directory starts empty), so the *at system calls below never leave it;
// besides, a file's directory is opened with
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS and the file itself created in it
// with O_EXCL|O_NOFOLLOW.
type stage struct {
	dir     string
	fd      int             // the directory, O_PATH
	dirFD   int             // the directory the last file went into (parent), O_PATH
	dirName string          // its name under the stage
	made    map[string]bool // directories known to exist under it
	dirs    []stagedDir     // the archive's directories, for setDirs
	umask   uint32
	buf     []byte
}

type stagedDir struct {
	name  string
	perm  uint32
	mtime time.Time
}

// stageBufSize is how much of a file's content moves per read and write.
const stageBufSize = 256 << 10

func newStage(hostRoot string) (*stage, error) {
	dir, err := os.MkdirTemp(hostRoot, ".pyro-stage-")
	if err != nil {
		return nil, err
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		os.Remove(dir)
		return nil, err
	}
	buf := make([]byte, stageBufSize+directAlign)
	off := int(uintptr(unsafePointer(&buf[0])) & (directAlign - 1))
	if off != 0 {
		off = directAlign - off
	}
	buf = buf[off : off+stageBufSize]
	return &stage{dir: dir, fd: fd, dirFD: -1, made: map[string]bool{".": true}, umask: processUmask(), buf: buf}, nil
}

// remove deletes whatever is left of the stage.
func (st *stage) remove() {
	unix.Close(st.fd)
	if st.dirFD >= 0 {
		unix.Close(st.dirFD)
	}
	os.RemoveAll(st.dir)
}

// readError is a failure to read the archive (as opposed to writing it).
type readError struct{ error }

func (e readError) Unwrap() error { return e.error }

// add writes one accepted member; a regular file's size bytes come from r.
func (st *stage) add(m archive.Member, perm uint32, mtime time.Time, r io.Reader, size int64) error {
	if err := st.mkdirAll(path.Dir(m.Name)); err != nil {
		return err
	}
	switch m.Type {
	case tar.TypeDir:
		// Writable while it fills; setDirs gives it its mode at the end.
		st.dirs = append(st.dirs, stagedDir{name: m.Name, perm: perm, mtime: mtime})
		return st.mkdirAll(m.Name)
	case tar.TypeReg:
		return st.file(m.Name, perm, mtime, r, size)
	case tar.TypeSymlink:
		err := replacing(st.fd, m.Name, func() error { return unix.Symlinkat(m.Linkname, st.fd, m.Name) })
		if err == nil {
			setTimes(st.fd, m.Name, mtime)
		}
		return err
	case tar.TypeLink:
		return replacing(st.fd, m.Name, func() error { return unix.Linkat(st.fd, m.Linkname, st.fd, m.Name, 0) })
	}
	return nil
}

// replacing runs create, and once more after removing the name when it
// exists: a later member of an archive replaces an earlier one, as tar does.
func replacing(dirfd int, name string, create func() error) error {
	err := create()
	if errors.Is(err, unix.EEXIST) {
		if err := unix.Unlinkat(dirfd, name, 0); err != nil {
			return err
		}
		err = create()
	}
	return err
}

func (st *stage) mkdirAll(dir string) error {
	if st.made[dir] {
		return nil
	}
	if err := st.mkdirAll(path.Dir(dir)); err != nil {
		return err
	}
	if err := unix.Mkdirat(st.fd, dir, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	st.made[dir] = true
	return nil
}

// file writes a regular file with its content, mode and time.
func (st *stage) file(name string, perm uint32, mtime time.Time, r io.Reader, size int64) error {
	var fd int
	dfd, err := st.parent(path.Dir(name))
	if err != nil {
		return err
	}
	base := path.Base(name)
	err = replacing(dfd, base, func() error {
		var err error
		// O_EXCL|O_NOFOLLOW: the name is made here, never followed.
		fd, err = unix.Openat(dfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
		return err
	})
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// Big files go to the disk straight from our buffer (O_DIRECT): the
	// kernel does not copy them into the page cache, which costs an
	// emulated guest more than anything else here; the tail that is not a
	// whole block is written through the cache.
	direct := size >= directMin && setDirect(fd, true)
	for left := size; left > 0; {
		// Every read but the last fills the buffer: writes stay aligned.
		n, err := io.ReadFull(r, st.buf[:min(int64(len(st.buf)), left)])
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return readError{err}
		}
		left -= int64(n)
		b := st.buf[:n]
		if direct && n%directAlign != 0 {
			whole := n &^ (directAlign - 1)
			if err := writeAll(fd, b[:whole]); err != nil {
				return err
			}
			b = b[whole:]
			direct = !setDirect(fd, false)
		}
		if err := writeAll(fd, b); err != nil {
			return err
		}
	}
	if perm&st.umask != 0 {
		if err := unix.Fchmod(fd, perm); err != nil {
			return err
		}
	}
	return futimens(fd, mtime)
}

// parent returns a descriptor of the staged directory dir (relative to
// the stage), opened with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS and kept
// while the archive's members stay in it: an archive lists a directory's
// files together, and one resolution per directory instead of one per
// file saves an emulated guest a path walk per file.
func (st *stage) parent(dir string) (int, error) {
	if st.dirFD >= 0 && st.dirName == dir {
		return st.dirFD, nil
	}
	fd, err := unix.Openat2(st.fd, dir, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS,
	})
	if err != nil {
		return -1, err
	}
	if st.dirFD >= 0 {
		unix.Close(st.dirFD)
	}
	st.dirFD, st.dirName = fd, dir
	return fd, nil
}

// directMin is the smallest file written with O_DIRECT, directAlign the
// alignment O_DIRECT needs (of the buffer, which is page-aligned, and of
// each write's offset and length).
const (
	directMin   = 64 << 10
	directAlign = 4096
)

// setDirect turns O_DIRECT on or off for fd and reports whether it could.
func setDirect(fd int, on bool) bool {
	flags := unix.O_WRONLY
	if on {
		flags |= unix.O_DIRECT
	}
	_, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags)
	return err == nil
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		k, err := unix.Write(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		b = b[k:]
	}
	return nil
}

// moveInto moves the staged tree into hostDest (created if missing):
// entries hostDest lacks are renamed into it whole, directories it has
// are merged into, files and symlinks replace what is there (the caller
// has refused members that would replace a directory, or the reverse).
func (st *stage) moveInto(hostDest string) error {
	if err := os.MkdirAll(hostDest, 0o755); err != nil {
		return err
	}
	return mergeDir(st.dir, hostDest)
}

func mergeDir(src, dst string) error {
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		from, to := filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())
		if e.IsDir() {
			if fi, err := os.Lstat(to); err == nil && fi.IsDir() {
				if err := mergeDir(from, to); err != nil {
					return err
				}
				continue
			}
		}
		err := os.Rename(from, to)
		if errors.Is(err, syscall.EXDEV) {
			// A mount inside the destination: copy across it.
			err = copyTree(from, to)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// setDirs gives the archive's directories, now under hostDest, their
// modes and modification times (after their content moved in, which
// changed the times), as tar does at the end of an extraction.
func (st *stage) setDirs(hostDest string) {
	for i := len(st.dirs) - 1; i >= 0; i-- {
		d := st.dirs[i]
		p := filepath.Join(hostDest, filepath.FromSlash(d.name))
		if fi, err := os.Lstat(p); err != nil || !fi.IsDir() {
			continue
		}
		unix.Fchmodat(unix.AT_FDCWD, p, d.perm, 0)
		setTimes(unix.AT_FDCWD, p, d.mtime)
	}
}

// copyTree copies src to dst (a file, a symlink or a whole directory),
// replacing files and symlinks there and merging into directories.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			os.Remove(to)
			return os.Symlink(target, to)
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			os.Remove(to)
			if err := os.WriteFile(to, data, fi.Mode().Perm()); err != nil {
				return err
			}
			os.Chmod(to, fi.Mode().Perm())
			return os.Chtimes(to, fi.ModTime(), fi.ModTime())
		}
	})
}

// setTimes sets the modification time of name (relative to dirfd) without
// following a symlink; the access time is left alone.
func setTimes(dirfd int, name string, mtime time.Time) {
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(mtime.UnixNano())}
	unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// futimens sets the modification time of an open file.
func futimens(fd int, mtime time.Time) error {
	ts := [2]unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(mtime.UnixNano())}
	// utimensat(fd, NULL, ...) acts on fd itself.
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafePointer(&ts[0])), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// processUmask is this process's umask (the guest's PID 1 has 0); reading
// it from /proc avoids setting it, which would race other threads.
var processUmask = sync.OnceValue(func() uint32 {
	data, err := os.ReadFile("/proc/self/status")
	if err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "Umask:"); ok {
				if n, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
					return uint32(n)
				}
			}
		}
	}
	return 0o022
})
