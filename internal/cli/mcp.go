package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"

	"github.com/pyro-mcp/pyro"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/project"
)

// newMCPCmd wires `pyro mcp serve`: the SDK's MCP server over stdio (or
// HTTP on the loopback), calling the engine in-process.
func (a *App) newMCPCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "mcp",
		Short: "Serve pyro's tools to AI agents over the Model Context Protocol",
	}
	var httpAddr string
	var hf httpFlags
	var so serveFlags
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Run the MCP server on stdio (or streamable HTTP with --http)",
		Long: `Run pyro's MCP server. By default it speaks MCP over stdin/stdout, as MCP clients
expect when they launch a server; stdout carries only the protocol and logs go to stderr.

--profile picks the tool set: workspace-full (the default: every tool), workspace-core
(the workspace loop for chat hosts: create, list, status, exec, sync push, logs, delete,
without network or lower-level VM tools) or vm-run (only vm_run).

Started inside a git checkout, the server seeds workspace_create calls that name no
seed_path from that checkout: the files git tracks plus the untracked ones .gitignore does
not exclude, never .git. --project-path DIR serves another directory, --repo-url URL
[--repo-ref REF] a clean clone of a repository, --no-project none.

Host paths a client names (seed_path, source_path) must lie under the client's roots
(roots/list) when it lists any, else under the server's working directory (its git
checkout), or under --project-path or an --allow-path DIR; others are refused. The CLI
and the Go SDK's own methods accept any path.

With --http ADDR it serves streamable HTTP at http://ADDR/mcp instead, on a loopback
address only, rejecting requests from browser pages of other origins. Every request
must carry "Authorization: Bearer TOKEN": the token is generated at start and written
(mode 0600) to the runtime directory, whose path is printed on stderr, or read from
--token-file FILE.`,
		Example: `  pyro mcp serve
  pyro mcp serve --profile workspace-core
  pyro mcp serve --repo-url file:///srv/git/app.git --repo-ref main
  pyro mcp serve --allow-path ~/datasets
  pyro host connect claude-code
  pyro mcp serve --http 127.0.0.1:8765
  pyro mcp serve --http 127.0.0.1:8765 --token-file ~/.config/pyro/mcp.token`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if httpAddr == "" && (hf.tokenFile != "" || hf.noToken) {
				return errdefs.New(errdefs.ErrInvalidArgument, "add --http ADDR, or drop the token flag", "bad command line: --token-file and --insecure-no-token are for --http")
			}
			sopts, err := so.options(ctx)
			if err != nil {
				return err
			}
			// Progress goes to each tool call's client as notifications,
			// not to this process's stderr.
			c, err := pyro.New(&pyro.Options{Logger: a.logger()})
			if err != nil {
				return err
			}
			s, err := c.CreateServerWith(ctx, sopts)
			if err != nil {
				return err
			}
			a.logger().Info("serving MCP", "profile", sopts.Profile, "project", sopts.ProjectPath, "repo", sopts.RepoURL)
			if httpAddr != "" {
				err = a.serveHTTP(ctx, s, httpAddr, hf)
			} else {
				err = s.Run(ctx, &mcp.IOTransport{Reader: io.NopCloser(a.Stdin), Writer: nopWriteCloser{a.Stdout}})
			}
			// A client that went away cancels its calls; let them delete
			// their VMs before the process exits.
			wctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if werr := c.Close(wctx); werr != nil {
				a.logger().Warn("tool calls still running at exit", "err", werr)
			}
			if err != nil && (errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) || errors.Is(err, mcp.ErrConnectionClosed)) {
				return nil
			}
			return err
		},
	}
	serve.Flags().StringVar(&httpAddr, "http", "", "serve streamable HTTP on this loopback address (e.g. 127.0.0.1:8765) instead of stdio")
	serve.Flags().StringVar(&hf.tokenFile, "token-file", "", "with --http: require the token in this file (yours, mode 0600) instead of a generated one")
	serve.Flags().BoolVar(&hf.noToken, "insecure-no-token", false, "with --http: require no token, as 2.4 did (deprecated; any local user can then run commands as you)")
	serve.Flags().StringVar(&so.profile, "profile", pyro.ProfileWorkspaceFull, "tool set: workspace-full, workspace-core or vm-run")
	serve.Flags().StringVar(&so.projectPath, "project-path", "", "seed workspace_create calls without seed_path from this directory (default: the git checkout pyro runs in)")
	serve.Flags().StringVar(&so.repoURL, "repo-url", "", "seed them from a clean clone of this repository instead")
	serve.Flags().StringVar(&so.repoRef, "repo-ref", "", "branch, tag or commit of --repo-url (default: its default branch)")
	serve.Flags().BoolVar(&so.noProject, "no-project", false, "no default seed: workspace_create without seed_path starts empty")
	serve.Flags().StringArrayVar(&so.allowPaths, "allow-path", nil, "let clients name host paths (seed_path, source_path) under DIR too, besides their roots or the working directory (repeatable)")
	root.AddCommand(serve)
	return root
}

// serveFlags are `pyro mcp serve`'s choice of tools and default seed.
type serveFlags struct {
	profile, projectPath, repoURL, repoRef string
	noProject                              bool
	allowPaths                             []string
}

// options turns the flags into server options; without any, the git
// checkout pyro runs in (if any) is the project.
func (f *serveFlags) options(ctx context.Context) (*pyro.ServerOptions, error) {
	o := &pyro.ServerOptions{Profile: f.profile, ProjectPath: f.projectPath, RepoURL: f.repoURL, RepoRef: f.repoRef, AllowPaths: f.allowPaths}
	if f.noProject {
		if f.projectPath != "" || f.repoURL != "" {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "drop --no-project, or the project flags", "bad command line: --no-project with --project-path or --repo-url")
		}
		return o, nil
	}
	if o.ProjectPath == "" && o.RepoURL == "" {
		if wd, err := os.Getwd(); err == nil {
			o.ProjectPath = project.Detect(ctx, wd)
		}
	}
	return o, nil
}

// httpFlags are --http's authentication flags.
type httpFlags struct {
	tokenFile string
	noToken   bool
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// serveHTTP serves MCP at /mcp on a loopback address until ctx is done,
// to requests that carry the bearer token (mcp_token.go).
func (a *App) serveHTTP(ctx context.Context, s *mcp.Server, addr string, hf httpFlags) error {
	if hf.noToken && hf.tokenFile != "" {
		return errdefs.New(errdefs.ErrInvalidArgument, "drop --insecure-no-token", "bad command line: --token-file with --insecure-no-token")
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "use HOST:PORT, e.g. 127.0.0.1:8765", "bad --http address %q", addr)
	}
	if host == "" {
		host = "127.0.0.1"
		addr = "127.0.0.1" + addr
	}
	if !loopbackHost(host) {
		return errdefs.New(errdefs.ErrInvalidArgument, "use 127.0.0.1:PORT or [::1]:PORT; pyro runs arbitrary commands for whoever can reach it",
			"--http must bind a loopback address, not %q", host)
	}
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Logger: a.logger()})
	mux := http.NewServeMux()
	mux.Handle("/mcp", originCheck(h))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return errdefs.Wrap(errdefs.ErrUnavailable, err, "pick a free port", "listening on %s", addr)
	}
	var handler http.Handler = mux
	if hf.noToken {
		a.logger().Warn("serving MCP over HTTP WITHOUT a token (--insecure-no-token): any local user can run commands as you")
	} else {
		tok, err := newHTTPToken(hf.tokenFile, ln.Addr())
		if err != nil {
			ln.Close()
			return err
		}
		defer tok.remove()
		handler = tok.require(mux)
		fmt.Fprintf(a.Stderr, "pyro: bearer token in %s (send it as the header \"Authorization: Bearer TOKEN\")\n", tok.path)
	}
	fmt.Fprintf(a.Stderr, "pyro: MCP over streamable HTTP at http://%s/mcp\n", ln.Addr())
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// originCheck refuses requests a browser sends on behalf of a page that
// is not itself on the loopback (DNS rebinding, drive-by fetches).
func originCheck(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o := r.Header.Get("Origin"); o != "" {
			u, err := url.Parse(o)
			if err != nil || !loopbackHost(u.Hostname()) {
				http.Error(w, "forbidden origin", http.StatusForbidden)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func loopbackHost(h string) bool {
	ip := net.ParseIP(h)
	return h == "localhost" || (ip != nil && ip.IsLoopback())
}
