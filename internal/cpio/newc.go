// Package cpio writes the "newc" cpio format the Linux kernel unpacks as an
// initramfs. Archives may be concatenated: the kernel unpacks each in turn,
// which is how pyro appends an environment's kernel modules to its agent.
package cpio

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Writer writes a newc archive. Close writes the trailer.
type Writer struct {
	w     io.Writer
	n     int64
	ino   uint32
	dirs  map[string]bool
	err   error
	mtime int64
}

// NewWriter returns a writer whose entries all carry mtime (for reproducible
// archives pass a fixed value such as 0).
func NewWriter(w io.Writer, mtime int64) *Writer {
	return &Writer{w: w, ino: 1, dirs: map[string]bool{}, mtime: mtime}
}

const (
	modeDir  = 0o040000
	modeFile = 0o100000
	modeLink = 0o120000
)

func (cw *Writer) header(name string, mode uint32, size int, nlink uint32) {
	if cw.err != nil {
		return
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		cw.ino, mode, 0, 0, nlink, uint32(cw.mtime), size, 0, 0, 0, 0, len(name)+1, 0)
	cw.ino++
	cw.write([]byte(hdr))
	cw.write([]byte(name + "\x00"))
	cw.pad()
}

func (cw *Writer) write(b []byte) {
	if cw.err != nil {
		return
	}
	n, err := cw.w.Write(b)
	cw.n += int64(n)
	cw.err = err
}

func (cw *Writer) pad() {
	if r := cw.n % 4; r != 0 {
		cw.write(make([]byte, 4-r))
	}
}

// Mkdir adds a directory and, first, any missing parents.
func (cw *Writer) Mkdir(name string, perm uint32) {
	name = strings.Trim(name, "/")
	if name == "" || name == "." || cw.dirs[name] {
		return
	}
	if parent := filepath.Dir(name); parent != "." {
		cw.Mkdir(parent, 0o755)
	}
	cw.dirs[name] = true
	cw.header(name, modeDir|perm&0o7777, 0, 2)
}

// File adds a regular file with the given content.
func (cw *Writer) File(name string, perm uint32, data []byte) {
	name = strings.Trim(name, "/")
	if parent := filepath.Dir(name); parent != "." {
		cw.Mkdir(parent, 0o755)
	}
	cw.header(name, modeFile|perm&0o7777, len(data), 1)
	cw.write(data)
	cw.pad()
}

// Symlink adds a symbolic link name -> target.
func (cw *Writer) Symlink(name, target string) {
	name = strings.Trim(name, "/")
	if parent := filepath.Dir(name); parent != "." {
		cw.Mkdir(parent, 0o755)
	}
	cw.header(name, modeLink|0o777, len(target), 1)
	cw.write([]byte(target))
	cw.pad()
}

// AddTree adds every directory, regular file and symlink below root, placed
// under prefix in the archive, in sorted order.
func (cw *Writer) AddTree(root, prefix string) error {
	var paths []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	for _, p := range paths {
		rel, _ := filepath.Rel(root, p)
		name := filepath.ToSlash(filepath.Join(prefix, rel))
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			cw.Mkdir(name, uint32(fi.Mode().Perm()))
		case fi.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			cw.Symlink(name, t)
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			cw.File(name, uint32(fi.Mode().Perm()), data)
		}
	}
	return cw.err
}

// Close writes the trailer. It does not close the underlying writer.
func (cw *Writer) Close() error {
	cw.header("TRAILER!!!", 0, 0, 1)
	return cw.err
}
