// Package state owns the durable records of VMs and workspaces on the host:
// one private directory per id holding a JSON record written atomically
// (temp file, fsync, rename) and a lock file taken with flock, so that any
// number of pyro processes can act on the same object safely. Lookups accept
// any unambiguous prefix of an id.
package state

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/pyro-mcp/pyro/internal/atomicfile"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/flock"
	"github.com/pyro-mcp/pyro/internal/paths"
)

// RecordFile is the name of the record inside an object's directory.
const RecordFile = "record.json"

// Store keeps the objects of one kind ("vms", "workspaces") under Dir.
type Store struct {
	Dir  string // e.g. ~/.local/state/pyro/vms
	Kind string // "vm" or "workspace", for messages
}

// Open returns the store for kind under root, creating it with mode 0700.
func Open(root, sub, kind string) (*Store, error) {
	dir := filepath.Join(root, sub)
	if err := paths.EnsurePrivate(root); err != nil {
		return nil, fmt.Errorf("creating state directory: %w", err)
	}
	if err := paths.EnsurePrivate(dir); err != nil {
		return nil, fmt.Errorf("creating state directory: %w", err)
	}
	return &Store{Dir: dir, Kind: kind}, nil
}

// NewID returns a fresh random id (16 lowercase hex digits).
func NewID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// Path returns the directory of id.
func (s *Store) Path(id string) string { return filepath.Join(s.Dir, id) }

// Create makes the directory of a new id, private to the user.
func (s *Store) Create(id string) (string, error) {
	dir := s.Path(id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return "", errdefs.New(errdefs.ErrAlreadyExists, "", "%s %s already exists", s.Kind, id)
		}
		return "", fmt.Errorf("creating %s directory: %w", s.Kind, WriteError(err, filepath.Join(dir, RecordFile)))
	}
	return dir, nil
}

// IDs lists every id in the store, sorted.
func (s *Store) IDs() ([]string, error) {
	ents, err := os.ReadDir(s.Dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			ids = append(ids, e.Name())
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// Resolve turns a full id or a unique prefix into a full id.
func (s *Store) Resolve(ref string) (string, error) {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return "", errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("pass the %s id (see 'pyro %s list')", s.Kind, s.Kind), "empty %s id", s.Kind)
	}
	if strings.ContainsAny(ref, "/\\.") {
		return "", errdefs.New(errdefs.ErrInvalidArgument, "", "invalid %s id %q", s.Kind, ref)
	}
	ids, err := s.IDs()
	if err != nil {
		return "", err
	}
	var matches []string
	for _, id := range ids {
		if id == ref {
			return id, nil
		}
		if strings.HasPrefix(id, ref) {
			matches = append(matches, id)
		}
	}
	switch len(matches) {
	case 0:
		return "", errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("list them with 'pyro %s list'", s.Kind), "no %s with id %q", s.Kind, ref)
	case 1:
		return matches[0], nil
	}
	return "", errdefs.New(errdefs.ErrConflict, "give more characters of the id", "%s id prefix %q is ambiguous: it matches %s", s.Kind, ref, strings.Join(matches, ", "))
}

// Loader is a record that completes itself from its directory once read:
// a workspace's record takes in the history appended since it was
// written (engine), so that appending to the history needs no rewrite of
// the record.
type Loader interface {
	Loaded(dir string)
}

// Read loads id's record into v, then lets a Loader complete itself.
func (s *Store) Read(id string, v any) error {
	data, err := os.ReadFile(filepath.Join(s.Path(id), RecordFile))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errdefs.New(errdefs.ErrNotFound, "", "no %s with id %q", s.Kind, id)
		}
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("reading %s record %s: %w", s.Kind, id, err)
	}
	if l, ok := v.(Loader); ok {
		l.Loaded(s.Path(id))
	}
	return nil
}

// Write stores v as id's record atomically and durably.
func (s *Store) Write(id string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(s.Path(id), RecordFile), append(data, '\n'), 0o600); err != nil {
		return WriteError(err, filepath.Join(s.Path(id), RecordFile))
	}
	return nil
}

// WriteError classes an error writing path in the state directory: a full
// disk (ENOSPC, EDQUOT) is unavailable, with what to do; the message keeps
// the system's words ("no space left on device").
func WriteError(err error, path string) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return errdefs.Wrap(errdefs.ErrUnavailable, err, "free disk space in the state directory ($PYRO_STATE_DIR, "+filepath.Dir(filepath.Dir(filepath.Dir(path)))+")",
			"writing %s", path)
	}
	return err
}

// WriteUnsynced stores v as id's record atomically but without an fsync
// (atomicfile.WriteFileUnsynced): for a change that a later Write makes
// durable.
func (s *Store) WriteUnsynced(id string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFileUnsynced(filepath.Join(s.Path(id), RecordFile), append(data, '\n'), 0o600); err != nil {
		return WriteError(err, filepath.Join(s.Path(id), RecordFile))
	}
	return nil
}

// Remove deletes id's directory and everything in it.
func (s *Store) Remove(id string) error {
	// Rename first so a half-removed directory never looks like a live object.
	dir := s.Path(id)
	trash := filepath.Join(s.Dir, ".trash-"+id+"-"+NewID()[:6])
	if err := os.Rename(dir, trash); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	return os.RemoveAll(trash)
}

// Lock is a held record lock (see internal/flock).
type Lock = flock.Lock

// LockFile takes an exclusive flock on path (created if missing), waiting
// for as long as another process holds it.
func LockFile(path string) (*Lock, error) {
	return flock.Acquire(context.Background(), path, flock.Exclusive, nil)
}

// Lock takes id's exclusive lock, waiting without a deadline. It fails
// with ErrNotFound when id's directory is gone (deleted meanwhile).
func (s *Store) Lock(id string) (*Lock, error) {
	return s.LockContext(context.Background(), id)
}

// TryLock takes id's exclusive lock if it is free; ok is false when
// another holder has it.
func (s *Store) TryLock(id string) (l *Lock, ok bool, err error) {
	if _, err := os.Stat(s.Path(id)); err != nil {
		return nil, false, errdefs.New(errdefs.ErrNotFound, "", "no %s with id %q", s.Kind, id)
	}
	return flock.Try(filepath.Join(s.Path(id), "lock"), flock.Exclusive)
}

// LockContext takes id's exclusive lock, waiting until ctx is done.
func (s *Store) LockContext(ctx context.Context, id string) (*Lock, error) {
	if _, err := os.Stat(s.Path(id)); err != nil {
		return nil, errdefs.New(errdefs.ErrNotFound, "", "no %s with id %q", s.Kind, id)
	}
	l, err := flock.Acquire(ctx, filepath.Join(s.Path(id), "lock"), flock.Exclusive, nil)
	if errors.Is(err, context.DeadlineExceeded) {
		return nil, errdefs.Wrap(errdefs.ErrTimeout, err, "another pyro process is working on it; try again", "waiting for the lock of %s %s", s.Kind, id)
	}
	return l, err
}
