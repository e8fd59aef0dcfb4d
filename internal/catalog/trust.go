package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pyro-mcp/pyro/internal/atomicfile"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/paths"
)

// Registry pulls are pinned by trust on first use. Nobody publishes
// official environments yet (registries hold what users push), so pyro
// cannot know the right digest in advance; what it can do is notice a
// change. The first verified pull of an environment name at a catalog
// recipe version records the OCI manifest digest it installed
// (trust/<name>@<version>.json in the cache); a later pull that finds
// another digest under that name and version fails, unless the caller
// accepts the new one explicitly (PullOptions.TrustNewDigest, the CLI's
// --trust-new-digest) or names it (PullOptions.ExpectDigest, the CLI's
// --expect-digest). A new recipe version starts a new pin.

// PullOptions say what a registry pull may install.
type PullOptions struct {
	// ExpectDigest is the OCI manifest digest ("sha256:...") the registry
	// must serve; anything else is refused before a byte is downloaded,
	// the cache is not used unless it holds exactly that, and there is no
	// fallback to a local build. It replaces the pin.
	ExpectDigest string
	// TrustNewDigest accepts a digest other than the pinned one, and pins
	// it.
	TrustNewDigest bool
}

type pullOptionsKey struct{}

// WithPullOptions returns ctx carrying o for the Pull calls made with it
// (the SDK and engine pass the caller's context through unchanged).
func WithPullOptions(ctx context.Context, o PullOptions) context.Context {
	return context.WithValue(ctx, pullOptionsKey{}, o)
}

func pullOptions(ctx context.Context) PullOptions {
	o, _ := ctx.Value(pullOptionsKey{}).(PullOptions)
	return o
}

// check validates the options.
func (o PullOptions) check() error {
	if o.ExpectDigest == "" {
		return nil
	}
	if _, err := digest.Parse(o.ExpectDigest); err != nil || !validDigest(o.ExpectDigest) {
		return errdefs.New(errdefs.ErrInvalidArgument, "give the manifest digest 'pyro env push' printed, as sha256:<64 hex digits>",
			"bad --expect-digest %q", o.ExpectDigest)
	}
	return nil
}

// pin is what was trusted on first use.
type pin struct {
	Name      string    `json:"name"`
	Version   string    `json:"version"`
	Digest    string    `json:"digest"` // OCI manifest digest
	Ref       string    `json:"ref"`    // where it came from
	FirstSeen time.Time `json:"first_seen"`
}

func (s *Store) pinPath(name, version string) string {
	return s.path("trust", safeName(name)+"@"+version+".json")
}

// readPin returns the pin for name at version, nil when there is none.
func (s *Store) readPin(name, version string) (*pin, error) {
	data, err := os.ReadFile(s.pinPath(name, version))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var p pin
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, errdefs.Wrap(errdefs.ErrFailedPrecondition, err,
			"remove it to trust the next pull afresh", "damaged trust record %s", s.pinPath(name, version))
	}
	return &p, nil
}

func (s *Store) writePin(p pin) error {
	if err := paths.EnsurePrivate(s.path("trust")); err != nil {
		return err
	}
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(s.pinPath(p.Name, p.Version), append(data, '\n'), 0o600)
}

// checkTrust decides, before anything is downloaded, whether the registry's
// digest for entry may be installed.
func (s *Store) checkTrust(entry Entry, ref, got string, o PullOptions) error {
	if o.ExpectDigest != "" {
		if got != o.ExpectDigest {
			return errdefs.New(errdefs.ErrFailedPrecondition,
				"check the digest you expect, or that the registry holds the artifact you pushed",
				"%s serves %s, not the expected %s; nothing was downloaded", ref, got, o.ExpectDigest)
		}
		return nil
	}
	p, err := s.readPin(entry.Name, entry.Version)
	if err != nil || p == nil || p.Digest == got || o.TrustNewDigest {
		return err
	}
	return errdefs.New(errdefs.ErrFailedPrecondition,
		fmt.Sprintf("if you know why it changed (you pushed it again) and trust the new artifact, run 'pyro env pull %s --trust-new-digest' (or --expect-digest %s)", entry.Name, got),
		"%s now serves %s for %s %s, but %s was trusted on first use (from %s, %s); nothing was downloaded",
		ref, got, entry.Name, entry.Version, p.Digest, p.Ref, p.FirstSeen.Format(time.DateOnly))
}

// recordTrust pins digest for entry after a verified pull, unless it is
// pinned already (the first use keeps its date).
func (s *Store) recordTrust(entry Entry, ref, digest string) error {
	if p, err := s.readPin(entry.Name, entry.Version); err == nil && p != nil && p.Digest == digest {
		return nil
	}
	return s.writePin(pin{Name: entry.Name, Version: entry.Version, Digest: digest, Ref: ref,
		FirstSeen: time.Now().UTC().Truncate(time.Second)})
}

// usesCache reports whether the installed manifest m satisfies o: any
// verified install does, unless a digest is expected, which only an
// install from that very manifest does.
func (o PullOptions) usesCache(m *Manifest) bool {
	if o.ExpectDigest == "" {
		return true
	}
	return m.Source.Type == "registry" && strings.HasSuffix(m.Source.Ref, "@"+o.ExpectDigest)
}

// noRegistryPull is the error when o demands a registry artifact and there
// is none to pull: an expected digest never falls back to a local build.
func (o PullOptions) noRegistryPull(name, registry string) error {
	if o.ExpectDigest == "" {
		return nil
	}
	if registry == "" {
		return errdefs.New(errdefs.ErrInvalidArgument, "set --registry (or PYRO_ENV_REGISTRY) to the registry that holds it",
			"--expect-digest needs a registry to pull %s from", name)
	}
	return errdefs.New(errdefs.ErrNotFound, "check the registry and the name, or push the environment first",
		"%s is not in the registry %s at this catalog version; --expect-digest never builds locally", name, registry)
}
