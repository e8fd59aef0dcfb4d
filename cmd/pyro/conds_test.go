package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/pyro-mcp/pyro/internal/aptsource"
	"github.com/pyro-mcp/pyro/internal/guesttest"
)

// testCacheDir is the environment cache the scripts share:
// $PYRO_TEST_CACHE_DIR, else the user's own pyro cache.
func testCacheDir() string { return guesttest.CacheDir() }

type scriptCmd = func(ts *testscript.TestScript, neg bool, args []string)

// Each *_test.go file of this package adds its own script commands and
// conditions from an init function, so no two files edit the same map literal.
var (
	scriptCmdRegistry  = map[string]scriptCmd{}
	scriptCondRegistry = map[string]func() (bool, error){
		"root": func() (bool, error) { return os.Geteuid() == 0, nil },
		// mirror: the host's apt names a Debian mirror ($DEBIAN_MIRROR).
		"mirror": func() (bool, error) { return aptsource.Mirror("", "bookworm") != "", nil },
	}
)

func scriptCmds() map[string]scriptCmd { return scriptCmdRegistry }

// scriptCondition answers [name] conditions that scripts use to skip what
// this host cannot do.
func scriptCondition(cond string) (bool, error) {
	if f, ok := scriptCondRegistry[strings.TrimSpace(cond)]; ok {
		return f()
	}
	return false, fmt.Errorf("unknown condition %q", cond)
}
