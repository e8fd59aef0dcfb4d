package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/engine"
)

// livingSuite (issue 16): a shell's write → read echo round trip against
// an exec of `true`, and a service's start-to-ready with an HTTP probe.
func (b *benchEnv) livingSuite(ctx context.Context) error {
	r := b.report
	r.line("\n## Shells and services (issue 16)\n\n")
	e, err := engine.New(engine.Options{})
	if err != nil {
		return err
	}
	ws, err := e.CreateWorkspace(ctx, api.CreateWorkspaceOptions{Environment: "debian:12-build"})
	if err != nil {
		return err
	}
	id := ws.WorkspaceID
	defer e.DeleteWorkspace(context.WithoutCancel(ctx), id)
	execs, err := timeIt(b.n, func() error {
		_, err := e.ExecWorkspace(ctx, id, api.ExecOptions{Argv: []string{"true"}})
		return err
	})
	if err != nil {
		return err
	}
	sh, err := e.OpenShell(ctx, id, api.ShellOpenOptions{})
	if err != nil {
		return err
	}
	// Let the prompt settle, then start reading after it.
	first, err := e.ReadShell(ctx, id, sh.ShellID, api.ShellReadOptions{WaitForIdleMs: 1000})
	if err != nil {
		return err
	}
	cursor := first.NextCursor
	i := 0
	echoes, err := timeIt(b.n, func() error {
		i++
		marker := fmt.Sprintf("pong%d", i)
		if _, err := e.WriteShell(ctx, id, sh.ShellID, api.ShellWriteOptions{Input: "echo " + marker}); err != nil {
			return err
		}
		// The marker comes twice: the terminal's echo of the input, then
		// echo's output on a line of its own (after the bracketed-paste
		// sequences bash prints around a command: plain drops them).
		var got strings.Builder
		for !strings.Contains(got.String(), "\n"+marker+"\n") {
			rd, err := e.ReadShell(ctx, id, sh.ShellID, api.ShellReadOptions{Cursor: cursor, Plain: true})
			if err != nil {
				return err
			}
			got.WriteString(rd.Output)
			cursor = rd.NextCursor
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.line("- exec `true` in a running workspace, in-process (%d calls): p50 %s\n", b.n, ms(pct(execs, .5)))
	r.line("- shell write `echo` → read until its output, in-process (%d round trips, reads polled without waiting): p50 %s, p95 %s; **%.2f× an exec of `true`**\n",
		b.n, ms(pct(echoes, .5)), ms(pct(echoes, .95)), float64(pct(echoes, .5))/float64(pct(execs, .5)))

	k := 0
	readies, err := timeIt(max(1, b.n/20), func() error {
		k++
		name := fmt.Sprintf("web%d", k)
		port := 8000 + k
		_, err := e.StartService(ctx, id, name, api.ServiceStartOptions{Argv: []string{"python3", "-m", "http.server", fmt.Sprint(port)},
			Readiness: &api.Readiness{Type: api.ReadyHTTP, URL: fmt.Sprintf("http://127.0.0.1:%d/", port)}, ReadyIntervalMs: 100})
		if err != nil {
			return err
		}
		_, err = e.StopService(ctx, id, name)
		return err
	})
	if err != nil {
		return err
	}
	r.line("- service start → ready for `python3 -m http.server` with an HTTP probe every 100 ms (%d starts; each stopped after): p50 %.2f s, max %.2f s\n",
		len(readies), pct(readies, .5).Seconds(), readies[len(readies)-1].Seconds())
	return nil
}
