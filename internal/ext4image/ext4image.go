// Package ext4image reads and edits raw ext4 images offline, without
// mounting them (no loop devices, no nbd, no root): qemu-img converts a
// VM's qcow2 chain to a private raw file, e2fsck replays its journal, and
// e2fsprogs' debugfs lists, reads and removes files in it. Paths inside an
// image are absolute and may not hold a double quote or a newline (the
// characters debugfs's command parser cannot take).
package ext4image

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// Entry is one file of an image.
type Entry struct {
	Path  string // absolute, in the image
	Inode uint64
	Mode  uint32 // st_mode: type and permission bits
	Size  int64
	MTime time.Time
	Link  string // a symlink's target
}

// IsDir, IsRegular and IsSymlink read Mode's type.
func (e Entry) IsDir() bool     { return e.Mode&0o170000 == 0o040000 }
func (e Entry) IsRegular() bool { return e.Mode&0o170000 == 0o100000 }
func (e Entry) IsSymlink() bool { return e.Mode&0o170000 == 0o120000 }

// Convert writes the disk image src (of format, "qcow2" or "raw", with its
// backing chain) to dst as a sparse raw file, then replays its journal so
// that what a killed VM had committed is there.
func Convert(ctx context.Context, src, format, dst string) error {
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	f.Close()
	if out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-q", "-f", format, "-O", "raw", src, dst).CombinedOutput(); err != nil {
		os.Remove(dst)
		return errdefs.Wrap(errdefs.ErrInternal, err, "check free disk space and that qemu-utils is installed", "reading the disk: %s", bytes.TrimSpace(out))
	}
	return ReplayJournal(ctx, dst)
}

// ReplayJournal applies the journal of image, if it needs recovery, and
// nothing else.
func ReplayJournal(ctx context.Context, image string) error {
	out, err := exec.CommandContext(ctx, "e2fsck", "-y", "-E", "journal_only", image).CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) { // 1: "file system corrected"
		return errdefs.Wrap(errdefs.ErrInternal, err, "install e2fsprogs", "replaying the disk's journal: %s", bytes.TrimSpace(out))
	}
	return nil
}

// CheckPath refuses a path debugfs cannot take.
func CheckPath(p string) error {
	if !path.IsAbs(p) || strings.ContainsAny(p, "\"\n") {
		return errdefs.New(errdefs.ErrInvalidArgument, "give an absolute path without double quotes or newlines", "unsupported path %q", p)
	}
	return nil
}

// quote puts p in the double quotes debugfs's parser reads (CheckPath
// has refused what they cannot hold).
func quote(p string) string { return `"` + p + `"` }

// debugfs runs commands against image (read-only unless write) and
// returns their output.
func debugfs(ctx context.Context, image string, write bool, cmds []string) (string, error) {
	args := []string{"-f", "-"}
	if write {
		args = append([]string{"-w"}, args...)
	}
	cmd := exec.CommandContext(ctx, "debugfs", append(args, image)...)
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", errdefs.Wrap(errdefs.ErrInternal, err, "install e2fsprogs", "debugfs: %s", strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// Stat describes the file at p, or fails with ErrNotFound.
func Stat(ctx context.Context, image, p string) (*Entry, error) {
	if err := CheckPath(p); err != nil {
		return nil, err
	}
	out, err := debugfs(ctx, image, false, []string{"stat " + quote(p)})
	if err != nil {
		return nil, err
	}
	e, ok := parseStat(out)
	if !ok {
		return nil, errdefs.New(errdefs.ErrNotFound, "", "%s does not exist", p)
	}
	e.Path = p
	if e.IsSymlink() && e.Link == "" {
		e.Link, _ = readAll(ctx, image, e.Inode, 4096)
	}
	return &e, nil
}

// parseStat reads debugfs's stat output.
func parseStat(out string) (Entry, bool) {
	var e Entry
	found := false
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "Inode:"):
			f := strings.Fields(line)
			if len(f) >= 2 {
				e.Inode, _ = strconv.ParseUint(f[1], 10, 64)
				found = true
			}
			if i := strings.Index(line, "Type: "); i >= 0 {
				switch strings.Fields(line[i+6:])[0] {
				case "directory":
					e.Mode |= 0o040000
				case "regular":
					e.Mode |= 0o100000
				case "symlink":
					e.Mode |= 0o120000
				}
			}
			if i := strings.Index(line, "Mode: "); i >= 0 {
				m, _ := strconv.ParseUint(strings.Fields(line[i+6:])[0], 8, 32)
				e.Mode |= uint32(m) & 0o7777
			}
		case strings.HasPrefix(line, "User:"):
			if i := strings.Index(line, "Size: "); i >= 0 {
				e.Size, _ = strconv.ParseInt(strings.Fields(line[i+6:])[0], 10, 64)
			}
		case strings.HasPrefix(line, "mtime:"):
			f := strings.Fields(line)
			if len(f) >= 2 {
				sec, nsec, _ := strings.Cut(f[1], ":")
				s, _ := strconv.ParseUint(strings.TrimPrefix(sec, "0x"), 16, 64)
				extra, _ := strconv.ParseUint(strings.TrimPrefix(nsec, "0x"), 16, 64)
				s |= (extra & 3) << 32
				e.MTime = time.Unix(int64(s), int64(extra>>2)).UTC()
			}
		case strings.HasPrefix(line, "Fast link dest:"):
			e.Link, _ = strconv.Unquote(strings.TrimSpace(strings.TrimPrefix(line, "Fast link dest:")))
		}
	}
	return e, found
}

// List returns the entries of directory dir (not "." and ".."), and of
// every directory below it when recursive, breadth first. skip, when
// set, hides a path and everything under it.
func List(ctx context.Context, image, dir string, recursive bool, skip func(string) bool) ([]Entry, error) {
	if err := CheckPath(dir); err != nil {
		return nil, err
	}
	var out []Entry
	level := []string{dir}
	for len(level) > 0 {
		var cmds []string
		for _, d := range level {
			if strings.ContainsAny(d, "\"\n") {
				continue
			}
			cmds = append(cmds, "ls -p "+quote(d))
		}
		text, err := debugfs(ctx, image, false, cmds)
		if err != nil {
			return nil, err
		}
		ents := parseListings(text)
		var next []string
		for _, e := range ents {
			if skip != nil && skip(e.Path) {
				continue
			}
			out = append(out, e)
			if recursive && e.IsDir() {
				next = append(next, e.Path)
			}
		}
		level = next
	}
	if err := fillStats(ctx, image, out); err != nil {
		return nil, err
	}
	return out, nil
}

// parseListings reads the output of several "ls -p DIR" commands:
// each is echoed as "debugfs: ls -p "DIR"", then lines
// "/INODE/MODE/UID/GID/NAME/SIZE/".
func parseListings(text string) []Entry {
	var out []Entry
	dir := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "debugfs: ls -p "); ok {
			dir = strings.TrimSuffix(strings.TrimPrefix(rest, `"`), `"`)
			continue
		}
		if dir == "" || !strings.HasPrefix(line, "/") || !strings.HasSuffix(line, "/") {
			continue
		}
		f := strings.Split(strings.TrimSuffix(strings.TrimPrefix(line, "/"), "/"), "/")
		if len(f) != 6 || f[4] == "." || f[4] == ".." || f[4] == "" {
			continue
		}
		ino, err1 := strconv.ParseUint(f[0], 10, 64)
		mode, err2 := strconv.ParseUint(f[1], 8, 32)
		if err1 != nil || err2 != nil || ino == 0 {
			continue
		}
		size, _ := strconv.ParseInt(f[5], 10, 64)
		out = append(out, Entry{Path: path.Join(dir, f[4]), Inode: ino, Mode: uint32(mode), Size: size})
	}
	return out
}

// fillStats adds mtimes and link targets, by inode, in one debugfs run.
func fillStats(ctx context.Context, image string, ents []Entry) error {
	if len(ents) == 0 {
		return nil
	}
	cmds := make([]string, len(ents))
	for i, e := range ents {
		cmds[i] = fmt.Sprintf("stat <%d>", e.Inode)
	}
	text, err := debugfs(ctx, image, false, cmds)
	if err != nil {
		return err
	}
	byIno := map[uint64]Entry{}
	for _, block := range strings.Split(text, "debugfs: stat <")[1:] {
		if st, ok := parseStat(block); ok {
			byIno[st.Inode] = st
		}
	}
	for i := range ents {
		st := byIno[ents[i].Inode]
		ents[i].MTime = st.MTime
		ents[i].Link = st.Link
		if ents[i].IsSymlink() && ents[i].Link == "" {
			ents[i].Link, _ = readAll(ctx, image, ents[i].Inode, 4096)
		}
	}
	return nil
}

// Read returns up to max bytes of the file at p (which Stat found).
func Read(ctx context.Context, image string, e *Entry, max int64) ([]byte, error) {
	s, err := readAll(ctx, image, e.Inode, max)
	return []byte(s), err
}

// readAll dumps an inode's content, stopping after max bytes.
func readAll(ctx context.Context, image string, ino uint64, max int64) (string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, "debugfs", "-R", fmt.Sprintf("cat <%d>", ino), image)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	b, rerr := io.ReadAll(io.LimitReader(out, max))
	cancel() // stop a big file's dump
	cmd.Wait()
	return string(b), rerr
}

// Remove deletes p and everything under it from image, in place. It
// reports whether p existed.
func Remove(ctx context.Context, image, p string) (bool, error) {
	root, err := Stat(ctx, image, p)
	if err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			return false, nil
		}
		return false, err
	}
	var cmds []string
	if root.IsDir() {
		ents, err := List(ctx, image, p, true, nil)
		if err != nil {
			return true, err
		}
		// Deepest first: files, then each directory once it is empty.
		for i := len(ents) - 1; i >= 0; i-- {
			e := ents[i]
			if e.IsDir() {
				cmds = append(cmds, "rmdir "+quote(e.Path))
			} else {
				cmds = append(cmds, "rm "+quote(e.Path))
			}
		}
		cmds = append(cmds, "rmdir "+quote(p))
	} else {
		cmds = append(cmds, "rm "+quote(p))
	}
	if _, err := debugfs(ctx, image, true, cmds); err != nil {
		return true, err
	}
	if _, err := Stat(ctx, image, p); err == nil {
		return true, errdefs.New(errdefs.ErrInternal, "", "%s is still in the image after removing it", p)
	}
	return true, nil
}
