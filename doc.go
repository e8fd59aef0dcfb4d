// Package pyro is the Go SDK of pyro: it runs commands for coding agents
// inside real microVMs booted from curated Debian environments, one-shot or
// in persistent workspaces.
//
//	c, err := pyro.New(nil)
//	if err != nil {
//		log.Fatal(err)
//	}
//	res, err := c.RunInVM(ctx, pyro.RunOptions{Environment: "debian:12", Command: "git --version"})
//	if err != nil {
//		log.Fatal(err) // pyro itself failed: errors.Is(err, pyro.ErrNotFound), ...
//	}
//	fmt.Print(res.Stdout) // git version 2.39.5
//
// RunInVM boots a fresh VM, runs one command and deletes the VM. For work
// that spans several commands, a workspace keeps /workspace across them:
//
//	ws, _ := c.CreateWorkspace(ctx, pyro.CreateWorkspaceOptions{Environment: "debian:12", SeedPath: "./src"})
//	defer c.DeleteWorkspace(context.WithoutCancel(ctx), ws.WorkspaceID)
//	r, _ := c.ExecWorkspace(ctx, ws.WorkspaceID, pyro.ExecOptions{Command: "make test"})
//
// # Operations and options
//
// Every operation of the public contract is a method of [Client], with ctx
// first and an options struct whose zero values are the contract's
// defaults: 1 vCPU, 1024 MiB, a 30 s command timeout, a TTL of 600 s for
// VMs and 3600 s for workspaces, no network, and no fallback to running on
// the host. The size and reach of a VM is a [Shape], embedded in
// [CreateVMOptions], [RunOptions] and [CreateWorkspaceOptions]:
//
//	pyro.CreateWorkspaceOptions{Environment: "debian:12", Shape: pyro.Shape{MemMiB: 512, Network: true}}
//
// A command is a shell string (Command, run with /bin/sh -c as in the MCP
// tools and the Python SDK) or an argument vector (Argv), never both; its
// output can stream to io.Writers as it arrives.
//
// # Results and errors
//
// Results are plain structs, defined once with their fields in package
// [github.com/pyro-mcp/pyro/api] (the names here are the same types), whose
// JSON encoding is exactly what `pyro ... --json` prints and what the MCP
// tools return. A command that ran is a result whatever its exit status;
// errors are pyro's own failures and wrap one of the error classes
// ([ErrNotFound], [ErrInvalidArgument], [ErrUnavailable], ...), with
// [ErrorHint] saying what to do next.
//
// # Progress
//
// Pulls, builds, boots, seeds and pushes take seconds to minutes and report
// [Progress] as they go: to Options.Progress for every call, and to the
// function of [WithProgress] for one call.
//
// # The MCP server and the pyro binary
//
// [Client.CreateServer] returns the same tools as `pyro mcp serve` as an
// *mcp.Server (github.com/modelcontextprotocol/go-sdk) for any transport;
// [Client.Close] waits for the calls in flight before a program exits.
// Each VM is watched by a supervisor process and served, inside the guest,
// by an agent: both are a static pyro binary, found as Options.Binary
// says. New changes nothing in the calling process.
package pyro
