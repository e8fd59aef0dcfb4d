package mcpserver

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func listTools(t *testing.T, cs *mcp.ClientSession) map[string]*mcp.Tool {
	t.Helper()
	res, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tools := map[string]*mcp.Tool{}
	for _, tool := range res.Tools {
		tools[tool.Name] = tool
	}
	return tools
}

func properties(t *testing.T, tool *mcp.Tool) []string {
	t.Helper()
	var sch struct {
		Properties map[string]any `json:"properties"`
	}
	b, _ := json.Marshal(tool.InputSchema)
	if err := json.Unmarshal(b, &sch); err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range sch.Properties {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// TestProfileTable checks the table against the registered tools: every
// row is a tool, workspace-full has them all, and tools/list of each
// profile is its column.
func TestProfileTable(t *testing.T) {
	for name, row := range toolProfiles {
		if !row.in.has(ProfileWorkspaceFull) {
			t.Errorf("%s: not in workspace-full, which has every tool", name)
		}
	}
	for _, profile := range Profiles {
		t.Run(profile, func(t *testing.T) {
			want, err := ProfileTools(profile)
			if err != nil {
				t.Fatal(err)
			}
			tools := listTools(t, connectWith(t, &Options{Profile: profile}, nil))
			var got []string
			for name := range tools {
				got = append(got, name)
			}
			slices.Sort(got)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("tools/list (-table +server):\n%s", diff)
			}
			for _, name := range got {
				for _, arg := range ProfileOmits(profile, name) {
					if slices.Contains(properties(t, tools[name]), arg) {
						t.Errorf("%s: %s still takes %s", profile, name, arg)
					}
				}
			}
		})
	}
	if got := mustProfileTools(ProfileVMRun); !slices.Equal(got, []string{"vm_run"}) {
		t.Errorf("vm-run serves %v", got)
	}
	full := listTools(t, connect(t))
	if diff := cmp.Diff(ToolNames, slices.Sorted(func(yield func(string) bool) {
		for n := range full {
			if !yield(n) {
				return
			}
		}
	})); diff != "" {
		t.Errorf("the bare server (-ToolNames +served):\n%s", diff)
	}
	if !slices.Contains(properties(t, full["workspace_create"]), "network") {
		t.Error("workspace-full's workspace_create lost network (a schema shared with workspace-core?)")
	}
}

// TestProfileRefusesOmitted: an argument a profile leaves out is refused,
// and a tool it leaves out does not exist.
func TestProfileRefusesOmitted(t *testing.T) {
	cs := connectWith(t, &Options{Profile: ProfileWorkspaceCore}, nil)
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "workspace_create",
		Arguments: map[string]any{"environment": "debian:12", "network": true}})
	if err == nil && !res.IsError {
		t.Fatalf("network accepted by workspace-core: %s", textOf(res))
	}
	res, err = cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "vm_run",
		Arguments: map[string]any{"environment": "debian:12", "command": "true"}})
	if err == nil && !res.IsError {
		t.Fatalf("vm_run served by workspace-core: %s", textOf(res))
	}
}

func TestUnknownProfile(t *testing.T) {
	if _, err := New(nil, &Options{Profile: "everything"}); err == nil || !strings.Contains(err.Error(), `unknown MCP profile "everything"`) {
		t.Errorf("err = %v", err)
	}
}

func TestToolWithoutRow(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "no row in toolProfiles") {
			t.Errorf("recover() = %v", r)
		}
	}()
	s := &Server{profile: ProfileWorkspaceFull}
	s.serves("workspace_teleport")
}

func TestInstructions(t *testing.T) {
	for _, tc := range []struct {
		profile    string
		want, lack []string
	}{
		{ProfileWorkspaceFull, []string{"vm_run", "workspace_create → workspace_exec", "workspace_delete", "unless network is true", "pyro://workspace/"}, nil},
		{ProfileWorkspaceCore, []string{"workspace_create → workspace_exec", "workspace_list", "Guests have no network.", "3600", "86400"}, []string{"vm_run", "vm_create", "network is true"}},
		{ProfileVMRun, []string{"vm_run", "timeout_seconds"}, []string{"workspace", "vm_create"}},
	} {
		cs := connectWith(t, &Options{Profile: tc.profile}, nil)
		got := cs.InitializeResult().Instructions
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: instructions lack %q:\n%s", tc.profile, w, got)
			}
		}
		for _, l := range tc.lack {
			if strings.Contains(got, l) {
				t.Errorf("%s: instructions mention %q:\n%s", tc.profile, l, got)
			}
		}
	}
}
