package pyro_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro"
)

// A one-shot run: boot, run, clean up.
func Example() {
	ctx := context.Background()
	c, err := pyro.New(nil)
	if err != nil {
		log.Fatal(err)
	}
	res, err := c.RunInVM(ctx, pyro.RunOptions{Environment: "debian:12", Command: "git --version"})
	if err != nil {
		log.Fatalf("%v (hint: %s)", err, pyro.ErrorHint(err))
	}
	fmt.Printf("exit %d in %s (%s): %s", res.ExitCode, res.Environment, res.ExecutionMode, res.Stdout)
}

// A workspace keeps /workspace across commands until it is deleted. It is
// seeded from ./testdata/project; ./testdata/more is pushed in later.
func Example_workspace() {
	ctx := context.Background()
	c, err := pyro.New(nil)
	if err != nil {
		log.Fatal(err)
	}
	ws, err := c.CreateWorkspace(ctx, pyro.CreateWorkspaceOptions{Environment: "debian:12", SeedPath: "./testdata/project"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.DeleteWorkspace(context.WithoutCancel(ctx), ws.WorkspaceID)

	if _, err := c.ExecWorkspace(ctx, ws.WorkspaceID, pyro.ExecOptions{Command: "sh hello.sh > out.txt"}); err != nil {
		log.Fatal(err)
	}
	if _, err := c.PushWorkspaceSync(ctx, ws.WorkspaceID, "./testdata/more", &pyro.PushOptions{Dest: "/workspace/more"}); err != nil {
		log.Fatal(err)
	}
	r, err := c.ExecWorkspace(ctx, ws.WorkspaceID, pyro.ExecOptions{Argv: []string{"cat", "out.txt", "more/notes.txt"}, Stdout: os.Stdout})
	if err != nil {
		log.Fatal(err)
	}
	logs, err := c.LogsWorkspace(ctx, ws.WorkspaceID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("exit", r.ExitCode, "after", logs.Count, "commands")
}

// Errors wrap a class callers can branch on, and carry a hint.
func ExampleErrorCode() {
	dir, _ := os.MkdirTemp("", "pyro-ex-")
	defer os.RemoveAll(dir)
	c, err := pyro.New(&pyro.Options{CacheDir: dir + "/c", StateDir: dir + "/s", RuntimeDir: dir + "/r"})
	if err != nil {
		log.Fatal(err)
	}
	_, err = c.RunInVM(context.Background(), pyro.RunOptions{Environment: "debian:11", Command: "true"})
	fmt.Println(errors.Is(err, pyro.ErrNotFound), pyro.ErrorCode(err))
	fmt.Println(err)
	fmt.Println(pyro.ErrorHint(err))
	// Output:
	// true not_found
	// unknown environment "debian:11"
	// valid environments: debian:12, debian:12-base, debian:12-build (see 'pyro env list')
}

// The MCP server runs on any go-sdk transport; here an in-process client
// lists its tools.
func ExampleClient_CreateServer() {
	dir, _ := os.MkdirTemp("", "pyro-ex-")
	defer os.RemoveAll(dir)
	c, err := pyro.New(&pyro.Options{CacheDir: dir + "/c", StateDir: dir + "/s", RuntimeDir: dir + "/r"})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	clientT, serverT := mcp.NewInMemoryTransports()
	if _, err := c.CreateServer().Connect(ctx, serverT, nil); err != nil {
		log.Fatal(err)
	}
	session, err := mcp.NewClient(&mcp.Implementation{Name: "example"}, nil).Connect(ctx, clientT, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer session.Close()
	tools, err := session.ListTools(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	have := map[string]bool{}
	for _, t := range tools.Tools {
		have[t.Name] = true
	}
	// The bare server (profile workspace-full) is a superset of the 2.x
	// tools.
	fmt.Println(have["vm_run"], have["workspace_create"], have["workspace_exec"])
	// Output:
	// true true true
}
