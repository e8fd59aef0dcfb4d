package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"

	"github.com/pyro-mcp/pyro"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// newMCPCmd wires `pyro mcp serve`: the SDK's MCP server over stdio (or
// HTTP on the loopback), calling the engine in-process.
func (a *App) newMCPCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "mcp",
		Short: "Serve pyro's tools to AI agents over the Model Context Protocol",
	}
	var httpAddr string
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Run the MCP server on stdio (or streamable HTTP with --http)",
		Long: `Run pyro's MCP server. By default it speaks MCP over stdin/stdout, as MCP clients
expect when they launch a server; stdout carries only the protocol and logs go to stderr.
Tools: vm_run (primary), vm_list_environments, vm_create, vm_start, vm_exec, vm_stop,
vm_delete, vm_status, vm_network_info, vm_reap_expired, workspace_create,
workspace_sync_push, workspace_exec, workspace_status, workspace_logs, workspace_delete.

With --http ADDR it serves streamable HTTP at http://ADDR/mcp instead, on a loopback
address only, rejecting requests from browser pages of other origins.`,
		Example: `  pyro mcp serve
  claude mcp add pyro -- pyro mcp serve
  pyro mcp serve --http 127.0.0.1:8765`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Progress goes to each tool call's client as notifications,
			// not to this process's stderr.
			c, err := pyro.New(&pyro.Options{Logger: a.logger()})
			if err != nil {
				return err
			}
			s := c.CreateServer()
			ctx := cmd.Context()
			if httpAddr != "" {
				err = a.serveHTTP(ctx, s, httpAddr)
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
	root.AddCommand(serve)
	return root
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// serveHTTP serves MCP at /mcp on a loopback address until ctx is done.
func (a *App) serveHTTP(ctx context.Context, s *mcp.Server, addr string) error {
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
	fmt.Fprintf(a.Stderr, "pyro: MCP over streamable HTTP at http://%s/mcp\n", ln.Addr())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
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
