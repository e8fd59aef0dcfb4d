package mcpserver

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/catalog"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// Arguments. Field names are the public contract; omitempty marks an
// argument optional, and the defaults are written into the input schema.
// The VM shape arguments are api.Shape, whose tags describe them.

// EnvArgs name the environment to boot.
type EnvArgs struct {
	Environment string `json:"environment" jsonschema:"environment to boot: debian:12 (Debian 12 with git and curl — the usual choice; no python3), debian:12-base (minimal) or debian:12-build (compilers and build tools)"`
}

// CommandArgs are a command and its timeout.
type CommandArgs struct {
	Command        string `json:"command" jsonschema:"shell command to run, as with /bin/sh -c, e.g. 'git --version' or 'cd src && make' (in /workspace for a workspace)"`
	TimeoutSeconds int    `json:"timeout_seconds,omitempty" jsonschema:"kill the command after this many seconds (default 30); the result then has timed_out true"`
}

// RunArgs are vm_run's arguments.
type RunArgs struct {
	EnvArgs
	CommandArgs
	api.Shape
}

// CreateArgs are vm_create's arguments.
type CreateArgs struct {
	EnvArgs
	api.Shape
}

// VMArgs name one VM.
type VMArgs struct {
	VMID string `json:"vm_id" jsonschema:"the VM's id as returned by vm_create (an unambiguous prefix works)"`
}

// VMExecArgs are vm_exec's arguments.
type VMExecArgs struct {
	VMArgs
	CommandArgs
}

// WorkspaceCreateArgs are workspace_create's arguments.
type WorkspaceCreateArgs struct {
	EnvArgs
	SeedPath string `json:"seed_path,omitempty" jsonschema:"optional host directory or local .tar/.tar.gz/.tgz archive copied into /workspace before the workspace is returned"`
	DiskGiB  int    `json:"disk_gib,omitempty" jsonschema:"size of /workspace's own disk in GiB (sparse: it costs only what is written)"`
	api.Shape
	Name    string            `json:"name,omitempty" jsonschema:"optional unique name, which then works wherever the workspace_id does"`
	Labels  map[string]string `json:"labels,omitempty" jsonschema:"optional labels to find it by with workspace_list: {key: value}"`
	Secrets []api.Secret      `json:"secrets,omitempty" jsonschema:"secrets for the guest: [{name, value} or {name, file_path}]; files under /run/pyro-secrets, exposed with secret_env, and shown as [REDACTED] in every output"`
}

// WorkspaceListArgs are workspace_list's arguments.
type WorkspaceListArgs struct {
	Labels map[string]string `json:"labels,omitempty" jsonschema:"only the workspaces with all of these labels: {key: value}"`
}

func (a WorkspaceCreateArgs) hostPathArgs() []string {
	paths := []string{a.SeedPath}
	for _, sec := range a.Secrets {
		paths = append(paths, sec.FilePath)
	}
	return paths
}

// WorkspaceArgs name one workspace.
type WorkspaceArgs struct {
	WorkspaceID string `json:"workspace_id" jsonschema:"the workspace's id as returned by workspace_create (an unambiguous prefix works)"`
}

// WorkspaceExecArgs are workspace_exec's arguments.
type WorkspaceExecArgs struct {
	WorkspaceArgs
	CommandArgs
	SecretEnvArg
}

// SyncPushArgs are workspace_sync_push's arguments.
type SyncPushArgs struct {
	WorkspaceArgs
	SourcePath string `json:"source_path" jsonschema:"host directory or local .tar/.tar.gz/.tgz archive to copy into the workspace"`
	Dest       string `json:"dest,omitempty" jsonschema:"where to put it, /workspace or a directory under it (default /workspace)"`
}

func (a SyncPushArgs) hostPathArgs() []string { return []string{a.SourcePath} }

// NoArgs is the input of tools without arguments.
type NoArgs struct{}

// EnvironmentList is vm_list_environments' result: the JSON of
// `pyro env list --json`.
type EnvironmentList = api.EnvironmentList

var (
	shapeDefaults = map[string]any{"vcpu_count": api.DefaultVCPUCount, "mem_mib": api.DefaultMemMiB,
		"network": false, "allow_host_compat": false}
	vmTTL  = map[string]any{"ttl_seconds": api.DefaultVMTTLSeconds}
	wsTTL  = map[string]any{"ttl_seconds": api.DefaultWorkspaceTTLSeconds}
	wsDisk = map[string]any{"disk_gib": api.DefaultDiskGiB}
	execT  = map[string]any{"timeout_seconds": api.DefaultTimeoutSeconds}
	dest   = map[string]any{"dest": api.WorkspaceRoot}
)

func merge(ms ...map[string]any) map[string]any {
	out := map[string]any{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func (s *Server) register() {
	e := s.eng
	addTool(s, toolDef{
		name: "vm_run", title: "Run a command in a fresh microVM", hints: runsCommand, defaults: merge(shapeDefaults, vmTTL, execT), progress: "vm_run: booting and running the command",
		desc: `Run one shell command in a fresh, isolated microVM and return its exit code, stdout and stderr. ` +
			`Use this first for any one-shot task (checking a tool version, running a script, trying a command safely): ` +
			`it boots the environment, runs the command, and deletes the VM afterwards, whatever happens. ` +
			`Nothing persists between calls; for multi-step work on files use workspace_create instead. ` +
			`Boot takes a few seconds; long calls send progress notifications.`,
	}, func(ctx context.Context, in RunArgs) (*api.RunResult, error) {
		if err := needCommand(in.Command); err != nil {
			return nil, err
		}
		return e.Run(ctx, api.RunOptions{Environment: in.Environment, Shape: in.Shape, Command: in.Command, TimeoutSeconds: in.TimeoutSeconds})
	}, execText)

	addTool(s, toolDef{
		name: "vm_list_environments", title: "List environments", hints: readOnly,
		desc: `List the environments VMs and workspaces can boot (debian:12, debian:12-base, debian:12-build), which are installed locally, and which is the default. A missing one is pulled automatically on first use.`,
	}, func(ctx context.Context, _ NoArgs) (*api.EnvironmentList, error) {
		envs, err := e.Catalog().List(ctx)
		if err != nil {
			return nil, err
		}
		return &api.EnvironmentList{CatalogVersion: catalog.CatalogVersion, Environments: envs}, nil
	}, envListText)

	addTool(s, toolDef{
		name: "vm_create", title: "Create a microVM", hints: additive, defaults: merge(shapeDefaults, vmTTL), progress: "vm_create: preparing the VM",
		desc: `Create a microVM without booting it (advanced; prefer vm_run for one command, workspaces for several). ` +
			`Returns its vm_id; then vm_start and vm_exec. The VM is reaped after ttl_seconds.`,
	}, func(ctx context.Context, in CreateArgs) (*api.VM, error) {
		return e.CreateVM(ctx, api.CreateVMOptions{Environment: in.Environment, Shape: in.Shape})
	}, vmText("created"))

	addTool(s, toolDef{
		name: "vm_start", title: "Start a microVM", hints: idempotent, progress: "vm_start: booting",
		desc: `Boot a VM made by vm_create (advanced). Starting a running VM does nothing.`,
	}, onVM(e.StartVM), vmText("started"))

	addTool(s, toolDef{
		name: "vm_exec", title: "Run a command in a VM, then delete it", hints: runsAnything, defaults: execT, progress: "vm_exec: running the command",
		desc: `Run one shell command in a VM made by vm_create (booting it if needed), then DELETE that VM: ` +
			`vm_exec auto-cleans, so a VM serves exactly one vm_exec. For several commands in the same machine use a workspace.`,
	}, func(ctx context.Context, in VMExecArgs) (*api.VMExecResult, error) {
		if err := needCommand(in.Command); err != nil {
			return nil, err
		}
		return e.ExecVM(ctx, in.VMID, api.ExecOptions{Command: in.Command, TimeoutSeconds: in.TimeoutSeconds})
	}, execText)

	addTool(s, toolDef{
		name: "vm_stop", title: "Stop a microVM", hints: removes, progress: "vm_stop: stopping",
		desc: `Power a VM off; its disk stays until vm_delete or its TTL (advanced).`,
	}, onVM(e.StopVM), vmText("stopped"))

	addTool(s, toolDef{
		name: "vm_delete", title: "Delete a microVM", hints: removes,
		desc: `Stop a VM and delete its disk and state.`,
	}, onVM(e.DeleteVM), func(r *api.DeleteResult) string { return "deleted vm " + r.VMID })

	addTool(s, toolDef{
		name: "vm_status", title: "Show a microVM", hints: readOnly,
		desc: `Report a VM's state, shape, backend and expiry.`,
	}, onVM(e.StatusVM), vmText(""))

	addTool(s, toolDef{
		name: "vm_network_info", title: "Show a microVM's network", hints: readOnly,
		desc: `Describe a VM's network: whether it has one, its mode, guest IP, gateway and DNS.`,
	}, onVM(e.NetworkInfo), func(r *api.NetworkInfo) string {
		return fmt.Sprintf("vm %s network=%v mode=%s\n%s", r.VMID, r.Network, r.Mode, jsonText(r))
	})

	addTool(s, toolDef{
		name: "vm_reap_expired", title: "Reap expired VMs and workspaces", hints: removes, progress: "vm_reap_expired: reaping",
		desc: `Stop and delete every VM and workspace past its ttl_seconds.`,
	}, noArgs(e.ReapExpired), func(r *api.ReapResult) string {
		return fmt.Sprintf("reaped %d: %s", r.Count, strings.Join(r.Reaped, " "))
	})

	addTool(s, toolDef{
		name: "workspace_create", title: "Create a workspace", hints: additive, defaults: merge(shapeDefaults, wsTTL, wsDisk), progress: "workspace_create: booting the workspace",
		desc: `Create and boot a persistent workspace: a microVM whose /workspace directory keeps its files across many workspace_exec calls. ` +
			`Use it for multi-step work (clone, edit, build, test). seed_path copies a host directory or .tar/.tar.gz/.tgz into /workspace first` +
			s.projectNote() + `. Returns workspace_id. Call workspace_delete when done.`,
	}, func(ctx context.Context, in WorkspaceCreateArgs) (*api.Workspace, error) {
		seed, err := s.hostPath(ctx, "seed_path", in.SeedPath)
		if err != nil {
			return nil, err
		}
		// A secret's file follows the same host-path rules as seed_path.
		secrets := slices.Clone(in.Secrets)
		for i := range secrets {
			if secrets[i].FilePath, err = s.hostPath(ctx, "file_path", secrets[i].FilePath); err != nil {
				return nil, err
			}
		}
		return s.createWorkspace(ctx, api.CreateWorkspaceOptions{Environment: in.Environment, Shape: in.Shape, SeedPath: seed, DiskGiB: in.DiskGiB,
			Name: in.Name, Labels: in.Labels, Secrets: secrets})
	}, wsText("created"))

	addTool(s, toolDef{
		name: "workspace_list", title: "List workspaces", hints: readOnly,
		desc: `List every workspace that exists (also those made by earlier sessions or the pyro CLI), the most recently active first, with its name, labels, state, environment, seed, command, shell and service counts and expiry, so that one can be reused instead of creating another. labels keeps those with all of the given labels.`,
	}, func(ctx context.Context, in WorkspaceListArgs) (*api.WorkspaceList, error) {
		wss, err := e.ListWorkspacesWith(ctx, &api.WorkspaceListOptions{Labels: in.Labels})
		if err != nil {
			return nil, err
		}
		return &api.WorkspaceList{Count: len(wss), Workspaces: wss}, nil
	}, wsListText)

	addTool(s, toolDef{
		name: "workspace_sync_push", title: "Push files into a workspace", hints: overwrites, defaults: dest, progress: "workspace_sync_push: copying",
		desc: `Copy a host directory or .tar/.tar.gz/.tgz archive into a started workspace, at /workspace or dest under it. ` +
			`Existing files with the same names are overwritten.`,
	}, func(ctx context.Context, in SyncPushArgs) (*api.SyncResult, error) {
		src, err := s.hostPath(ctx, "source_path", in.SourcePath)
		if err != nil {
			return nil, err
		}
		return e.PushWorkspaceSync(ctx, in.WorkspaceID, src, in.Dest)
	}, func(r *api.SyncResult) string {
		return fmt.Sprintf("pushed %s into workspace %s at %s: %d entries, %d bytes", r.SourcePath, r.WorkspaceID, r.Dest, r.Entries, r.Bytes)
	})

	addTool(s, toolDef{
		name: "workspace_exec", title: "Run a command in a workspace", hints: runsAnything, defaults: execT, progress: "workspace_exec: running the command",
		desc: `Run one shell command in a workspace's /workspace (the working directory) and leave the workspace alive: ` +
			`files, installed packages and build outputs persist for the next command. Every command is kept in workspace_logs.`,
	}, func(ctx context.Context, in WorkspaceExecArgs) (*api.WorkspaceExecResult, error) {
		if err := needCommand(in.Command); err != nil {
			return nil, err
		}
		return e.ExecWorkspace(ctx, in.WorkspaceID, api.ExecOptions{Command: in.Command, TimeoutSeconds: in.TimeoutSeconds, SecretEnv: in.SecretEnv})
	}, execText)

	addTool(s, toolDef{
		name: "workspace_status", title: "Show a workspace", hints: readOnly,
		desc: `Report a workspace's state, shape, seed (workspace_seed), command count and last command.`,
	}, onWorkspace(e.StatusWorkspace), wsText(""))

	addTool(s, toolDef{
		name: "workspace_logs", title: "Show a workspace's command history", hints: readOnly, output: logsOutputSchema(),
		desc: `Return a workspace's history, oldest first: every workspace_exec with its exit code, stdout and stderr, ` +
			`and its snapshot, reset, fork, file write, patch, sync, export, shell and service events (each entry's kind says which).`,
	}, onWorkspace(e.LogsWorkspace), logsText)

	addTool(s, toolDef{
		name: "workspace_delete", title: "Delete a workspace", hints: removes,
		desc: `Stop a workspace and delete its disk, files and logs for good.`,
	}, onWorkspace(e.DeleteWorkspace), func(r *api.WorkspaceDeleteResult) string { return "deleted workspace " + r.WorkspaceID })

	s.registerDiskTools()
	s.registerFileTools()
	s.registerLiving()
	s.registerNetwork()
}

// logsOutputSchema is workspace_logs' result schema: an entry's fields
// depend on its kind (api.LogEntry.MarshalJSON), so only kind and sequence
// are required of every entry.
func logsOutputSchema() *jsonschema.Schema {
	sch, err := jsonschema.For[api.WorkspaceLogs](nil)
	if err != nil {
		panic(fmt.Sprintf("mcpserver: schema of api.WorkspaceLogs: %v", err))
	}
	sch.Properties["entries"].Items.Required = []string{"kind", "sequence"}
	return sch
}

func needCommand(c string) error {
	if strings.TrimSpace(c) == "" {
		return errdefs.New(errdefs.ErrInvalidArgument, `pass the shell command to run in "command", e.g. "git --version"`, "empty command")
	}
	return nil
}
