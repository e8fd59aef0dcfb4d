package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/pyro-mcp/pyro/internal/catalog"
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
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ts.Fatalf("finding a free port: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := ts.MkAbs("registry")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		ts.Fatalf("%v", err)
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
http:
  addr: %s
`, filepath.Join(dir, "data"), addr)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		ts.Fatalf("%v", err)
	}
	logf, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		ts.Fatalf("%v", err)
	}
	cmd := exec.Command("/usr/bin/docker-registry", "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		ts.Fatalf("starting docker-registry: %v", err)
	}
	ts.Defer(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v2/", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-ctx.Done():
			log, _ := os.ReadFile(filepath.Join(dir, "log"))
			ts.Fatalf("docker-registry did not answer on %s:\n%s", addr, log)
		case <-time.After(50 * time.Millisecond):
		}
	}
	ts.Setenv("REGISTRY", addr)
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
