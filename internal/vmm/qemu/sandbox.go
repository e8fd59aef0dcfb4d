package qemu

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/pyro-mcp/pyro/internal/atomicfile"
	"github.com/pyro-mcp/pyro/internal/paths"
)

// SandboxPolicy is the -sandbox value QEMU runs with where its build has
// seccomp support: the filter blocks obsolete system calls, privilege
// changes (setuid and friends), spawning processes (fork/exec) and
// resource control (setpriority, sched_setaffinity). A guest that breaks
// out of QEMU's device emulation lands in a process that can do none of
// that. Measured here (QEMU 7.2, TCG): microvm boots and runs pyro's
// guests unchanged with it.
const SandboxPolicy = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"

// sandboxCacheFile records, per QEMU binary, whether it took the policy.
const sandboxCacheFile = "qemu-sandbox.json"

type sandboxVerdict struct {
	Bin       string    `json:"bin"`
	Size      int64     `json:"size"`
	ModTime   time.Time `json:"mod_time"`
	Supported bool      `json:"supported"`
}

var sandboxMemo sync.Map // bin -> sandboxVerdict

// Sandbox returns the -sandbox argument for bin: SandboxPolicy when the
// binary accepts it, "" when it was built without seccomp or
// PYRO_QEMU_SANDBOX=off asks to run without it. The answer is probed once
// per binary (path, size and mtime) and cached in the environment cache.
func Sandbox(bin string) string {
	if os.Getenv("PYRO_QEMU_SANDBOX") == "off" {
		return ""
	}
	fi, err := os.Stat(bin)
	if err != nil {
		return ""
	}
	key := sandboxVerdict{Bin: bin, Size: fi.Size(), ModTime: fi.ModTime().UTC()}
	same := func(v sandboxVerdict) bool {
		return v.Bin == key.Bin && v.Size == key.Size && v.ModTime.Equal(key.ModTime)
	}
	policy := func(ok bool) string {
		if ok {
			return SandboxPolicy
		}
		return ""
	}
	if v, ok := sandboxMemo.Load(bin); ok && same(v.(sandboxVerdict)) {
		return policy(v.(sandboxVerdict).Supported)
	}
	cache := filepath.Join(paths.CacheDir(), sandboxCacheFile)
	var cached []sandboxVerdict
	if data, err := os.ReadFile(cache); err == nil {
		_ = json.Unmarshal(data, &cached)
	}
	for _, v := range cached {
		if same(v) {
			sandboxMemo.Store(bin, v)
			return policy(v.Supported)
		}
	}
	var settled bool
	key.Supported, settled = probeSandbox(bin)
	if !settled {
		return "" // a timeout is not a verdict: ask again next time
	}
	sandboxMemo.Store(bin, key)
	kept := []sandboxVerdict{key}
	for _, v := range cached {
		if v.Bin != bin {
			kept = append(kept, v)
		}
	}
	if data, err := json.Marshal(kept); err == nil && paths.EnsurePrivate(filepath.Dir(cache)) == nil {
		_ = atomicfile.WriteFile(cache, data, 0o600)
	}
	return policy(key.Supported)
}

// probeSandbox asks bin to parse the policy: QEMU checks -sandbox and its
// options while reading the command line, before -version exits, so a
// build without seccomp (or one that lacks an option) fails here without
// starting a machine. settled is false when the probe could not tell (it
// timed out on a loaded host).
func probeSandbox(bin string) (supported, settled bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := exec.CommandContext(ctx, bin, "-sandbox", SandboxPolicy, "-version").Run()
	if ctx.Err() != nil {
		return false, false
	}
	return err == nil, true
}
