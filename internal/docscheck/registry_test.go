package docscheck

import (
	"bytes"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/internal/aptsource"
)

// registryHosts are the package registries this machine uses, read from
// their own configuration at test time so that this test never names one:
// Debian's mirrors from apt, the Go module proxy and checksum database from
// the go command, npm's registry from npm (when it is installed).
func registryHosts(t *testing.T) []string {
	hosts := aptsource.Hosts("")
	add := func(raw string) {
		for _, f := range strings.FieldsFunc(raw, func(r rune) bool { return r == ',' || r == '|' || r == ' ' || r == '\n' }) {
			if !strings.Contains(f, "://") {
				f = "https://" + f
			}
			u, err := url.Parse(f)
			if err != nil || !strings.Contains(u.Hostname(), ".") {
				continue // "direct", "off"
			}
			hosts = append(hosts, strings.ToLower(u.Hostname()))
		}
	}
	if out, err := exec.Command("go", "env", "GOPROXY", "GOSUMDB").Output(); err == nil {
		// GOSUMDB may be "name+key url": every field is tried.
		add(string(out))
	} else {
		t.Logf("go env: %v", err)
	}
	if _, err := exec.LookPath("npm"); err == nil {
		if out, err := exec.Command("npm", "config", "get", "registry").Output(); err == nil {
			add(string(out))
		}
	}
	return hosts
}

// hostPattern matches host in any spelling a file might use: plain, in a
// URL, with its dots escaped for a regular expression (one or two
// backslashes, or a [.] class) or percent-encoded.
func hostPattern(host string) *regexp.Regexp {
	parts := strings.Split(regexp.QuoteMeta(host), `\.`)
	dot := `(?:\\{0,2}\.|\[\.\]|%2[eE])`
	return regexp.MustCompile(`(?i)(?:^|[^a-z0-9-])` + strings.Join(parts, dot) + `(?:$|[^a-z0-9.-]|\.(?:$|[^a-z0-9-]))`)
}

// repoFiles lists the files git tracks, and the untracked ones it does not
// ignore, relative to the repository root.
func repoFiles(t *testing.T) []string {
	cmd := exec.Command("git", "ls-files", "--cached", "--others", "--exclude-standard")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// TestNoRegistryHostNames keeps every package registry this machine uses out
// of the tree: code, tests and docs read the Debian mirror from apt and
// show placeholders (example.com) elsewhere.
func TestNoRegistryHostNames(t *testing.T) {
	hosts := registryHosts(t)
	if len(hosts) == 0 {
		t.Skip("this machine names no package registry")
	}
	pats := map[string]*regexp.Regexp{}
	for _, h := range hosts {
		pats[h] = hostPattern(h)
	}
	for _, f := range repoFiles(t) {
		data, err := os.ReadFile(filepath.Join(repoRoot, f))
		if err != nil || bytes.IndexByte(data, 0) >= 0 {
			continue // deleted in the work tree, or binary
		}
		for h, re := range pats {
			if loc := re.FindIndex(data); loc != nil {
				line := bytes.Count(data[:loc[0]], []byte("\n")) + 1
				t.Errorf("%s:%d names the package registry %s; read it from the host's configuration or use a placeholder such as example.com", f, line, h)
			}
		}
	}
}

func TestHostPattern(t *testing.T) {
	re := hostPattern("pkgs.example.org")
	for _, s := range []string{"pkgs.example.org", "http://pkgs.example.org/x", `pkgs\.example\.org`,
		`pkgs\\.example\\.org`, "pkgs[.]example[.]org", "PKGS.EXAMPLE.ORG", "pkgs%2Eexample%2eorg"} {
		if !re.MatchString(s) {
			t.Errorf("%q not matched", s)
		}
	}
	for _, s := range []string{"example.org", "xpkgs.example.org", "pkgs.example.org.uk", "pkgs-example-org"} {
		if re.MatchString(s) {
			t.Errorf("%q matched", s)
		}
	}
}
