package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/internal/engine"
)

// errDecoded stops a fuzzed call once its arguments are decoded: the tools
// themselves (which boot guests) never run.
var errDecoded = errors.New("decoded; the fuzz test stops the call here")

// FuzzToolArguments sends arbitrary JSON as the arguments of every tool
// through the real go-sdk client and server (schema validation, defaults,
// decoding into the tool's argument struct). The server never panics and
// keeps answering; a call is either refused with an error result or
// decoded, and a decoded call had every required argument and decodes to
// a value whose JSON names only arguments of the schema. Its seed corpus
// (testdata/fuzz/FuzzToolArguments) runs with the normal tests; fuzz with
//
//	go test -run '^$' -fuzz FuzzToolArguments ./internal/mcpserver
func FuzzToolArguments(f *testing.F) {
	run, err := os.MkdirTemp("", "pyro-fuzz-")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { os.RemoveAll(run) })
	e, err := engine.New(engine.Options{CacheDir: f.TempDir(), StateDir: f.TempDir(), RuntimeDir: run, Backend: engine.BackendHostCompat})
	if err != nil {
		f.Fatal(err)
	}
	s, err := New(e, nil)
	if err != nil {
		f.Fatal(err)
	}
	var mu sync.Mutex
	var got any
	s.decoded = func(tool string, in any) error {
		mu.Lock()
		got = in
		mu.Unlock()
		return errDecoded
	}
	ctx := f.Context()
	ct, st := mcp.NewInMemoryTransports()
	ss, err := s.MCP().Connect(ctx, st, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { ss.Close() })
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "fuzz", Version: "0"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { cs.Close() })
	list, err := cs.ListTools(ctx, nil)
	if err != nil {
		f.Fatal(err)
	}
	schemas := map[string]map[string]any{}
	for _, tool := range list.Tools {
		b, _ := json.Marshal(tool.InputSchema)
		var m map[string]any
		json.Unmarshal(b, &m)
		schemas[tool.Name] = m
		f.Add(tool.Name, []byte(`{}`))
	}

	f.Fuzz(func(t *testing.T, tool string, args []byte) {
		if !json.Valid(args) {
			return // a client cannot send it: the JSON-RPC layer is not under test
		}
		mu.Lock()
		got = nil
		mu.Unlock()
		cctx, cancel := contextWithTimeout(t, 30*time.Second)
		defer cancel()
		res, err := cs.CallTool(cctx, &mcp.CallToolParams{Name: tool, Arguments: json.RawMessage(args)})
		if cctx.Err() != nil {
			t.Fatalf("%s %s: no answer in 30 s", tool, args)
		}
		if err := cs.Ping(cctx, nil); err != nil {
			t.Fatalf("the server stopped answering after %s %s: %v", tool, args, err)
		}
		schema, known := schemas[tool]
		if err != nil {
			if known && !strings.Contains(err.Error(), "arguments") && !strings.Contains(err.Error(), "unmarshal") && !strings.Contains(err.Error(), "invalid") {
				t.Logf("%s %s: protocol error %v", tool, args, err)
			}
			return
		}
		if !known {
			t.Fatalf("unknown tool %q answered: %+v", tool, res)
		}
		if !res.IsError {
			t.Fatalf("%s %s ran: the fuzz server never runs a tool", tool, args)
		}
		mu.Lock()
		in := got
		mu.Unlock()
		if in == nil {
			return // refused before decoding: validation did its job
		}
		// Decoded: every required argument was given...
		var obj map[string]any
		if json.Unmarshal(args, &obj) != nil {
			t.Fatalf("%s: decoded non-object arguments %s", tool, args)
		}
		req, _ := schema["required"].([]any)
		for _, r := range req {
			if _, ok := obj[r.(string)]; !ok {
				t.Errorf("%s %s: decoded without the required %q", tool, args, r)
			}
		}
		// ...and the decoded value names only the schema's arguments.
		props, _ := schema["properties"].(map[string]any)
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatalf("%s: decoded value does not encode: %v", tool, err)
		}
		var back map[string]any
		json.Unmarshal(b, &back)
		for k := range back {
			if _, ok := props[k]; !ok {
				t.Errorf("%s: decoded value has %q, not in the schema", tool, k)
			}
		}
	})
}

func contextWithTimeout(t *testing.T, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), d)
}
