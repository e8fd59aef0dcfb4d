package mcpserver

import (
	"slices"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// Profiles: the tool sets a server can serve. A tool a profile leaves out
// is absent from tools/list, not merely refused.
const (
	ProfileVMRun         = "vm-run"         // only vm_run
	ProfileWorkspaceCore = "workspace-core" // a coding agent's workspace loop, narrowed
	ProfileWorkspaceFull = "workspace-full" // every tool
)

// DefaultProfile is what a server serves when no profile is named: every
// tool, a superset of the 2.x contract, so existing configurations keep
// working. `pyro host connect` writes workspace-core.
const DefaultProfile = ProfileWorkspaceFull

// Profiles lists the profiles, smallest first.
var Profiles = []string{ProfileVMRun, ProfileWorkspaceCore, ProfileWorkspaceFull}

// profileSet is a set of profiles.
type profileSet uint8

const (
	vmRun profileSet = 1 << iota
	core
	full
)

func (p profileSet) has(profile string) bool {
	switch profile {
	case ProfileVMRun:
		return p&vmRun != 0
	case ProfileWorkspaceCore:
		return p&core != 0
	case ProfileWorkspaceFull:
		return p&full != 0
	}
	return false
}

// toolRow is one tool's place in the profiles.
type toolRow struct {
	in profileSet
	// coreOmits are arguments workspace-core leaves out of the tool's input
	// schema, which therefore refuses them.
	coreOmits []string
}

// toolProfiles is the one table of which profile serves which tool. Every
// tool the server registers has a row (New panics without one, so every
// test fails); every row names a registered tool, and workspace-full holds
// every tool (TestProfileTable); the tool table of docs/public-contract.md
// has a profiles column checked against this one (internal/docscheck).
//
// workspace-core is what a chat host's coding agent needs: create, list,
// status, exec, sync push, logs and delete, and, one row each as they land,
// workspace_file_list, workspace_file_read, workspace_file_write,
// workspace_patch_apply, workspace_diff, workspace_export,
// workspace_summary. It leaves out secrets, network
// policy, shells, services, snapshots and disk tools, and the arguments of
// its own tools that reach them (coreOmits).
var toolProfiles = map[string]toolRow{
	"vm_run":               {in: vmRun | full},
	"vm_list_environments": {in: full},
	"vm_create":            {in: full},
	"vm_start":             {in: full},
	"vm_exec":              {in: full},
	"vm_stop":              {in: full},
	"vm_delete":            {in: full},
	"vm_status":            {in: full},
	"vm_network_info":      {in: full},
	"vm_reap_expired":      {in: full},
	"workspace_create":     {in: core | full, coreOmits: []string{"network", "secrets"}},
	"workspace_list":       {in: core | full},
	"workspace_status":     {in: core | full},
	"workspace_exec":       {in: core | full, coreOmits: []string{"secret_env"}},
	"workspace_sync_push":  {in: core | full},
	"workspace_logs":       {in: core | full},
	"workspace_delete":     {in: core | full},
	// workspace-core resets to the baseline only: snapshots are not its.
	"workspace_reset":       {in: core | full, coreOmits: []string{"snapshot"}},
	"workspace_start":       {in: full},
	"workspace_stop":        {in: full},
	"workspace_fork":        {in: full},
	"snapshot_create":       {in: full},
	"snapshot_list":         {in: full},
	"snapshot_delete":       {in: full},
	"workspace_disk_list":   {in: full},
	"workspace_disk_read":   {in: full},
	"workspace_disk_export": {in: full},
	"workspace_update":      {in: full},
	"shell_open":            {in: full},
	"shell_write":           {in: full},
	"shell_read":            {in: full},
	"shell_signal":          {in: full},
	"shell_close":           {in: full},
	"shell_list":            {in: full},
	"service_start":         {in: full},
	"service_list":          {in: full},
	"service_status":        {in: full},
	"service_logs":          {in: full},
	"service_stop":          {in: full},
}

// ToolNames lists every tool (workspace-full's), sorted by name as
// tools/list reports them.
var ToolNames = mustProfileTools(ProfileWorkspaceFull)

// ProfileTools lists the tools a profile serves, sorted by name.
func ProfileTools(profile string) ([]string, error) {
	if err := CheckProfile(profile); err != nil {
		return nil, err
	}
	var names []string
	for name, row := range toolProfiles {
		if row.in.has(profile) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names, nil
}

func mustProfileTools(profile string) []string {
	names, err := ProfileTools(profile)
	if err != nil {
		panic(err)
	}
	return names
}

// ProfileOmits lists the arguments a profile leaves out of a tool's input
// schema.
func ProfileOmits(profile, tool string) []string {
	if profile != ProfileWorkspaceCore {
		return nil
	}
	return toolProfiles[tool].coreOmits
}

// CheckProfile says whether profile names a profile.
func CheckProfile(profile string) error {
	if slices.Contains(Profiles, profile) {
		return nil
	}
	return errdefs.New(errdefs.ErrInvalidArgument, "use vm-run, workspace-core or workspace-full",
		"unknown MCP profile %q", profile)
}

// serves says whether this server's profile has the tool; it panics for a
// tool without a row in the table.
func (s *Server) serves(tool string) bool {
	row, ok := toolProfiles[tool]
	if !ok {
		panic("mcpserver: tool " + tool + " has no row in toolProfiles (profiles.go): add one")
	}
	return row.in.has(s.profile)
}

// narrow removes the arguments the server's profile leaves out of a tool.
func (s *Server) narrow(tool string, sch *jsonschema.Schema) {
	for _, arg := range ProfileOmits(s.profile, tool) {
		if _, ok := sch.Properties[arg]; !ok {
			panic("mcpserver: profile table omits unknown argument " + arg + " of " + tool)
		}
		delete(sch.Properties, arg)
		sch.Required = slices.DeleteFunc(sch.Required, func(r string) bool { return r == arg })
	}
}

// hasArg says whether the server's tool takes the argument.
func (s *Server) hasArg(tool, arg string) bool {
	return s.serves(tool) && !slices.Contains(ProfileOmits(s.profile, tool), arg)
}
