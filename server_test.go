package pyro_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro"
)

// A server with a profile: only the tools of vm-run.
func ExampleClient_CreateServerWith() {
	dir, _ := os.MkdirTemp("", "pyro-ex-")
	defer os.RemoveAll(dir)
	c, err := pyro.New(&pyro.Options{CacheDir: dir + "/c", StateDir: dir + "/s", RuntimeDir: dir + "/r"})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	srv, err := c.CreateServerWith(ctx, &pyro.ServerOptions{Profile: pyro.ProfileVMRun})
	if err != nil {
		log.Fatal(err)
	}
	clientT, serverT := mcp.NewInMemoryTransports()
	if _, err := srv.Connect(ctx, serverT, nil); err != nil {
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
	for _, t := range tools.Tools {
		fmt.Println(t.Name)
	}
	// Output:
	// vm_run
}

func TestCreateServerWithErrors(t *testing.T) {
	c := newClient(t)
	for _, tc := range []struct {
		opts  pyro.ServerOptions
		class error
		hint  string
	}{
		{pyro.ServerOptions{Profile: "everything"}, pyro.ErrInvalidArgument, "workspace-core"},
		{pyro.ServerOptions{ProjectPath: "/nonexistent/project"}, pyro.ErrNotFound, "ServerOptions.ProjectPath"},
		{pyro.ServerOptions{ProjectPath: t.TempDir(), RepoURL: "file:///r.git"}, pyro.ErrInvalidArgument, "ServerOptions.ProjectPath or ServerOptions.RepoURL"},
		{pyro.ServerOptions{RepoRef: "main"}, pyro.ErrInvalidArgument, "ServerOptions.RepoURL"},
		{pyro.ServerOptions{RepoURL: "--upload-pack=x"}, pyro.ErrInvalidArgument, "ServerOptions.RepoURL"},
	} {
		_, err := c.CreateServerWith(t.Context(), &tc.opts)
		if !errors.Is(err, tc.class) || !strings.Contains(pyro.ErrorHint(err), tc.hint) {
			t.Errorf("%+v: %v (hint %q)", tc.opts, err, pyro.ErrorHint(err))
		}
	}
	if _, err := c.CreateServerWith(t.Context(), &pyro.ServerOptions{Profile: pyro.ProfileWorkspaceCore, ProjectPath: t.TempDir()}); err != nil {
		t.Error(err)
	}
}
