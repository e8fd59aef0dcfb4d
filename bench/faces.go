package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro"
)

// facesSuite: vm_run through MCP against `pyro run` for the same command,
// and workspace exec p50 through MCP, the Go SDK and the Python facade.
func (b *benchEnv) facesSuite(ctx context.Context) error {
	r := b.report
	r.line("\n## The three faces (issue 5)\n\n")
	const env, runs = "debian:12-base", 5
	client := mcp.NewClient(&mcp.Implementation{Name: "pyro-bench", Version: "1"}, nil)
	sess, err := client.Connect(ctx, &mcp.CommandTransport{Command: exec.Command(b.pyro, "mcp", "serve")}, nil)
	if err != nil {
		return err
	}
	defer sess.Close()
	call := func(tool string, args map[string]any) (map[string]any, error) {
		res, err := sess.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
		if err != nil {
			return nil, err
		}
		if res.IsError {
			return nil, fmt.Errorf("%s: %v", tool, res.Content)
		}
		data, _ := json.Marshal(res.StructuredContent)
		var out map[string]any
		return out, json.Unmarshal(data, &out)
	}
	// Interleave the two so that machine noise hits both alike.
	var viaMCP, viaCLI []time.Duration
	for i := 0; i < runs; i++ {
		t := time.Now()
		if _, err := call("vm_run", map[string]any{"environment": env, "command": "true"}); err != nil {
			return err
		}
		viaMCP = append(viaMCP, time.Since(t))
		t = time.Now()
		if _, err := b.pyroCmd(ctx, nil, "run", env, "--", "true"); err != nil {
			return err
		}
		viaCLI = append(viaCLI, time.Since(t))
	}
	slices.Sort(viaMCP)
	slices.Sort(viaCLI)
	r.line("- `vm_run` of `true` through MCP (stdio, one `pyro mcp serve`): median %s; `pyro run` of the same: median %s; **ratio %.2f** (target ≤ 1.05)\n",
		ms(pct(viaMCP, .5)), ms(pct(viaCLI, .5)), float64(pct(viaMCP, .5))/float64(pct(viaCLI, .5)))

	ws, err := call("workspace_create", map[string]any{"environment": "debian:12"})
	if err != nil {
		return err
	}
	id := ws["workspace_id"].(string)
	defer call("workspace_delete", map[string]any{"workspace_id": id})
	n := b.n / 2
	mcpDs, err := timeIt(n, func() error {
		_, err := call("workspace_exec", map[string]any{"workspace_id": id, "command": "true"})
		return err
	})
	if err != nil {
		return err
	}
	c, err := pyro.New(nil)
	if err != nil {
		return err
	}
	sdkDs, err := timeIt(n, func() error {
		_, err := c.ExecWorkspace(ctx, id, pyro.ExecOptions{Argv: []string{"true"}})
		return err
	})
	if err != nil {
		return err
	}
	py := fmt.Sprintf(`
import json, sys, time
sys.path.insert(0, "python")
from pyro_mcp import Pyro
p = Pyro()
ds = []
for _ in range(%d):
    t = time.perf_counter()
    p.exec_workspace(%q, command="true")
    ds.append(time.perf_counter() - t)
print(json.dumps(ds))
`, 30, id)
	cmd := exec.CommandContext(ctx, "python3", "-c", py)
	cmd.Env = os.Environ()
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("python facade: %v", err)
	}
	var secs []float64
	if err := json.Unmarshal(out, &secs); err != nil {
		return fmt.Errorf("python facade output %q: %v", strings.TrimSpace(string(out)), err)
	}
	var pyDs []time.Duration
	for _, s := range secs {
		pyDs = append(pyDs, time.Duration(s*float64(time.Second)))
	}
	slices.Sort(pyDs)
	r.line("- workspace exec of `true`, p50: MCP %s (%d calls), Go SDK %s (%d calls), Python facade %s (30 calls; a pyro process per call)\n",
		ms(pct(mcpDs, .5)), n, ms(pct(sdkDs, .5)), n, ms(pct(pyDs, .5)))
	return nil
}
