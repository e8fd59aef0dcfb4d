package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// How a tool is registered: a toolDef (what tools/list shows of it), a
// handler taking the tool's argument type, and the readable text of its
// result. Every tool goes through addTool.

// toolDef is one tool as tools/list shows it, but for its input schema,
// which addTool infers from the handler's argument type.
type toolDef struct {
	name, title, desc string
	hints             *mcp.ToolAnnotations // one of the annotation sets below
	defaults          map[string]any       // written into the input schema
	progress          string               // a call's first progress message; "" for none
	output            *jsonschema.Schema   // when the one inferred from the result type will not do
}

func boolp(b bool) *bool { return &b }

// Annotation sets. The hints describe what a tool does to the world
// outside the guest it runs in.
var (
	readOnly = &mcp.ToolAnnotations{ReadOnlyHint: true, IdempotentHint: true, OpenWorldHint: boolp(false)}
	// additive creates something and destroys nothing that existed.
	additive = &mcp.ToolAnnotations{DestructiveHint: boolp(false), OpenWorldHint: boolp(false)}
	// idempotent starts or changes something; doing it twice changes
	// nothing more.
	idempotent = &mcp.ToolAnnotations{DestructiveHint: boolp(false), IdempotentHint: true, OpenWorldHint: boolp(false)}
	// runsCommand runs arbitrary code, which may reach the network.
	runsCommand = &mcp.ToolAnnotations{DestructiveHint: boolp(false), OpenWorldHint: boolp(true)}
	// runsAnything runs what a model types or asks: it may do anything in
	// the guest, and reach the network.
	runsAnything = &mcp.ToolAnnotations{DestructiveHint: boolp(true), OpenWorldHint: boolp(true)}
	// removes deletes or stops something; doing it twice changes nothing more.
	removes = &mcp.ToolAnnotations{DestructiveHint: boolp(true), IdempotentHint: true, OpenWorldHint: boolp(false)}
	// overwrites replaces what is there with what it is given; doing it
	// twice changes nothing more.
	overwrites = &mcp.ToolAnnotations{DestructiveHint: boolp(true), IdempotentHint: true, OpenWorldHint: boolp(false)}
	// rewrites changes what exists.
	rewrites = &mcp.ToolAnnotations{DestructiveHint: boolp(true), OpenWorldHint: boolp(false)}
)

func withTitle(a *mcp.ToolAnnotations, title string) *mcp.ToolAnnotations {
	c := *a
	c.Title = title
	return &c
}

// Handlers of the tools that only pass ids on to the engine.

func noArgs[Out any](f func(context.Context) (Out, error)) func(context.Context, NoArgs) (Out, error) {
	return func(ctx context.Context, _ NoArgs) (Out, error) { return f(ctx) }
}

func onVM[Out any](f func(context.Context, string) (Out, error)) func(context.Context, VMArgs) (Out, error) {
	return func(ctx context.Context, in VMArgs) (Out, error) { return f(ctx, in.VMID) }
}

func onWorkspace[Out any](f func(context.Context, string) (Out, error)) func(context.Context, WorkspaceArgs) (Out, error) {
	return func(ctx context.Context, in WorkspaceArgs) (Out, error) { return f(ctx, in.WorkspaceID) }
}

// namedArgs name one thing of a workspace: a snapshot, a shell, a service.
type namedArgs interface {
	ids() (workspace, name string)
}

func (a SnapshotArgs) ids() (string, string) { return a.WorkspaceID, a.Name }
func (a ShellArgs) ids() (string, string)    { return a.WorkspaceID, a.ShellID }
func (a ServiceArgs) ids() (string, string)  { return a.WorkspaceID, a.Name }

func onNamed[In namedArgs, Out any](f func(context.Context, string, string) (Out, error)) func(context.Context, In) (Out, error) {
	return func(ctx context.Context, in In) (Out, error) {
		ws, name := in.ids()
		return f(ctx, ws, name)
	}
}

// addTool registers one tool when the server's profile serves it (see
// profiles.go, where every tool needs a row): its input schema (with
// d.defaults) is inferred from In, its output schema from Out unless
// d.output; the handler's result becomes structuredContent and
// text(result) the readable content; an error becomes an isError result
// with the error's class, message and hint. A non-empty d.progress turns
// on progress notifications for the call, when its client asks for them.
func addTool[In any, Out any](s *Server, d toolDef, h func(context.Context, In) (Out, error), text func(Out) string) {
	if !s.serves(d.name) {
		return
	}
	sch := inputSchema[In](d.defaults)
	s.narrow(d.name, sch)
	t := &mcp.Tool{Name: d.name, Description: d.desc, Annotations: withTitle(d.hints, d.title), InputSchema: sch}
	if d.output != nil { // a nil *Schema in the field would not read as none
		t.OutputSchema = d.output
	}
	mcp.AddTool(s.mcp, t, func(ctx context.Context, req *mcp.CallToolRequest, in In) (*mcp.CallToolResult, Out, error) {
		var zero Out
		if s.decoded != nil {
			if err := s.decoded(t.Name, in); err != nil {
				return nil, zero, err
			}
		}
		ctx = withRequest(ctx, req)
		// Ask for the client's roots before anything else (progress
		// included): the call is made again with the answer.
		if s.mustAskRoots(ctx, in) {
			return needRoots(), zero, nil
		}
		if d.progress != "" {
			var stop func()
			ctx, stop = s.track(ctx, req, t.Name, d.progress)
			defer stop()
		}
		s.log.Debug("tool call", "tool", t.Name)
		out, err := h(ctx, in)
		if errors.Is(err, errNeedRoots) { // a tool whose arguments do not say they name host paths
			return needRoots(), zero, nil
		}
		if err != nil {
			return nil, zero, s.fail(ctx, t.Name, err)
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text(out)}}}, out, nil
	})
}

func inputSchema[In any](defaults map[string]any) *jsonschema.Schema {
	sch, err := jsonschema.For[In](nil)
	if err != nil {
		panic(fmt.Sprintf("mcpserver: schema of %T: %v", *new(In), err))
	}
	for k, v := range defaults {
		p, ok := sch.Properties[k]
		if !ok {
			panic("mcpserver: default for unknown argument " + k)
		}
		p.Default, _ = json.Marshal(v)
	}
	return sch
}
