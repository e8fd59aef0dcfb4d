package catalog

import (
	"context"

	"github.com/pyro-mcp/pyro/internal/flock"
)

// acquire takes the cache lock locks/<name>.lock, waiting until ctx is
// done. Pulls hold env-<name> exclusively; installs hold gc shared and
// prune holds it exclusively.
func (s *Store) acquire(ctx context.Context, name string, mode flock.Mode) (*flock.Lock, error) {
	return flock.Acquire(ctx, s.path("locks", name+".lock"), mode, func() {
		s.log.Info("waiting for another pyro process holding the cache lock", "lock", name)
	})
}

// tryAcquire takes an exclusive cache lock without waiting; ok is false
// when another process holds it.
func (s *Store) tryAcquire(name string) (l *flock.Lock, ok bool) {
	l, ok, err := flock.Try(s.path("locks", name+".lock"), flock.Exclusive)
	return l, ok && err == nil
}
