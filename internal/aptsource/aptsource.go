// Package aptsource reads the host's apt configuration to find the Debian
// mirror it uses, so that pyro builds environments from the same mirror (or
// proxy) as the host's own package manager, and so that nothing in pyro
// names a mirror itself.
//
// Both formats are read: deb822 files (/etc/apt/sources.list.d/*.sources)
// and one-line entries (/etc/apt/sources.list and sources.list.d/*.list).
// $PYRO_DEBIAN_MIRROR overrides whatever apt says.
package aptsource

import (
	"bufio"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// EnvMirror names the environment variable that overrides the mirror.
const EnvMirror = "PYRO_DEBIAN_MIRROR"

// DefaultRoot is where apt's configuration lives.
const DefaultRoot = "/etc/apt"

// Source is one repository line (or deb822 stanza, one per URI) of apt's
// configuration.
type Source struct {
	Type       string   // "deb" or "deb-src"
	URI        string   // e.g. "http://mirror.example/debian"
	Suites     []string // e.g. ["bookworm", "bookworm-updates"]
	Components []string
	File       string // where it was read
}

// Read returns every enabled source configured under root (DefaultRoot
// when empty), in the order apt reads them: sources.list, then
// sources.list.d in lexical order. Files that cannot be read are skipped:
// a host without apt has no sources.
func Read(root string) []Source {
	if root == "" {
		root = DefaultRoot
	}
	var out []Source
	out = append(out, readList(filepath.Join(root, "sources.list"))...)
	entries, _ := os.ReadDir(filepath.Join(root, "sources.list.d"))
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, n := range names {
		p := filepath.Join(root, "sources.list.d", n)
		switch {
		case strings.HasSuffix(n, ".list"):
			out = append(out, readList(p)...)
		case strings.HasSuffix(n, ".sources"):
			out = append(out, readDeb822(p)...)
		}
	}
	return out
}

// Mirror returns the Debian mirror to build suite from: $PYRO_DEBIAN_MIRROR
// when set, else the first binary ("deb") source of apt's configuration
// under root that carries suite itself (not suite-updates or
// suite-security), else "". An empty mirror means "let mmdebstrap choose
// its own default".
func Mirror(root, suite string) string {
	if m := strings.TrimSpace(os.Getenv(EnvMirror)); m != "" {
		return m
	}
	for _, s := range Read(root) {
		if s.Type != "deb" {
			continue
		}
		for _, su := range s.Suites {
			if su == suite {
				return strings.TrimRight(s.URI, "/")
			}
		}
	}
	return ""
}

// Hosts returns the host names of every source configured under root,
// without duplicates, sorted.
func Hosts(root string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range Read(root) {
		u, err := url.Parse(s.URI)
		if err != nil || u.Hostname() == "" {
			continue
		}
		h := strings.ToLower(u.Hostname())
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	sort.Strings(out)
	return out
}

// readList parses one-line entries:
//
//	deb [ option=value ... ] uri suite [component ...]
func readList(path string) []Source {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []Source
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) < 3 || (fields[0] != "deb" && fields[0] != "deb-src") {
			continue
		}
		typ, rest := fields[0], fields[1:]
		if strings.HasPrefix(rest[0], "[") {
			// Options: skip to the field that closes the bracket.
			for len(rest) > 0 && !strings.HasSuffix(rest[0], "]") {
				rest = rest[1:]
			}
			if len(rest) > 0 {
				rest = rest[1:]
			}
		}
		if len(rest) < 2 {
			continue
		}
		out = append(out, Source{Type: typ, URI: rest[0], Suites: []string{rest[1]}, Components: rest[2:], File: path})
	}
	return out
}

// readDeb822 parses deb822 stanzas (fields Types, URIs, Suites,
// Components, Enabled), one Source per type and URI.
func readDeb822(path string) []Source {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []Source
	flush := func(st map[string]string) {
		if len(st) == 0 || strings.EqualFold(strings.TrimSpace(st["enabled"]), "no") {
			return
		}
		for _, typ := range strings.Fields(st["types"]) {
			for _, uri := range strings.Fields(st["uris"]) {
				out = append(out, Source{Type: typ, URI: uri, Suites: strings.Fields(st["suites"]),
					Components: strings.Fields(st["components"]), File: path})
			}
		}
	}
	st := map[string]string{}
	last := ""
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.TrimSpace(line) == "":
			flush(st)
			st, last = map[string]string{}, ""
		case strings.HasPrefix(line, "#"):
		case line[0] == ' ' || line[0] == '\t':
			if last != "" { // continuation of a multi-line field
				st[last] += " " + strings.TrimSpace(line)
			}
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			last = strings.ToLower(strings.TrimSpace(k))
			st[last] = strings.TrimSpace(v)
		}
	}
	flush(st)
	return out
}
