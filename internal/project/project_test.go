package project

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

func needGit(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
}

// run runs git in dir with a fixed identity.
func run(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// tarFiles reads the regular files of a tar: name -> body.
func tarFiles(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, _ := io.ReadAll(tr)
			out[h.Name] = string(b)
		}
	}
}

// checkout makes a git checkout with tracked, modified, deleted,
// untracked and ignored files.
func checkout(t *testing.T) string {
	dir := t.TempDir()
	run(t, dir, "init", "-q")
	write(t, dir, map[string]string{".gitignore": "*.log\nbuild/\n.env\n", "src/main.py": "v1\n", "gone.txt": "x", "README": "hi\n"})
	run(t, dir, "add", "-A")
	run(t, dir, "commit", "-qm", "init")
	write(t, dir, map[string]string{"src/main.py": "v2\n", "new.txt": "untracked\n", "debug.log": "ignored", "build/out.bin": "ignored", ".env": "SECRET=1"})
	os.Remove(filepath.Join(dir, "gone.txt"))
	return dir
}

func TestProjectExport(t *testing.T) {
	needGit(t)
	dir := checkout(t)
	ctx := t.Context()
	if got := Detect(ctx, filepath.Join(dir, "src")); got != dir {
		t.Errorf("Detect from a subdirectory = %q, want %q", got, dir)
	}
	if got := Detect(ctx, t.TempDir()); got != "" {
		t.Errorf("Detect outside a checkout = %q", got)
	}
	s, err := FromDir(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	x, err := s.Export(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{".gitignore": "*.log\nbuild/\n.env\n", "src/main.py": "v2\n", "README": "hi\n", "new.txt": "untracked\n"}
	if diff := cmp.Diff(want, tarFiles(t, x.Path)); diff != "" {
		t.Errorf("seeded files (-want +got):\n%s", diff)
	}
	if x.Origin != (api.SeedOrigin{Kind: api.OriginProject, Ref: dir}) {
		t.Errorf("origin %+v", x.Origin)
	}
	if fi, err := os.Stat(x.Path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("export %s: %v %v, want a private file", x.Path, fi.Mode(), err)
	}
	x.Remove()
	if _, err := os.Stat(x.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("export not removed: %v", err)
	}

	// A subdirectory named explicitly seeds that subtree.
	s, err = FromDir(ctx, filepath.Join(dir, "src"))
	if err != nil {
		t.Fatal(err)
	}
	x, err = s.Export(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Remove()
	if diff := cmp.Diff(map[string]string{"main.py": "v2\n"}, tarFiles(t, x.Path)); diff != "" {
		t.Errorf("subtree (-want +got):\n%s", diff)
	}
}

func TestProjectChecks(t *testing.T) {
	needGit(t)
	dir := checkout(t)
	os.Symlink("/etc/passwd", filepath.Join(dir, "passwd"))
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	s, err := FromDir(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Export(t.Context())
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "passwd") || !strings.Contains(errdefs.HintOf(err), ".gitignore") {
		t.Fatalf("escaping link: %v (hint %q)", err, errdefs.HintOf(err))
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("a refused export left %v behind", left)
	}
}

func TestPlainDirectory(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{"a.txt": "a", "x.log": "kept: no git here"})
	s, err := FromDir(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	x, err := s.Export(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer x.Remove()
	if x.Path != dir || x.Origin.Kind != api.OriginProject {
		t.Errorf("export %+v", x)
	}
	for _, bad := range []string{filepath.Join(dir, "nope"), filepath.Join(dir, "a.txt")} {
		if _, err := FromDir(t.Context(), bad); err == nil {
			t.Errorf("FromDir(%s) accepted", bad)
		}
	}
}

func TestRepoExport(t *testing.T) {
	needGit(t)
	work := checkout(t)
	run(t, work, "tag", "v1")
	first := run(t, work, "rev-parse", "HEAD")
	run(t, work, "checkout", "-qb", "feature")
	write(t, work, map[string]string{"feature.txt": "f\n"})
	run(t, work, "add", "feature.txt")
	run(t, work, "commit", "-qm", "feature")
	feature := run(t, work, "rev-parse", "HEAD")
	run(t, work, "checkout", "-q", "main")
	bare := filepath.Join(t.TempDir(), "app.git")
	run(t, work, "clone", "-q", "--bare", work, bare)
	url := "file://" + bare

	ctx := t.Context()
	for _, tc := range []struct {
		ref, commit string
		has, lacks  string
	}{
		{"", first, "gone.txt", "feature.txt"},
		{"v1", first, "gone.txt", "new.txt"},
		{"feature", feature, "feature.txt", "debug.log"},
		{feature[:12], feature, "feature.txt", ".env"},
	} {
		s, err := FromRepo(url, tc.ref)
		if err != nil {
			t.Fatal(err)
		}
		x, err := s.Export(ctx)
		if err != nil {
			t.Fatalf("ref %q: %v", tc.ref, err)
		}
		files := tarFiles(t, x.Path)
		x.Remove()
		if _, ok := files[tc.has]; !ok {
			t.Errorf("ref %q: %s missing from %v", tc.ref, tc.has, files)
		}
		if _, ok := files[tc.lacks]; ok {
			t.Errorf("ref %q: %s seeded", tc.ref, tc.lacks)
		}
		if want := (api.SeedOrigin{Kind: api.OriginRepo, Ref: url + "@" + tc.commit}); x.Origin != want {
			t.Errorf("ref %q: origin %+v, want %+v", tc.ref, x.Origin, want)
		}
	}

	s, _ := FromRepo(url, "no-such-branch")
	if _, err := s.Export(ctx); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unknown ref: %v", err)
	}
	s, _ = FromRepo("file://"+filepath.Join(t.TempDir(), "missing.git"), "")
	if _, err := s.Export(ctx); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("missing repository: %v", err)
	}
	for _, bad := range [][2]string{{"", ""}, {"--upload-pack=x", ""}, {url, "--orphan"}} {
		if _, err := FromRepo(bad[0], bad[1]); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("FromRepo(%q, %q): %v", bad[0], bad[1], err)
		}
	}
	if got := redact("https://user:tok@example.com/a.git"); got != "https://example.com/a.git" {
		t.Errorf("redact: %s", got)
	}
}
