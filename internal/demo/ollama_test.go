package demo

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// fakeTools stands in for pyro's MCP server: vm_run answers with the
// structured result of a guest command that exits `exit`.
type fakeTools struct {
	exit  int
	calls []string
}

func (f *fakeTools) ListTools(context.Context, *mcp.ListToolsParams) (*mcp.ListToolsResult, error) {
	schema := map[string]any{"type": "object", "properties": map[string]any{"command": map[string]any{"type": "string"}}}
	return &mcp.ListToolsResult{Tools: []*mcp.Tool{
		{Name: "vm_run", Description: "run", InputSchema: schema},
		{Name: "workspace_create", Description: "create", InputSchema: schema},
	}}, nil
}

func (f *fakeTools) CallTool(_ context.Context, p *mcp.CallToolParams) (*mcp.CallToolResult, error) {
	args, _ := json.Marshal(p.Arguments)
	f.calls = append(f.calls, p.Name+" "+string(args))
	return &mcp.CallToolResult{
		Content:           []mcp.Content{&mcp.TextContent{Text: "exit_code=... stdout: git version 2.39.5"}},
		StructuredContent: map[string]any{"exit_code": float64(f.exit), "stdout": "git version 2.39.5\n", "duration_ms": float64(12)},
	}, nil
}

// scripted serves chat completions from a list of assistant messages (raw
// JSON), one per request, recording the requests.
func scripted(t *testing.T, answers ...string) (*httptest.Server, *[]chatRequest) {
	var got []chatRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req chatRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			t.Errorf("decoding request: %v", err)
		}
		got = append(got, req)
		if len(got) > len(answers) {
			t.Errorf("request %d: no answer scripted", len(got))
			w.WriteHeader(500)
			return
		}
		io.WriteString(w, `{"choices":[{"message":`+answers[len(got)-1]+`}]}`)
	}))
	t.Cleanup(srv.Close)
	return srv, &got
}

func TestOllamaLoop(t *testing.T) {
	for _, tc := range []struct {
		name      string
		exit      int
		answers   []string
		maxSteps  int
		wantCalls []string
		wantOK    bool
		reason    string
	}{{
		name: "success, arguments as a string",
		answers: []string{
			`{"role":"assistant","content":"","tool_calls":[{"id":"a","type":"function","function":{"name":"vm_run","arguments":"{\"command\":\"git --version\"}"}}]}`,
			`{"role":"assistant","content":"git 2.39.5"}`},
		wantCalls: []string{`vm_run {"command":"git --version"}`},
		wantOK:    true,
	}, {
		name: "arguments as an object, no id",
		answers: []string{
			`{"role":"assistant","tool_calls":[{"function":{"name":"vm_run","arguments":{"command":"true"}}}]}`,
			`{"role":"assistant","content":"done"}`},
		wantCalls: []string{`vm_run {"command":"true"}`},
		wantOK:    true,
	}, {
		name: "unknown and unoffered tools are told to the model, not called",
		answers: []string{
			`{"role":"assistant","tool_calls":[{"id":"x","function":{"name":"rm_rf","arguments":"{}"}},{"id":"y","function":{"name":"workspace_create","arguments":"{}"}}]}`,
			`{"role":"assistant","content":"sorry"}`},
		reason: "no guest command ran",
	}, {
		name:      "guest command failed",
		exit:      3,
		answers:   []string{`{"role":"assistant","tool_calls":[{"id":"a","function":{"name":"vm_run","arguments":"{\"command\":\"false\"}"}}]}`, `{"role":"assistant","content":"it failed"}`},
		wantCalls: []string{`vm_run {"command":"false"}`},
		reason:    "the last guest command exited 3",
	}, {
		name:    "no tool call",
		answers: []string{`{"role":"assistant","content":"git version 9.9 (made up)"}`},
		reason:  "the model answered without calling a tool",
	}, {
		name:      "out of steps",
		maxSteps:  1,
		answers:   []string{`{"role":"assistant","tool_calls":[{"id":"a","function":{"name":"vm_run","arguments":"{\"command\":\"true\"}"}}]}`},
		wantCalls: []string{`vm_run {"command":"true"}`},
		reason:    "no final answer after 1 steps (raise --max-steps)",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			srv, reqs := scripted(t, tc.answers...)
			tools := &fakeTools{exit: tc.exit}
			var log []string
			rep, err := Ollama(t.Context(), tools, OllamaOptions{BaseURL: srv.URL + "/v1/", Model: "m", MaxSteps: tc.maxSteps,
				HTTPClient: srv.Client(), Log: func(l string) { log = append(log, l) }})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantCalls, tools.calls); diff != "" {
				t.Errorf("tool calls (-want +got):\n%s", diff)
			}
			if rep.Success != tc.wantOK || rep.Reason != tc.reason {
				t.Errorf("success=%v reason=%q, want %v %q", rep.Success, rep.Reason, tc.wantOK, tc.reason)
			}
			// Only the offered tools go to the model, and every tool call
			// comes back with its arguments as a JSON string and an answer.
			for _, req := range *reqs {
				if len(req.Tools) != 1 || req.Tools[0].Function.Name != "vm_run" {
					t.Errorf("tools sent: %+v", req.Tools)
				}
				answered := map[string]bool{}
				for _, m := range req.Messages {
					for _, c := range m.ToolCalls {
						var s string
						if json.Unmarshal(c.Function.Arguments, &s) != nil || c.ID == "" || c.Type != "function" {
							t.Errorf("tool call sent back as %s", mustJSON(c))
						}
						answered[c.ID] = false
					}
					if m.Role == "tool" {
						answered[m.ToolCallID] = true
					}
				}
				for id, ok := range answered {
					if !ok {
						t.Errorf("tool call %s has no tool message", id)
					}
				}
			}
			if len(log) == 0 || !strings.HasPrefix(log[0], "[ollama] ") {
				t.Errorf("log: %q", log)
			}
		})
	}
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

func TestOllamaErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		class  error
		want   string
	}{
		{"model missing", 404, `{"error":{"message":"model \"m\" not found, try pulling it first","type":"api_error"}}`,
			errdefs.ErrNotFound, "model m not found: run `ollama pull m`"},
		{"wrong path", 404, "404 page not found", errdefs.ErrNotFound, "/chat/completions does not exist"},
		{"no tools", 400, `{"error":{"message":"registry.ollama.ai/library/gemma:2b does not support tools"}}`,
			errdefs.ErrFailedPrecondition, "model m does not support tool calling"},
		{"native error shape", 500, `{"error":"out of memory"}`, errdefs.ErrUnavailable, "answered HTTP 500: out of memory"},
		{"not a completion", 200, `<html>`, errdefs.ErrUnavailable, "did not answer with a chat completion"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			_, err := Ollama(t.Context(), &fakeTools{}, OllamaOptions{BaseURL: srv.URL + "/v1", Model: "m"})
			if !errors.Is(err, tc.class) || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %v containing %q", err, tc.class, tc.want)
			}
		})
	}

	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/v1"
	srv.Close()
	_, err := Ollama(t.Context(), &fakeTools{}, OllamaOptions{BaseURL: url})
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "cannot reach Ollama at "+url+": is `ollama serve` running?") {
		t.Fatalf("closed port: %v", err)
	}
	if _, err := Ollama(t.Context(), &fakeTools{}, OllamaOptions{BaseURL: "localhost:11434"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("bad base URL: %v", err)
	}
	if _, err := Ollama(t.Context(), &fakeTools{}, OllamaOptions{Tools: []string{"nope"}}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("unknown tool: %v", err)
	}
}

func TestSummaryLine(t *testing.T) {
	zero := 0
	for _, tc := range []struct {
		r    OllamaReport
		want string
	}{
		{OllamaReport{Model: "qwen2.5:3b", Steps: 2, ToolCalls: 1, ExitCode: &zero, DurationMs: 4210, Success: true},
			"[summary] model=qwen2.5:3b steps=2 tool_calls=1 exit_code=0 duration_ms=4210 success=true"},
		{OllamaReport{Model: "m", Steps: 1, Reason: "the model answered without calling a tool"},
			`[summary] model=m steps=1 tool_calls=0 exit_code=none duration_ms=0 success=false reason="the model answered without calling a tool"`},
	} {
		if got := tc.r.SummaryLine(); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}
