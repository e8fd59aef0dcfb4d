// Package project owns the default seed of an MCP server: the project it
// serves (the files git tracks in a checkout plus the untracked ones it does
// not ignore, or a plain directory) or a clean clone of a repository. It
// only produces a seed source — a private temporary .tar, or the plain
// directory itself — that goes through the same seeding path, and the same
// checks, as any seed_path; how the engine seeds is none of its business.
package project

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/archive"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// Source is where a server's default seed comes from: a directory (Dir) or
// a repository (RepoURL, at RepoRef). Build it with FromDir or FromRepo.
type Source struct {
	dir     string // absolute
	git     bool   // dir is (inside) a git work tree
	repoURL string
	repoRef string
}

// Detect returns the top level of the git checkout that holds dir, or ""
// when dir is in none (or git is not installed): what `pyro mcp serve`
// serves when started there.
func Detect(ctx context.Context, dir string) string {
	out, err := git(ctx, dir, "rev-parse", "--show-toplevel")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// FromDir is the project in dir: if dir is inside a git work tree, its
// files as git lists them (tracked, and untracked but not ignored; never
// .git), else every file under it.
func FromDir(ctx context.Context, dir string) (*Source, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errdefs.New(errdefs.ErrNotFound, "check `project_path`", "project directory %s does not exist", abs)
		}
		return nil, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "check `project_path`", "cannot read project directory %s", abs)
	}
	if !fi.IsDir() {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "`project_path` names a directory", "project %s is not a directory", abs)
	}
	out, err := git(ctx, abs, "rev-parse", "--is-inside-work-tree")
	return &Source{dir: abs, git: err == nil && strings.TrimSpace(string(out)) == "true"}, nil
}

// FromRepo is a clean clone of url at ref ("" means the repository's
// default branch). Nothing is fetched until Export.
func FromRepo(rawURL, ref string) (*Source, error) {
	if rawURL == "" || strings.HasPrefix(rawURL, "-") {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "give `repo_url` as a URL git can clone, e.g. https://example.com/team/app.git or file:///srv/app.git",
			"bad repository URL %q", rawURL)
	}
	if strings.HasPrefix(ref, "-") {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "give `repo_ref` as a branch, tag or commit", "bad repository ref %q", ref)
	}
	return &Source{repoURL: rawURL, repoRef: ref}, nil
}

// String says what the source is, for the server's instructions and logs.
func (s *Source) String() string {
	switch {
	case s.repoURL != "":
		ref := s.repoRef
		if ref == "" {
			ref = "its default branch"
		}
		return fmt.Sprintf("a clean clone of %s at %s", redact(s.repoURL), ref)
	case s.git:
		return fmt.Sprintf("the git checkout %s (tracked files and untracked ones .gitignore does not exclude; never .git)", s.dir)
	default:
		return fmt.Sprintf("the directory %s", s.dir)
	}
}

// Export is one seed made from a Source.
type Export struct {
	// Path is what to seed from: a private temporary .tar, or the plain
	// project directory itself.
	Path string
	// Origin is what workspace_seed records instead of Path.
	Origin api.SeedOrigin
	temp   string // removed by Remove
}

// Remove deletes the temporary files of the export, if any.
func (x *Export) Remove() {
	if x.temp != "" {
		os.RemoveAll(x.temp)
	}
}

// Export produces a seed of the source as it is now. The caller seeds from
// x.Path and then calls x.Remove.
func (s *Source) Export(ctx context.Context) (*Export, error) {
	switch {
	case s.repoURL != "":
		return s.exportRepo(ctx)
	case s.git:
		names, err := lsFiles(ctx, s.dir, "--cached", "--others", "--exclude-standard")
		if err != nil {
			return nil, err
		}
		x, err := writeTar(ctx, s.dir, names)
		if err != nil {
			return nil, errdefs.Wrap(errdefs.ClassOf(err), err, projectHint(err), "seeding from the project %s", s.dir)
		}
		x.Origin = api.SeedOrigin{Kind: api.OriginProject, Ref: s.dir}
		return x, nil
	default:
		return &Export{Path: s.dir, Origin: api.SeedOrigin{Kind: api.OriginProject, Ref: s.dir}}, nil
	}
}

func projectHint(err error) string {
	if h := errdefs.HintOf(err); h != "" && !errors.Is(err, errdefs.ErrInvalidArgument) {
		return h
	}
	return "fix or .gitignore that entry, pass `seed_path` explicitly, or turn the project seed off (`no_project`)"
}

func (s *Source) exportRepo(ctx context.Context) (*Export, error) {
	clone, err := os.MkdirTemp("", "pyro-clone-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(clone)
	if _, err := git(ctx, "", "clone", "--quiet", "--no-checkout", "--", s.repoURL, clone); err != nil {
		return nil, errdefs.Wrap(errdefs.ErrUnavailable, err, "check `repo_url` (and that this machine can reach it)", "cloning %s", redact(s.repoURL))
	}
	commit, err := resolve(ctx, clone, s.repoRef)
	if err != nil {
		return nil, err
	}
	if _, err := git(ctx, clone, "checkout", "--quiet", "--detach", commit); err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInternal, err, "", "checking out %s", commit)
	}
	names, err := lsFiles(ctx, clone, "--cached")
	if err != nil {
		return nil, err
	}
	x, err := writeTar(ctx, clone, names)
	if err != nil {
		return nil, fmt.Errorf("seeding from %s: %w", redact(s.repoURL), err)
	}
	x.Origin = api.SeedOrigin{Kind: api.OriginRepo, Ref: redact(s.repoURL) + "@" + commit}
	return x, nil
}

// resolve names ref's commit in a fresh clone: a commit, a tag, or a
// branch of the origin.
func resolve(ctx context.Context, clone, ref string) (string, error) {
	if ref == "" {
		ref = "HEAD"
	}
	for _, r := range []string{ref, "refs/remotes/origin/" + ref} {
		if out, err := git(ctx, clone, "rev-parse", "--verify", "--quiet", r+"^{commit}"); err == nil {
			return strings.TrimSpace(string(out)), nil
		}
	}
	return "", errdefs.New(errdefs.ErrNotFound, "check `repo_ref`: a branch, tag or commit of the repository", "no commit %q in the repository", ref)
}

// writeTar exports names under root into a private temporary .tar.
func writeTar(ctx context.Context, root string, names []string) (*Export, error) {
	f, err := os.CreateTemp("", "pyro-seed-*.tar") // mode 0600
	if err != nil {
		return nil, err
	}
	x := &Export{Path: f.Name(), temp: f.Name()}
	_, err = archive.WriteFiles(ctx, root, names, f, archive.DefaultLimits)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		x.Remove()
		return nil, err
	}
	return x, nil
}

// lsFiles lists the files of the work tree at dir, relative to it.
func lsFiles(ctx context.Context, dir string, which ...string) ([]string, error) {
	out, err := git(ctx, dir, append([]string{"ls-files", "-z"}, which...)...)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "check the checkout with 'git status'", "listing the files of %s", dir)
	}
	var names []string
	for _, n := range strings.Split(string(out), "\x00") {
		if n != "" {
			names = append(names, n)
		}
	}
	return names, nil
}

// git runs git in dir ("" for the current directory), never prompting.
func git(ctx context.Context, dir string, args ...string) ([]byte, error) {
	if _, err := exec.LookPath("git"); err != nil {
		return nil, errdefs.New(errdefs.ErrUnavailable, "install git (apt-get install git)", "git is not installed")
	}
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return nil, fmt.Errorf("git %s: %s", args[0], msg)
		}
		return nil, fmt.Errorf("git %s: %w", args[0], err)
	}
	return out, nil
}

// redact drops credentials from a URL before it is logged or recorded.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	u.User = nil
	return u.String()
}
