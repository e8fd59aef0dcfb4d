package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/pyro-mcp/pyro/internal/aptsource"
)

// pyroBinDir holds a real, statically linked pyro binary built once per test
// run: the scripts run it as a user would, and the engine puts the same
// binary into the guest's initramfs as its agent.
var pyroBinDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pyro-bin-")
	if err != nil {
		panic(err)
	}
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "pyro"), ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		panic("building pyro: " + err.Error())
	}
	// The guest agent beside pyro, as a release ships it: a few MB of
	// initramfs instead of pyro's ~27.
	cmd = exec.Command("go", "build", "-o", filepath.Join(dir, "pyro-agent"), "../pyro-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		panic("building pyro-agent: " + err.Error())
	}
	pyroBinDir = dir
	// Every test boots cold but the warm-start ones (warm*.txtar,
	// warm_test.go), which set PYRO_TEMPLATES themselves.
	os.Setenv("PYRO_TEMPLATES", "off")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: false,
		Setup: func(env *testscript.Env) error {
			env.Setenv("PATH", pyroBinDir+string(os.PathListSeparator)+env.Getenv("PATH"))
			env.Setenv("HOME", env.WorkDir)
			// Short and unique: unix socket paths must stay under 108 bytes.
			runDir, err := os.MkdirTemp("", "pyro-ts-")
			if err != nil {
				return err
			}
			stateDir := filepath.Join(env.WorkDir, ".state")
			env.Setenv("PYRO_RUNTIME_DIR", runDir)
			env.Setenv("PYRO_STATE_DIR", stateDir)
			env.Setenv("PYRO_TEMPLATES", "off")
			// A failing script must not leave guests running.
			env.Defer(func() {
				killProcessesMentioning(runDir, stateDir)
				os.RemoveAll(runDir)
			})
			// Environments are slow to build: scripts share the real cache
			// (the one `pyro env pull` fills for the user) unless told otherwise.
			env.Setenv("PYRO_CACHE_DIR", testCacheDir())
			env.Setenv("GOARCH", runtime.GOARCH)
			env.Setenv("HOST_KERNEL", hostKernel())
			// The Debian mirror the host's apt uses: the one address off this
			// machine a test may reach. Never written into a script.
			mirror := aptsource.Mirror("", "bookworm")
			env.Setenv("DEBIAN_MIRROR", mirror)
			env.Setenv("DEBIAN_MIRROR_RE", regexp.QuoteMeta(mirror))
			return nil
		},
		Cmds:      scriptCmds(),
		Condition: scriptCondition,
	})
}

func hostKernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}
