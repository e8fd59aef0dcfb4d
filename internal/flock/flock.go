// Package flock owns pyro's advisory file locks: an flock(2) on a lock
// file, exclusive or shared, taken with a context so that a caller waiting
// behind another pyro process can give up. Every lock in pyro (a VM's or
// workspace's record, an environment's pull, the cache's garbage collector,
// the Firecracker subnet leases) goes through it.
//
//	l, err := flock.Acquire(ctx, path, flock.Exclusive, nil)
//	if err != nil { ... }
//	defer l.Unlock()
package flock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Mode is how a lock is held.
type Mode int

const (
	Exclusive Mode = unix.LOCK_EX
	Shared    Mode = unix.LOCK_SH
)

// Lock is a held flock. The zero value and nil are unlocked.
type Lock struct{ f *os.File }

// poll bounds how long a waiter sleeps between attempts. flock(2) itself
// cannot be interrupted by a context, so a waiter polls with LOCK_NB:
// a handful of syscalls per second while another process holds the lock.
const (
	pollMin = 2 * time.Millisecond
	pollMax = 100 * time.Millisecond
)

// Acquire takes the lock on path (created 0600 if missing), waiting until
// it is free or ctx is done. onWait, when set, is called once if the lock
// is held elsewhere, before the first wait (to tell the user why nothing
// happens).
func Acquire(ctx context.Context, path string, mode Mode, onWait func()) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", path, err)
	}
	delay := pollMin
	for {
		ok, err := try(f, mode)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if ok {
			return &Lock{f: f}, nil
		}
		if onWait != nil {
			onWait()
			onWait = nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, pollMax)
	}
}

// Try takes the lock on path without waiting; ok is false when another
// holder has it.
func Try(path string, mode Mode) (l *Lock, ok bool, err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("opening lock %s: %w", path, err)
	}
	ok, err = try(f, mode)
	if err != nil || !ok {
		f.Close()
		if err != nil {
			return nil, false, fmt.Errorf("locking %s: %w", path, err)
		}
		return nil, false, nil
	}
	return &Lock{f: f}, true, nil
}

func try(f *os.File, mode Mode) (bool, error) {
	for {
		err := unix.Flock(int(f.Fd()), int(mode)|unix.LOCK_NB)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EWOULDBLOCK):
			return false, nil
		default:
			return false, err
		}
	}
}

// Unlock releases the lock; it is safe to call more than once.
func (l *Lock) Unlock() {
	if l == nil || l.f == nil {
		return
	}
	_ = unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	l.f.Close()
	l.f = nil
}
