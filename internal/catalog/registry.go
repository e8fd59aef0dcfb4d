package catalog

import (
	"context"
	"errors"
)

var errNotInRegistry = errors.New("not in the registry")

func (s *Store) ref(name string) string { return s.registry + "/" + name }

func (s *Store) pullRegistry(ctx context.Context, entry Entry, tmp string) (*Manifest, error) {
	return nil, errNotInRegistry
}

// PushResult says what Push published.
type PushResult struct {
	Environment string `json:"environment"`
	Ref         string `json:"ref"`
	Digest      string `json:"digest"` // the OCI manifest digest
}

// Push publishes an installed environment as an OCI artifact at ref.
func (s *Store) Push(ctx context.Context, name, ref string) (*PushResult, error) {
	return nil, errors.New("not yet")
}
