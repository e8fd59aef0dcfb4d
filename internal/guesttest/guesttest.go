// Package guesttest is the one gate for tests that boot real guests: the
// testscript condition [guest], the SDK tests, the MCP tests and the
// package tests that need a guest kernel all ask it, so they agree on
// what "a guest can boot here" means. A guest can boot when QEMU and
// qemu-img are found (hostbin) and debian:12 is installed in the test
// cache. Under CI=true a missing prerequisite fails the test instead of
// skipping it: CI runs ./scripts/setup.sh, which provides all of them, so
// a skip there would only hide a broken setup.
package guesttest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/pyro-mcp/pyro/internal/catalog"
	"github.com/pyro-mcp/pyro/internal/hostbin"
	"github.com/pyro-mcp/pyro/internal/paths"
)

// Environment is the environment guest tests boot.
const Environment = "debian:12"

// CI reports whether the tests run in CI ($CI=true).
func CI() bool { return os.Getenv("CI") == "true" }

// CacheDir is the environment cache tests share: $PYRO_TEST_CACHE_DIR,
// else the user's own pyro cache.
func CacheDir() string {
	if d := os.Getenv("PYRO_TEST_CACHE_DIR"); d != "" {
		return d
	}
	return paths.CacheDir()
}

// Prereqs is what a guest test needs, as found on this host.
type Prereqs struct {
	QEMU    string             // qemu-system-x86_64
	Kernel  string             // the installed environment's kernel
	Env     *catalog.Installed // the installed environment
	Missing string             // why a guest cannot boot here; "" when it can
}

var probe = sync.OnceValue(func() Prereqs {
	var p Prereqs
	var err error
	if p.QEMU, err = hostbin.QEMU.Find(""); err != nil {
		p.Missing = err.Error()
		return p
	}
	if _, err := hostbin.QEMUImg.Find(""); err != nil {
		p.Missing = err.Error()
		return p
	}
	s, err := catalog.Open(catalog.Options{Dir: CacheDir(), Registry: "none"})
	if err != nil {
		p.Missing = fmt.Sprintf("no environment cache at %s: %v", CacheDir(), err)
		return p
	}
	if p.Env, err = s.Resolve(context.Background(), Environment); err != nil {
		p.Missing = fmt.Sprintf("%s is not installed in %s (pyro env pull %s): %v", Environment, CacheDir(), Environment, err)
		return p
	}
	p.Kernel = p.Env.KernelPath
	return p
})

// Found is what this host has (Missing says what it lacks).
func Found() Prereqs { return probe() }

// Available reports whether a guest can boot here, and if not, why.
func Available() (bool, string) {
	p := probe()
	return p.Missing == "", p.Missing
}

// Need returns the prerequisites, or skips t (fails it under CI=true)
// when a guest cannot boot here.
func Need(t testing.TB) Prereqs {
	t.Helper()
	p := probe()
	if p.Missing != "" {
		Missing(t, "no guest can boot here: "+p.Missing)
	}
	return p
}

// Missing skips t because of what it lacks, or fails it under CI=true.
func Missing(t testing.TB, why string) {
	t.Helper()
	if CI() {
		t.Fatalf("%s (CI=true: CI provides this, so a skip would hide a broken setup)", why)
	}
	t.Skip(why)
}
