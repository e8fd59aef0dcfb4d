package initramfs

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pyro-mcp/pyro/internal/atomicfile"
)

// AgentName is the separate guest agent (cmd/pyro-agent) pyro looks for
// beside its own binary: a few MB of initramfs instead of pyro's ~27 MB,
// which QEMU loads and the guest's kernel unpacks on every cold boot.
const AgentName = "pyro-agent"

// FindAgent returns the binary to put in the initramfs as /init:
// explicit when set; else AgentName beside pyroBin (or beside this
// executable when pyroBin is "") when it answers --version with want;
// else pyroBin (or this executable) itself, which is an agent too. The
// answer of a candidate is remembered per file identity in cacheDir.
func FindAgent(cacheDir, explicit, pyroBin, want string) (string, error) {
	if explicit != "" {
		return AgentBinary(explicit)
	}
	self := pyroBin
	if self == "" {
		exe, err := os.Executable()
		if err != nil {
			return AgentBinary("")
		}
		self = exe
	}
	beside := filepath.Join(filepath.Dir(self), AgentName)
	if agentVersion(filepath.Join(cacheDir, "initramfs"), beside) == want && CheckStatic(beside) == nil {
		return beside, nil
	}
	return AgentBinary(self)
}

var versions sync.Map // file identity -> --version line

// agentVersion runs bin --version once per file identity (remembered in
// dir/agents.json), or "" when it is missing or does not answer.
func agentVersion(dir, bin string) string {
	id, err := fileID(bin)
	if err != nil {
		return ""
	}
	if v, ok := versions.Load(id); ok {
		return v.(string)
	}
	file := filepath.Join(dir, "agents.json")
	var known map[string]string
	if data, err := os.ReadFile(file); err == nil {
		json.Unmarshal(data, &known)
	}
	if v, ok := known[id]; ok {
		versions.Store(id, v)
		return v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return "" // not remembered: a timeout on a busy host is no verdict
	}
	v := strings.TrimSpace(string(out))
	versions.Store(id, v)
	if known == nil || len(known) >= maxSums {
		known = map[string]string{}
	}
	known[id] = v
	if data, err := json.Marshal(known); err == nil && os.MkdirAll(dir, 0o755) == nil {
		_ = atomicfile.WriteFile(file, data, 0o644)
	}
	return v
}
