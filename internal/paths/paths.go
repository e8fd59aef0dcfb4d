// Package paths owns where pyro keeps things on the host: the environment
// cache, the durable state of VMs and workspaces, and the short runtime
// directory for sockets (unix socket paths are limited to ~108 bytes).
package paths

import (
	"fmt"
	"os"
	"path/filepath"
)

// CacheDir is where environments live: $PYRO_CACHE_DIR, else
// $XDG_CACHE_HOME/pyro, else ~/.cache/pyro.
func CacheDir() string {
	if d := os.Getenv("PYRO_CACHE_DIR"); d != "" {
		return abs(d)
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(abs(d), "pyro")
	}
	return filepath.Join(home(), ".cache", "pyro")
}

// StateDir is where VM and workspace records, disks and logs live:
// $PYRO_STATE_DIR, else $XDG_STATE_HOME/pyro, else ~/.local/state/pyro.
func StateDir() string {
	if d := os.Getenv("PYRO_STATE_DIR"); d != "" {
		return abs(d)
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(abs(d), "pyro")
	}
	return filepath.Join(home(), ".local", "state", "pyro")
}

// RuntimeDir holds sockets and pid files: $PYRO_RUNTIME_DIR, else
// $XDG_RUNTIME_DIR/pyro, else /tmp/pyro-<uid>. It is kept short on purpose.
func RuntimeDir() string {
	if d := os.Getenv("PYRO_RUNTIME_DIR"); d != "" {
		return abs(d)
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(abs(d), "pyro")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("pyro-%d", os.Getuid()))
}

// ConfigFile is pyro's optional config file: $PYRO_CONFIG, else
// $XDG_CONFIG_HOME/pyro/config.json, else ~/.config/pyro/config.json.
func ConfigFile() string {
	if f := os.Getenv("PYRO_CONFIG"); f != "" {
		return abs(f)
	}
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(abs(d), "pyro", "config.json")
	}
	return filepath.Join(home(), ".config", "pyro", "config.json")
}

// EnsurePrivate creates dir (and parents) with mode 0700 and tightens it if
// it already exists: pyro's state is private to the user.
func EnsurePrivate(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}

func home() string {
	if h, err := os.UserHomeDir(); err == nil && h != "" {
		return h
	}
	return os.TempDir()
}

func abs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
