package mcpserver

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/internal/engine"
)

// TestMain lets this test binary serve as the supervisor of the host-compat
// VMs the progress test creates, as pyro serves as its own.
func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == engine.SuperviseCommand {
		if err := engine.RunSupervisor(context.Background(), os.Args[2], slog.New(slog.NewTextHandler(os.Stderr, nil))); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A seeded workspace_create reports real progress: values that only
// increase up to the total, with messages a chat host can show.
func TestProgressNotifications(t *testing.T) {
	run, err := os.MkdirTemp("", "pyro-mcp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	exe, _ := os.Executable()
	e, err := engine.New(engine.Options{CacheDir: t.TempDir(), StateDir: t.TempDir(), RuntimeDir: run, Backend: engine.BackendHostCompat, Binary: exe})
	if err != nil {
		t.Fatal(err)
	}
	seed := t.TempDir()
	for i := range 3000 {
		os.WriteFile(filepath.Join(seed, fmt.Sprintf("f%04d", i)), []byte("x"), 0o644)
	}
	var mu sync.Mutex
	var got []*mcp.ProgressNotificationParams
	ct, st := mcp.NewInMemoryTransports()
	ctx := t.Context()
	srv, err := New(e, nil)
	if err != nil {
		t.Fatal(err)
	}
	ss, err := srv.MCP().Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "0"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			mu.Lock()
			got = append(got, req.Params)
			mu.Unlock()
		},
	}).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "workspace_create", Meta: mcp.Meta{"progressToken": "ws-1"},
		Arguments: map[string]any{"environment": "debian:12", "seed_path": seed, "allow_host_compat": true}})
	if err != nil || res.IsError {
		t.Fatalf("%v %s", err, textOf(res))
	}
	t.Cleanup(func() {
		e.DeleteWorkspace(context.Background(), res.StructuredContent.(map[string]any)["workspace_id"].(string))
	})

	mu.Lock()
	defer mu.Unlock()
	if len(got) < 3 {
		t.Fatalf("only %d notifications", len(got))
	}
	seeding := false
	for i, p := range got {
		t.Logf("%.3f/%.0f %s", p.Progress, p.Total, p.Message)
		if p.ProgressToken != "ws-1" || !strings.HasPrefix(p.Message, "workspace_create") {
			t.Errorf("notification %+v", p)
		}
		if i > 0 && p.Progress <= got[i-1].Progress {
			t.Errorf("progress went from %v to %v", got[i-1].Progress, p.Progress)
		}
		if p.Total > 0 && p.Progress > p.Total {
			t.Errorf("progress %v beyond its total %v", p.Progress, p.Total)
		}
		if strings.Contains(p.Message, "seeding") && strings.Contains(p.Message, " of 3,000 files") {
			seeding = true
		}
	}
	if !seeding {
		t.Error(`no "seeding N of 3,000 files" message`)
	}
	if last := got[len(got)-1]; last.Progress != last.Total || last.Total != 4 {
		t.Errorf("last notification %.3f of %.0f, want 4 of 4", last.Progress, last.Total)
	}
}
