// Package registrytest runs a real OCI registry server (Debian's
// docker-registry, the CNCF distribution registry) on a free loopback port,
// for tests and benchmarks that push and pull environments.
package registrytest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Registry is a running registry process.
type Registry struct {
	Addr string // host:port on 127.0.0.1
	Dir  string // its storage root
	cmd  *exec.Cmd
	logf *os.File
}

// Binary is the registry server pyro's tests use.
const Binary = "/usr/bin/docker-registry"

// Start runs the registry with its storage and log under dir and waits until
// it answers /v2/.
func Start(ctx context.Context, dir string) (*Registry, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("finding a free port: %w", err)
	}
	addr := l.Addr().String()
	l.Close()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", data, addr)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(Binary, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", Binary, err)
	}
	r := &Registry{Addr: addr, Dir: data, cmd: cmd, logf: logf}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v2/", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r, nil
			}
		}
		select {
		case <-ctx.Done():
			r.Stop()
			log, _ := os.ReadFile(filepath.Join(dir, "log"))
			return nil, fmt.Errorf("docker-registry did not answer on %s: %s", addr, log)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop ends the registry process.
func (r *Registry) Stop() {
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.logf.Close()
}
