package main

import (
	"context"
	"os"
	"os/exec"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/pyro-mcp/pyro/internal/catalog"
	"github.com/pyro-mcp/pyro/internal/registrytest"
)

func init() {
	// [envbuild]: this host can build environments locally (root, mmdebstrap, mkfs.ext4).
	scriptCondRegistry["envbuild"] = func() (bool, error) {
		if os.Geteuid() != 0 {
			return false, nil
		}
		for _, tool := range []string{"mmdebstrap", "dpkg-query"} {
			if _, err := exec.LookPath(tool); err != nil {
				return false, nil
			}
		}
		_, err := os.Stat("/usr/sbin/mkfs.ext4")
		return err == nil, nil
	}
	scriptCmdRegistry["registry"] = cmdRegistry
	scriptCmdRegistry["damage-env"] = cmdDamageEnv
}

// registry start: run a real OCI registry (/usr/bin/docker-registry) on a
// free loopback port with its storage in $WORK, export REGISTRY=HOST:PORT,
// and stop it when the script ends.
func cmdRegistry(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 || args[0] != "start" {
		ts.Fatalf("usage: registry start")
	}
	reg, err := registrytest.Start(context.Background(), ts.MkAbs("registry"))
	if err != nil {
		ts.Fatalf("%v", err)
	}
	ts.Defer(reg.Stop)
	ts.Setenv("REGISTRY", reg.Addr)
}

// damage-env NAME: truncate the installed rootfs of NAME in $PYRO_CACHE_DIR,
// as a crash or a full disk might.
func cmdDamageEnv(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: damage-env NAME")
	}
	s, err := catalog.Open(catalog.Options{Dir: ts.Getenv("PYRO_CACHE_DIR"), Registry: "none"})
	if err != nil {
		ts.Fatalf("%v", err)
	}
	inst, err := s.Resolve(context.Background(), args[0])
	if err != nil {
		ts.Fatalf("%v", err)
	}
	if err := os.Truncate(inst.RootfsPath, 4096); err != nil {
		ts.Fatalf("%v", err)
	}
}
