package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

func init() {
	// fakeollama start [loop|sleep]: serve Ollama's OpenAI-compatible
	// chat-completions API on 127.0.0.1 and export its root as $OLLAMA_URL.
	// Model "fake" first answers with a vm_run tool call (debian:12,
	// git --version), then, given that call's result, which must contain
	// "git version", with a final message; other models get Ollama's 404
	// "model not found". In loop mode it calls vm_run with an empty command
	// on every request; in sleep mode, with `sleep 60`. A request breaking
	// the protocol gets a 400 naming the problem, and is remembered.
	// fakeollama dead: export $DEAD_URL, a root where nothing listens.
	// fakeollama requests N: the fake served N requests and saw no violation.
	scriptCmdRegistry["fakeollama"] = cmdFakeOllama
	// sigdemo SIGNAL: send SIGNAL to this script's `pyro demo` processes.
	scriptCmdRegistry["sigdemo"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: sigdemo SIGNAL")
		}
		signalPyro(ts, "demo", args[0])
	}
}

var (
	fakesMu sync.Mutex
	fakes   = map[*testscript.TestScript]*fakeOllama{}
)

func cmdFakeOllama(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: fakeollama start [loop|sleep] | dead | requests N")
	}
	switch args[0] {
	case "start":
		f := &fakeOllama{}
		if len(args) > 1 {
			f.mode = args[1]
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		ts.Check(err)
		srv := &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		ts.Defer(func() { srv.Close() })
		fakesMu.Lock()
		fakes[ts] = f
		fakesMu.Unlock()
		ts.Defer(func() { fakesMu.Lock(); delete(fakes, ts); fakesMu.Unlock() })
		ts.Setenv("OLLAMA_URL", "http://"+ln.Addr().String()+"/v1")
	case "dead":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		ts.Check(err)
		addr := ln.Addr().String()
		ts.Check(ln.Close())
		ts.Setenv("DEAD_URL", "http://"+addr+"/v1")
	case "requests":
		if len(args) != 2 {
			ts.Fatalf("usage: fakeollama requests N")
		}
		want, err := strconv.Atoi(args[1])
		ts.Check(err)
		fakesMu.Lock()
		f := fakes[ts]
		fakesMu.Unlock()
		if f == nil {
			ts.Fatalf("no fakeollama started")
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.violations) > 0 {
			ts.Fatalf("protocol violations:\n%s", strings.Join(f.violations, "\n"))
		}
		if f.requests != want {
			ts.Fatalf("fake Ollama served %d requests, want %d", f.requests, want)
		}
	default:
		ts.Fatalf("fakeollama: unknown subcommand %q", args[0])
	}
}

type fakeOllama struct {
	mode       string // "", "loop" or "sleep"
	mu         sync.Mutex
	requests   int
	violations []string
}

// The request as an OpenAI client sends it; arguments must be a string.
type fakeRequest struct {
	Model    string `json:"model"`
	Messages []struct {
		Role       string  `json:"role"`
		Content    *string `json:"content"`
		ToolCallID string  `json:"tool_call_id"`
		ToolCalls  []struct {
			ID       string `json:"id"`
			Type     string `json:"type"`
			Function struct {
				Name      string `json:"name"`
				Arguments any    `json:"arguments"`
			} `json:"function"`
		} `json:"tool_calls"`
	} `json:"messages"`
	Tools []struct {
		Type     string `json:"type"`
		Function struct {
			Name        string `json:"name"`
			Description string `json:"description"`
			Parameters  struct {
				Type       string                     `json:"type"`
				Properties map[string]json.RawMessage `json:"properties"`
				Required   []string                   `json:"required"`
			} `json:"parameters"`
		} `json:"function"`
	} `json:"tools"`
	Stream bool `json:"stream"`
}

func (f *fakeOllama) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	var req fakeRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		f.violate(w, "request body: %v", err)
		return
	}
	if req.Model != "fake" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"error":{"message":"model %q not found, try pulling it first","type":"api_error","param":null,"code":null}}`, req.Model)
		return
	}
	if r.Header.Get("Content-Type") != "application/json" {
		f.violate(w, "Content-Type %q", r.Header.Get("Content-Type"))
		return
	}
	if req.Stream {
		f.violate(w, "stream requested")
		return
	}
	// The tools are pyro's MCP tools, converted.
	var vmRun bool
	for _, t := range req.Tools {
		if t.Type != "function" {
			f.violate(w, "tool type %q", t.Type)
			return
		}
		if t.Function.Name == "vm_run" {
			vmRun = true
			p := t.Function.Parameters
			_, env := p.Properties["environment"]
			_, cmd := p.Properties["command"]
			if p.Type != "object" || !env || !cmd || !strings.Contains(strings.Join(p.Required, ","), "command") ||
				!strings.Contains(t.Function.Description, "microVM") {
				f.violate(w, "vm_run is not the MCP server's tool: %+v", t.Function)
				return
			}
		}
	}
	if !vmRun {
		f.violate(w, "no vm_run tool offered")
		return
	}
	if len(req.Messages) < 2 || req.Messages[0].Role != "system" || req.Messages[1].Role != "user" ||
		req.Messages[1].Content == nil || !strings.Contains(*req.Messages[1].Content, "git --version") {
		f.violate(w, "the conversation does not start with a system message and the task")
		return
	}
	last := req.Messages[len(req.Messages)-1]
	id := fmt.Sprintf("call_%d", f.requests)
	switch {
	case f.mode == "loop":
		f.answer(w, "", id, `{"environment":"debian:12","command":""}`)
	case f.mode == "sleep":
		f.answer(w, "", id, `{"environment":"debian:12","command":"sleep 60","timeout_seconds":120}`)
	case last.Role == "user":
		f.answer(w, "", id, `{"environment":"debian:12","command":"git --version"}`)
	case last.Role == "tool":
		prev := req.Messages[len(req.Messages)-2]
		if prev.Role != "assistant" || len(prev.ToolCalls) != 1 || prev.ToolCalls[0].ID != "call_1" ||
			prev.ToolCalls[0].Type != "function" || prev.ToolCalls[0].Function.Name != "vm_run" {
			f.violate(w, "the assistant's tool call was not sent back as made: %+v", prev)
			return
		}
		if _, ok := prev.ToolCalls[0].Function.Arguments.(string); !ok {
			f.violate(w, "tool call arguments sent back as %T, not a JSON string", prev.ToolCalls[0].Function.Arguments)
			return
		}
		if last.ToolCallID != "call_1" || last.Content == nil {
			f.violate(w, "tool message does not answer call_1: %+v", last)
			return
		}
		m := regexp.MustCompile(`git version [0-9.]+`).FindString(*last.Content)
		if m == "" {
			f.violate(w, "the tool result lacks \"git version\": %q", *last.Content)
			return
		}
		f.answer(w, "The VM reports "+m+".", "", "")
	default:
		f.violate(w, "unexpected last message role %q", last.Role)
	}
}

func (f *fakeOllama) violate(w http.ResponseWriter, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	f.violations = append(f.violations, msg)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"message": "fake ollama: " + msg, "type": "invalid_request_error"}})
	w.Write(b)
}

// answer writes a chat completion: a tool call when id is set, else content.
func (f *fakeOllama) answer(w http.ResponseWriter, content, id, args string) {
	msg := map[string]any{"role": "assistant", "content": content}
	finish := "stop"
	if id != "" {
		msg["tool_calls"] = []any{map[string]any{"id": id, "index": 0, "type": "function",
			"function": map[string]any{"name": "vm_run", "arguments": args}}}
		finish = "tool_calls"
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"id": "chatcmpl-1", "object": "chat.completion", "created": time.Now().Unix(), "model": "fake",
		"system_fingerprint": "fp_ollama",
		"choices":            []any{map[string]any{"index": 0, "message": msg, "finish_reason": finish}},
		"usage":              map[string]any{"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
	})
}
