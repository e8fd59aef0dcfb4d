package docscheck

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/internal/mcpserver"
)

// TestContractProfiles checks the profiles column of the contract's MCP
// tool table against the one table in the code: every tool has a row, and
// its row names exactly the profiles that serve it, with the arguments
// workspace-core leaves out.
func TestContractProfiles(t *testing.T) {
	_, lines := readContractDoc(t)
	rowRE := regexp.MustCompile("^\\|\\s*`([a-z_]+)`\\s*\\|")
	nameRE := regexp.MustCompile("`([a-z-]+)`")
	rows := map[string]string{}
	for i, l := range lines {
		m := rowRE.FindStringSubmatch(l)
		if m == nil || !slices.Contains(mcpserver.ToolNames, m[1]) {
			continue
		}
		cells := strings.Split(l, "|")
		if len(cells) < 7 {
			t.Errorf("%s:%d: tool %s's row has no profiles column (| tool | arguments | defaults | profiles | does |)", contractDoc, i+1, m[1])
			continue
		}
		rows[m[1]] = cells[4]
	}
	for _, tool := range mcpserver.ToolNames {
		cell, ok := rows[tool]
		if !ok {
			t.Errorf("%s: tool %s has no row in the MCP tool table", contractDoc, tool)
			continue
		}
		var documented []string
		for _, m := range nameRE.FindAllStringSubmatch(cell, -1) {
			if slices.Contains(mcpserver.Profiles, m[1]) {
				documented = append(documented, m[1])
			}
		}
		for _, profile := range mcpserver.Profiles {
			tools, _ := mcpserver.ProfileTools(profile)
			serves, says := slices.Contains(tools, tool), slices.Contains(documented, profile)
			if serves != says {
				t.Errorf("%s: tool %s: profile %s serves it: %v, the profiles column says %v (%q)", contractDoc, tool, profile, serves, says, strings.TrimSpace(cell))
			}
			for _, arg := range mcpserver.ProfileOmits(profile, tool) {
				if serves && !strings.Contains(cell, "without `"+arg+"`") {
					t.Errorf("%s: tool %s: %s leaves out %s; its profiles cell must say \"without `%s`\"", contractDoc, tool, profile, arg, arg)
				}
			}
		}
	}
}
