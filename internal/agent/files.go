package agent

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// fileMethod returns the handler of a file method (agentproto/files.go),
// or nil. Those that change /workspace answer only once their writes are on
// the disk (durably).
func (h *Handler) fileMethod(method string) func(context.Context, *agentproto.Stream) (any, error) {
	durable := func(fn func(context.Context, *agentproto.Stream) (any, error)) func(context.Context, *agentproto.Stream) (any, error) {
		return func(ctx context.Context, s *agentproto.Stream) (any, error) {
			return h.durably(func() (any, error) { return fn(ctx, s) })
		}
	}
	switch method {
	case agentproto.MethodFileList:
		return h.fileList
	case agentproto.MethodFileRead:
		return h.fileRead
	case agentproto.MethodFileWrite:
		return durable(h.fileWrite)
	case agentproto.MethodPatchApply:
		return durable(h.patchApply)
	case agentproto.MethodDiff:
		return h.diff
	case agentproto.MethodGetArchive:
		return h.getArchive
	}
	return nil
}

// fileFeatures are the file methods, announced in the handshake.
var fileFeatures = []string{agentproto.MethodFileList, agentproto.MethodFileRead, agentproto.MethodFileWrite,
	agentproto.MethodPatchApply, agentproto.MethodDiff, agentproto.MethodGetArchive}

// chunk is what one read or write of file content moves: a data frame's.
const chunk = agentproto.ChunkSize

func (h *Handler) fileList(ctx context.Context, s *agentproto.Stream) (any, error) {
	var req agentproto.FileListRequest
	w, p, st, err := h.openTarget(s.Params, &req, &req.Path, followLast|mustExist)
	if err != nil {
		return nil, err
	}
	defer w.close()
	out := bufio.NewWriterSize(s.Stdout(), chunk)
	l := &lister{ctx: ctx, w: w, enc: json.NewEncoder(out), req: req, max: req.MaxEntries}
	if l.max <= 0 || l.max > api.MaxFileListEntries {
		l.max = api.MaxFileListEntries
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		link := ""
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			link, _ = readlinkat(w.fd, p.rel)
		}
		err = l.emit(entryOf(p.guest, &st, link))
	} else {
		err = l.dir(p.rel, p.guest)
	}
	if errors.Is(err, errListFull) {
		err = nil
	}
	if err != nil {
		return nil, err
	}
	if err := out.Flush(); err != nil {
		return nil, err
	}
	return &agentproto.FileListResult{Count: l.count, Truncated: l.truncated}, nil
}

var errListFull = errors.New("listing full")

// lister writes a directory's entries as JSON lines, sorted by name,
// depth first.
type lister struct {
	ctx       context.Context
	w         *workspace
	enc       *json.Encoder
	req       agentproto.FileListRequest
	max       int
	count     int
	truncated bool
}

func (l *lister) emit(e api.FileEntry) error {
	if l.req.FilesOnly && e.Type != api.FileTypeFile {
		return nil
	}
	if l.count == l.max {
		l.truncated = true
		return errListFull
	}
	l.count++
	return l.enc.Encode(e)
}

// dir lists the directory rel (resolved) shown as guest.
func (l *lister) dir(rel, guest string) error {
	if err := l.ctx.Err(); err != nil {
		return err
	}
	fd, err := l.w.openat(rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return openErr(wsPath{guest: guest, rel: rel}, err)
	}
	f := os.NewFile(uintptr(fd), guest)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return errdefs.Wrap(errdefs.ErrInternal, err, "", "listing %s", guest)
	}
	slices.Sort(names)
	for _, name := range names {
		if slices.Contains(l.req.Skip, name) {
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			continue // gone meanwhile
		}
		link := ""
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			link, _ = readlinkat(fd, name)
		}
		child := path.Join(guest, name)
		if err := l.emit(entryOf(child, &st, link)); err != nil {
			return err
		}
		if l.req.Recursive && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := l.dir(path.Join(rel, name), child); err != nil {
				return err
			}
		}
	}
	return nil
}

func (h *Handler) fileRead(ctx context.Context, s *agentproto.Stream) (any, error) {
	var req agentproto.FileReadRequest
	w, p, _, err := h.openTarget(s.Params, &req, &req.Path, followLast)
	if err != nil {
		return nil, err
	}
	defer w.close()
	if req.MaxBytes < 0 {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "", "max_bytes %d is negative", req.MaxBytes)
	}
	f, st, err := w.openRegular(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// A fixed buffer: a file of any size is read a frame at a time.
	buf := make([]byte, chunk)
	out := s.Stdout()
	var sent int64
	for sent < req.MaxBytes {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, rerr := f.Read(buf[:min(int64(len(buf)), req.MaxBytes-sent)])
		if n > 0 {
			if _, err := out.Write(buf[:n]); err != nil {
				return nil, err
			}
			sent += int64(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, errdefs.Wrap(errdefs.ErrInternal, rerr, "", "reading %s", p.guest)
		}
	}
	return &agentproto.FileReadResult{Size: st.Size, Sent: sent, Truncated: sent < st.Size}, nil
}

// openRegular opens the regular file p for reading: never a directory,
// and never blocking on a FIFO or a device.
func (w *workspace) openRegular(p wsPath) (*os.File, *unix.Stat_t, error) {
	fd, err := w.openat(p.rel, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, openErr(p, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, nil, openErr(p, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		unix.Close(fd)
		return nil, nil, errdefs.New(errdefs.ErrInvalidArgument, "list a directory with workspace file list", "%s is a directory", p.guest)
	default:
		unix.Close(fd)
		return nil, nil, errdefs.New(errdefs.ErrInvalidArgument, "", "%s is not a regular file (a device, FIFO or socket)", p.guest)
	}
	// Reads must block as usual from here on.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, nil, openErr(p, err)
	}
	return os.NewFile(uintptr(fd), p.guest), &st, nil
}

func (h *Handler) fileWrite(ctx context.Context, s *agentproto.Stream) (any, error) {
	// Whatever happens, take all the input so the host's sender finishes.
	defer io.Copy(io.Discard, s)
	var req agentproto.FileWriteRequest
	// A symlink at the path is written through, when it stays inside.
	w, p, _, err := h.openTarget(s.Params, &req, &req.Path, followLast)
	if err != nil {
		return nil, err
	}
	defer w.close()
	if p.rel == "." {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "name a file under /workspace", "%s is /workspace itself", p.guest)
	}
	dir, base := path.Split(p.rel)
	dfd, err := w.mkdirs(strings.TrimSuffix(dir, "/"), p)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dfd)
	res := &agentproto.FileWriteResult{Path: p.where(), Mode: 0o644, Created: true}
	uid, gid := -1, -1
	var old unix.Stat_t
	switch err := unix.Fstatat(dfd, base, &old, unix.AT_SYMLINK_NOFOLLOW); {
	case err == nil && old.Mode&unix.S_IFMT == unix.S_IFDIR:
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "", "%s is a directory", p.guest)
	case err == nil && old.Mode&unix.S_IFMT != unix.S_IFREG:
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "remove it first", "%s exists and is not a regular file", p.guest)
	case err == nil:
		res.Mode, res.Created = old.Mode&0o7777, false
		uid, gid = int(old.Uid), int(old.Gid)
	case !errors.Is(err, unix.ENOENT):
		return nil, openErr(p, err)
	}
	if req.Mode != 0 {
		res.Mode = req.Mode & 0o7777
	}
	tmp, f, err := createTemp(dfd, base)
	if err != nil {
		return nil, openErr(p, err)
	}
	ok := false
	defer func() {
		f.Close()
		if !ok {
			unix.Unlinkat(dfd, tmp, 0)
		}
	}()
	max := req.MaxBytes
	if max <= 0 {
		max = api.MaxFileWriteBytes
	}
	n, err := io.CopyBuffer(f, io.LimitReader(readerCtx{ctx, s}, max+1), make([]byte, chunk))
	if err != nil {
		return nil, openErr(p, err)
	}
	if n > max {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "write a smaller file, or copy it in with sync push", "%s: more than %d bytes", p.guest, max)
	}
	if err := f.Chmod(os.FileMode(res.Mode & 0o777)); err != nil {
		return nil, openErr(p, err)
	}
	if res.Mode&^0o777 != 0 {
		unix.Fchmod(int(f.Fd()), res.Mode)
	}
	if uid >= 0 {
		unix.Fchown(int(f.Fd()), uid, gid)
		unix.Fchmod(int(f.Fd()), res.Mode) // chown clears setuid bits
	}
	if err := f.Close(); err != nil {
		return nil, openErr(p, err)
	}
	if err := unix.Renameat(dfd, tmp, dfd, base); err != nil {
		return nil, openErr(p, err)
	}
	ok = true
	res.Bytes = n
	return res, nil
}

// readerCtx ends a read when ctx ends (the host cancelled).
type readerCtx struct {
	ctx context.Context
	r   io.Reader
}

func (r readerCtx) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// createTemp creates a new private file beside base in the directory dfd.
func createTemp(dfd int, base string) (string, *os.File, error) {
	for {
		var b [6]byte
		rand.Read(b[:])
		name := ".pyro-" + hex.EncodeToString(b[:]) + ".tmp"
		if len(base) < 200 {
			name = "." + base + name
		}
		fd, err := unix.Openat(dfd, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return "", nil, err
		}
		return name, os.NewFile(uintptr(fd), name), nil
	}
}

// mkdirs opens the directory rel (resolved), creating it and its missing
// parents (0755). p is what the caller asked, for errors.
func (w *workspace) mkdirs(rel string, p wsPath) (int, error) {
	fd, err := unix.Dup(w.fd)
	if err != nil {
		return -1, err
	}
	// An O_PATH descriptor cannot be an *at's directory for mkdir on every
	// kernel; open /workspace for real first.
	next, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	unix.Close(fd)
	if err != nil {
		return -1, openErr(p, err)
	}
	fd = next
	if rel == "" || rel == "." {
		return fd, nil
	}
	done := ""
	for _, c := range strings.Split(rel, "/") {
		done = path.Join(done, c)
		next, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			if err = unix.Mkdirat(fd, c, 0o755); err == nil || errors.Is(err, unix.EEXIST) {
				next, err = unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			}
		}
		unix.Close(fd)
		if err != nil {
			if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
				return -1, errdefs.New(errdefs.ErrInvalidArgument, "", "%s: %s is not a directory", p.guest, path.Join(api.WorkspaceRoot, done))
			}
			return -1, openErr(p, err)
		}
		fd = next
	}
	return fd, nil
}
