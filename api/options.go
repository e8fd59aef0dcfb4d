package api

import "io"

// Shape is the size and reach of a VM or workspace. Zero values take the
// contract's defaults: 1 vCPU, 1024 MiB, a TTL of 600 s for VMs and 3600 s
// for workspaces, no network, and no host compatibility fallback.
//
// The jsonschema descriptions are what the MCP tools advertise.
type Shape struct {
	VCPUCount  int  `json:"vcpu_count,omitempty" jsonschema:"virtual CPUs for the guest (default 1)"`
	MemMiB     int  `json:"mem_mib,omitempty" jsonschema:"guest memory in MiB (default 1024)"`
	TTLSeconds int  `json:"ttl_seconds,omitempty" jsonschema:"seconds before the VM is stopped and reaped (default 600 for VMs, 3600 for workspaces)"`
	Network    bool `json:"network,omitempty" jsonschema:"give the guest outbound network access, e.g. for apt-get, pip or git clone (default false; the host's loopback is never reachable)"`
	// AllowHostCompat lets pyro run on the host, in a private directory
	// and WITHOUT isolation, when no guest can boot here.
	AllowHostCompat bool `json:"allow_host_compat,omitempty" jsonschema:"if no microVM can boot on this host, run on the host in a private directory WITHOUT isolation (default false; leave false unless the user asked for it)"`
}

// CreateVMOptions describe a VM to create. Environment is required.
type CreateVMOptions struct {
	Environment string `json:"environment"`
	Shape
}

// CreateWorkspaceOptions describe a workspace to create and start.
type CreateWorkspaceOptions struct {
	Environment string `json:"environment"`
	Shape
	// SeedPath is a host directory or a local .tar/.tar.gz/.tgz archive
	// copied into /workspace before the workspace is returned.
	SeedPath string `json:"seed_path,omitempty"`
	// SeedOrigin, when set, is recorded as workspace_seed's origin instead
	// of SeedPath itself: for a SeedPath that is a temporary export of a
	// project or a repository clone. Nil means SeedPath is the origin.
	SeedOrigin *SeedOrigin `json:"-"`
	// DiskGiB bounds /workspace's own disk; 0 means DefaultDiskGiB.
	DiskGiB int `json:"disk_gib,omitempty"`
	// Name, when set, is unique among workspaces and works wherever its
	// id does.
	Name string `json:"name,omitempty"`
	// Labels are free key=value tags to find workspaces by.
	Labels map[string]string `json:"labels,omitempty"`
	// Secrets are delivered into the guest under /run/pyro-secrets (a
	// tmpfs) and redacted from every output pyro returns.
	Secrets []Secret `json:"secrets,omitempty"`
}

// ExecOptions describe one command: Command is a shell string run with
// /bin/sh -c (as in the MCP tools and the Python SDK); Argv runs a program
// directly. Set exactly one.
type ExecOptions struct {
	Command        string
	Argv           []string
	Cwd            string            // default: the agent's for VMs, /workspace for workspaces
	Env            map[string]string // added to the guest's environment
	TimeoutSeconds int               // default 30; the result then has TimedOut set
	// Stdout and Stderr, when set, receive the output as it arrives; the
	// result holds it too (capped).
	Stdout, Stderr io.Writer
	// SecretEnv exposes a workspace's secrets as environment variables:
	// secret name to variable name ("" means the secret's own name).
	SecretEnv map[string]string
}

// RunOptions are a one-shot run: the VM's environment and shape, and the
// command (as in ExecOptions: exactly one of Command and Argv).
type RunOptions struct {
	Environment string
	Shape

	Command        string
	Argv           []string
	Cwd            string
	Env            map[string]string
	TimeoutSeconds int
	Stdout, Stderr io.Writer
}

// Exec returns the command part of a run.
func (o RunOptions) Exec() ExecOptions {
	return ExecOptions{Command: o.Command, Argv: o.Argv, Cwd: o.Cwd, Env: o.Env, TimeoutSeconds: o.TimeoutSeconds,
		Stdout: o.Stdout, Stderr: o.Stderr}
}

// VM returns the VM part of a run.
func (o RunOptions) VM() CreateVMOptions {
	return CreateVMOptions{Environment: o.Environment, Shape: o.Shape}
}

// PushOptions tune a sync push. A nil *PushOptions is valid.
type PushOptions struct {
	// Dest is /workspace (the default) or a directory under it.
	Dest string
}
