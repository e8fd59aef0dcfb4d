package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// Defaults of `pyro demo ollama`.
const (
	// DefaultOllamaURL is Ollama's OpenAI-compatible API on its default port.
	DefaultOllamaURL = "http://localhost:11434/v1"
	// DefaultModel is small (about 2 GB), runs on a CPU and calls tools
	// reliably; llama3.2:3b works too.
	DefaultModel    = "qwen2.5:3b"
	DefaultMaxSteps = 8
	// requestTimeout bounds one chat completion: a CPU-only Ollama can take
	// minutes to load a model and answer, but not forever.
	requestTimeout = 10 * time.Minute
)

// DefaultTools are the tools offered to the model unless told otherwise:
// small models pick better among few tools, and every tool's schema eats
// into Ollama's small default context window.
var DefaultTools = []string{"vm_run"}

// Tools is the MCP client side the loop drives; *mcp.ClientSession is one
// (mcpserver.Dial gives one connected in-process to pyro's server).
type Tools interface {
	ListTools(context.Context, *mcp.ListToolsParams) (*mcp.ListToolsResult, error)
	CallTool(context.Context, *mcp.CallToolParams) (*mcp.CallToolResult, error)
}

// OllamaOptions configure Ollama. Zero fields take the defaults above.
type OllamaOptions struct {
	BaseURL     string // the OpenAI-compatible root, ending in /v1
	Model       string
	Environment string // the environment the task asks for; default debian:12
	MaxSteps    int    // chat-completions requests at most
	// Tools names the MCP tools offered to the model; "all" offers every one.
	Tools []string
	// Task is the user message; default: run git --version in Environment
	// with vm_run and report the version.
	Task       string
	HTTPClient *http.Client
	// Log receives one line per event: each request to the model, its
	// answer, each tool call and each tool result.
	Log func(line string)
}

// ToolCall is one tool call the model made: an element of
// `pyro demo ollama --json`'s "calls".
type ToolCall struct {
	Step       int             `json:"step"`
	Name       string          `json:"name"`
	Arguments  json.RawMessage `json:"arguments"`
	IsError    bool            `json:"is_error"`
	ExitCode   *int            `json:"exit_code,omitempty"` // of the guest command, for vm_run, vm_exec, workspace_exec
	Summary    string          `json:"summary"`
	DurationMs int64           `json:"duration_ms"`
}

// OllamaReport is the outcome of a run: `pyro demo ollama --json`.
type OllamaReport struct {
	Model       string     `json:"model"`
	BaseURL     string     `json:"base_url"`
	Environment string     `json:"environment"`
	Tools       []string   `json:"tools"`
	Steps       int        `json:"steps"` // chat-completions requests made
	ToolCalls   int        `json:"tool_calls"`
	Calls       []ToolCall `json:"calls"`
	// ExitCode is the exit status of the last guest command a tool ran;
	// null when none ran.
	ExitCode   *int   `json:"exit_code"`
	Answer     string `json:"answer"` // the model's final message
	DurationMs int64  `json:"duration_ms"`
	// Success: the model called a tool, the last guest command exited 0,
	// and the model then answered within MaxSteps.
	Success bool   `json:"success"`
	Reason  string `json:"reason,omitempty"` // why not, when Success is false
}

// SummaryLine is the one line that ends every run.
func (r *OllamaReport) SummaryLine() string {
	exit := "none"
	if r.ExitCode != nil {
		exit = fmt.Sprint(*r.ExitCode)
	}
	s := fmt.Sprintf("[summary] model=%s steps=%d tool_calls=%d exit_code=%s duration_ms=%d success=%t",
		r.Model, r.Steps, r.ToolCalls, exit, r.DurationMs, r.Success)
	if r.Reason != "" {
		s += fmt.Sprintf(" reason=%q", r.Reason)
	}
	return s
}

const systemPrompt = `You are a careful assistant with tools that run shell commands inside real, disposable Linux microVMs (pyro). ` +
	`When asked to run something, call a tool; never invent a command's output. ` +
	`After you get the tool result, answer in one or two short sentences based on it.`

func defaultTask(env string) string {
	return fmt.Sprintf("Use the vm_run tool to run `git --version` in the %s environment, then tell me the git version it printed.", env)
}

// Ollama lets a model served by Ollama do a small job with pyro's tools:
// it posts the conversation and the tools to /chat/completions, runs every
// tool call through tools, appends the results, and repeats until the
// model answers without tool calls or MaxSteps requests were made.
//
// An error means the run could not happen (Ollama unreachable, model
// missing, a tool list that cannot be read); a run that happened but did
// not succeed is a report with Success false and a Reason.
func Ollama(ctx context.Context, tools Tools, o OllamaOptions) (*OllamaReport, error) {
	start := time.Now()
	if o.BaseURL == "" {
		o.BaseURL = DefaultOllamaURL
	}
	o.BaseURL = strings.TrimRight(o.BaseURL, "/")
	if u, err := url.Parse(o.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "give Ollama's OpenAI-compatible root, e.g. "+DefaultOllamaURL,
			"bad --base-url %q", o.BaseURL)
	}
	if o.Model == "" {
		o.Model = DefaultModel
	}
	if o.Environment == "" {
		o.Environment = "debian:12"
	}
	if o.MaxSteps <= 0 {
		o.MaxSteps = DefaultMaxSteps
	}
	if len(o.Tools) == 0 {
		o.Tools = DefaultTools
	}
	if o.Task == "" {
		o.Task = defaultTask(o.Environment)
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: requestTimeout}
	}
	logf := func(format string, args ...any) {
		if o.Log != nil {
			o.Log(fmt.Sprintf(format, args...))
		}
	}

	defs, names, err := toolDefs(ctx, tools, o.Tools)
	if err != nil {
		return nil, err
	}
	rep := &OllamaReport{Model: o.Model, BaseURL: o.BaseURL, Environment: o.Environment, Tools: names, Calls: []ToolCall{}}
	done := func(reason string) (*OllamaReport, error) {
		rep.DurationMs = time.Since(start).Milliseconds()
		rep.Reason = reason
		rep.Success = reason == ""
		return rep, nil
	}
	logf("[ollama] base_url=%s model=%s tools=%s max_steps=%d", o.BaseURL, o.Model, strings.Join(names, ","), o.MaxSteps)
	logf("[user] %s", o.Task)

	msgs := []chatMessage{{Role: "system", Content: systemPrompt}, {Role: "user", Content: o.Task}}
	zero := 0.0
	for step := 1; step <= o.MaxSteps; step++ {
		rep.Steps = step
		logf("[model] step %d/%d: POST %s/chat/completions (%d messages, %d tools)", step, o.MaxSteps, o.BaseURL, len(msgs), len(defs))
		t := time.Now()
		msg, err := chat(ctx, o.HTTPClient, o.BaseURL, chatRequest{Model: o.Model, Messages: msgs, Tools: defs, Temperature: &zero})
		if err != nil {
			return nil, err
		}
		if len(msg.ToolCalls) == 0 {
			rep.Answer = strings.TrimSpace(msg.Content)
			logf("[model] step %d/%d: answered without tool calls (%s)", step, o.MaxSteps, Seconds(time.Since(t).Milliseconds()))
			for _, line := range strings.Split(rep.Answer, "\n") {
				logf("[answer] %s", line)
			}
			switch {
			case rep.ToolCalls == 0:
				return done("the model answered without calling a tool")
			case rep.ExitCode == nil:
				return done("no guest command ran")
			case *rep.ExitCode != 0:
				return done(fmt.Sprintf("the last guest command exited %d", *rep.ExitCode))
			}
			return done("")
		}
		logf("[model] step %d/%d: %d tool call(s) (%s)", step, o.MaxSteps, len(msg.ToolCalls), Seconds(time.Since(t).Milliseconds()))
		// The assistant turn goes back verbatim, with ids, so that each
		// tool message answers a call the model made.
		for i := range msg.ToolCalls {
			if msg.ToolCalls[i].ID == "" {
				msg.ToolCalls[i].ID = fmt.Sprintf("call_%d_%d", step, i+1)
			}
			msg.ToolCalls[i].Type = "function"
		}
		msgs = append(msgs, chatMessage{Role: "assistant", Content: msg.Content, ToolCalls: msg.ToolCalls})
		for _, tc := range msg.ToolCalls {
			rep.ToolCalls++
			content, rec, err := callTool(ctx, tools, names, tc, step, logf, rep.ToolCalls)
			if err != nil {
				return nil, err
			}
			rep.Calls = append(rep.Calls, rec)
			if rec.ExitCode != nil {
				rep.ExitCode = rec.ExitCode
			}
			msgs = append(msgs, chatMessage{Role: "tool", ToolCallID: tc.ID, Name: tc.Function.Name, Content: content})
		}
	}
	return done(fmt.Sprintf("no final answer after %d steps (raise --max-steps)", o.MaxSteps))
}

// callTool runs one tool call and returns the tool message's content. A
// bad call (unknown tool, malformed arguments, a failing tool) is told to
// the model, which may correct itself; only cancellation is an error.
func callTool(ctx context.Context, tools Tools, offered []string, tc toolCall, step int, logf func(string, ...any), n int) (string, ToolCall, error) {
	name := tc.Function.Name
	args := argumentsJSON(tc.Function.Arguments)
	rec := ToolCall{Step: step, Name: name, Arguments: json.RawMessage(args)}
	logf("[tool] call %d: %s %s", n, name, args)
	t := time.Now()
	finish := func(content string, isError bool, summary string) (string, ToolCall, error) {
		rec.IsError, rec.Summary, rec.DurationMs = isError, summary, time.Since(t).Milliseconds()
		logf("[tool] call %d: %s -> %s (%s)", n, name, summary, Seconds(rec.DurationMs))
		return content, rec, nil
	}
	if !slices.Contains(offered, name) {
		msg := fmt.Sprintf("error: there is no tool %q; the tools are: %s", name, strings.Join(offered, ", "))
		return finish(msg, true, msg)
	}
	var in map[string]any
	if err := json.Unmarshal([]byte(args), &in); err != nil {
		rec.Arguments = nil
		msg := fmt.Sprintf("error: the arguments of %s must be a JSON object: %v", name, err)
		return finish(msg, true, msg)
	}
	res, err := tools.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: in})
	if err != nil {
		if ctx.Err() != nil {
			return "", rec, fmt.Errorf("interrupted during %s (a VM it started is deleted): %w", name, ctx.Err())
		}
		msg := "error: " + err.Error()
		return finish(msg, true, msg)
	}
	var text []string
	for _, c := range res.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			text = append(text, t.Text)
		}
	}
	content := strings.Join(text, "\n")
	if res.IsError {
		return finish(content, true, "error: "+firstLine(content))
	}
	sc, _ := res.StructuredContent.(map[string]any)
	if code, ok := sc["exit_code"].(float64); ok {
		c := int(code)
		rec.ExitCode = &c
		summary := fmt.Sprintf("exit_code=%d", c)
		if ms, ok := sc["duration_ms"].(float64); ok {
			summary += fmt.Sprintf(" duration_ms=%d", int64(ms))
		}
		if to, _ := sc["timed_out"].(bool); to {
			summary += " timed_out=true"
		}
		if s, _ := sc["stdout"].(string); s != "" {
			summary += fmt.Sprintf(" stdout=%q", clip(firstLine(s), 80))
		}
		if s, _ := sc["stderr"].(string); s != "" {
			summary += fmt.Sprintf(" stderr=%q", clip(firstLine(s), 80))
		}
		return finish(content, false, summary)
	}
	return finish(content, false, clip(firstLine(content), 120))
}

// argumentsJSON returns a tool call's arguments as JSON text: OpenAI sends
// a string holding JSON, some servers the object itself.
func argumentsJSON(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if strings.TrimSpace(s) == "" {
			return "{}"
		}
		return s
	}
	if len(bytes.TrimSpace(raw)) == 0 || string(raw) == "null" {
		return "{}"
	}
	return string(raw)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// toolDefs lists pyro's MCP tools and converts the chosen ones to OpenAI
// function tools, taking name, description and input schema from the
// server itself so they never drift from what MCP clients see.
func toolDefs(ctx context.Context, tools Tools, want []string) ([]toolDef, []string, error) {
	var all []*mcp.Tool
	params := &mcp.ListToolsParams{}
	for {
		res, err := tools.ListTools(ctx, params)
		if err != nil {
			return nil, nil, fmt.Errorf("listing pyro's tools: %w", err)
		}
		all = append(all, res.Tools...)
		if res.NextCursor == "" {
			break
		}
		params = &mcp.ListToolsParams{Cursor: res.NextCursor}
	}
	var available []string
	for _, t := range all {
		available = append(available, t.Name)
	}
	var defs []toolDef
	var names []string
	for _, t := range all {
		if slices.Contains(want, "all") || slices.Contains(want, t.Name) {
			defs = append(defs, toolDef{Type: "function", Function: functionDef{Name: t.Name, Description: t.Description, Parameters: t.InputSchema}})
			names = append(names, t.Name)
		}
	}
	for _, w := range want {
		if w != "all" && !slices.Contains(available, w) {
			return nil, nil, errdefs.New(errdefs.ErrInvalidArgument, "pyro's tools are: "+strings.Join(available, ", ")+" (or all)",
				"no tool named %q", w)
		}
	}
	return defs, names, nil
}

// The OpenAI chat-completions wire format, as far as the loop needs it.

type chatRequest struct {
	Model       string        `json:"model"`
	Messages    []chatMessage `json:"messages"`
	Tools       []toolDef     `json:"tools,omitempty"`
	Stream      bool          `json:"stream"`
	Temperature *float64      `json:"temperature,omitempty"`
}

type chatMessage struct {
	Role       string     `json:"role"`
	Content    string     `json:"content"`
	ToolCalls  []toolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
	Name       string     `json:"name,omitempty"`
}

type toolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function functionCall `json:"function"`
}

type functionCall struct {
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
}

type toolDef struct {
	Type     string      `json:"type"`
	Function functionDef `json:"function"`
}

type functionDef struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Parameters  any    `json:"parameters"`
}

type chatResponse struct {
	Choices []struct {
		Message      chatMessage `json:"message"`
		FinishReason string      `json:"finish_reason"`
	} `json:"choices"`
}

// chat posts one request and returns the model's message.
func chat(ctx context.Context, hc *http.Client, base string, req chatRequest) (*chatMessage, error) {
	// Tool calls go back to the model with their arguments as a JSON
	// string, as OpenAI specifies, whatever shape they came in.
	for i := range req.Messages {
		for j := range req.Messages[i].ToolCalls {
			fc := &req.Messages[i].ToolCalls[j].Function
			s, _ := json.Marshal(argumentsJSON(fc.Arguments))
			fc.Arguments = s
		}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encoding the request: %w", err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/chat/completions", bytes.NewReader(body))
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "give Ollama's OpenAI-compatible root, e.g. "+DefaultOllamaURL, "bad --base-url")
	}
	hreq.Header.Set("Content-Type", "application/json")
	// Ollama ignores the key; OpenAI-compatible proxies in front of it may not.
	hreq.Header.Set("Authorization", "Bearer ollama")
	resp, err := hc.Do(hreq)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("interrupted while waiting for the model: %w", ctx.Err())
		}
		var ne net.Error
		var oe *net.OpError
		dial := errors.As(err, &oe) && oe.Op == "dial"
		if errors.As(err, &ne) && ne.Timeout() && !dial {
			return nil, errdefs.Wrap(errdefs.ErrTimeout, err, "a CPU-only Ollama can be slow on first load: try again, or a smaller --model",
				"Ollama at %s did not answer in time", base)
		}
		return nil, errdefs.New(errdefs.ErrUnavailable, "start it with `ollama serve`, or point --base-url at a running Ollama (default "+DefaultOllamaURL+")",
			"cannot reach Ollama at %s: is `ollama serve` running? (%s)", base, rootCause(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrUnavailable, err, "", "reading Ollama's answer from %s", base)
	}
	if resp.StatusCode/100 != 2 {
		return nil, httpError(base, req.Model, resp.StatusCode, data)
	}
	var cr chatResponse
	if err := json.Unmarshal(data, &cr); err != nil || len(cr.Choices) == 0 {
		return nil, errdefs.New(errdefs.ErrUnavailable, "--base-url must be Ollama's OpenAI-compatible root, e.g. "+DefaultOllamaURL,
			"%s/chat/completions did not answer with a chat completion: %s", base, clip(strings.TrimSpace(string(data)), 200))
	}
	return &cr.Choices[0].Message, nil
}

// httpError turns an error status into what the user should do.
func httpError(base, model string, status int, body []byte) error {
	msg := errorMessage(body)
	lower := strings.ToLower(msg)
	switch {
	case status == http.StatusNotFound && strings.Contains(lower, "model"):
		return errdefs.New(errdefs.ErrNotFound, "`ollama list` shows the models you have; --model picks one (it must support tool calling, e.g. "+DefaultModel+")",
			"model %s not found: run `ollama pull %s` (Ollama at %s said: %s)", model, model, base, msg)
	case status == http.StatusNotFound:
		return errdefs.New(errdefs.ErrNotFound, "--base-url must be Ollama's OpenAI-compatible root, ending in /v1, e.g. "+DefaultOllamaURL,
			"%s/chat/completions does not exist (HTTP 404: %s)", base, msg)
	case strings.Contains(lower, "does not support tools"):
		return errdefs.New(errdefs.ErrFailedPrecondition, "pick a model with tool calling, e.g. --model "+DefaultModel+" or --model llama3.2:3b",
			"model %s does not support tool calling (Ollama said: %s)", model, msg)
	}
	return errdefs.New(errdefs.ErrUnavailable, "", "Ollama at %s answered HTTP %d: %s", base, status, msg)
}

// errorMessage digs the message out of an OpenAI-style {"error":{"message":...}}
// or Ollama-style {"error":"..."} body.
func errorMessage(body []byte) string {
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && len(e.Error) > 0 {
		var s string
		if json.Unmarshal(e.Error, &s) == nil {
			return s
		}
		var o struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(e.Error, &o) == nil && o.Message != "" {
			return o.Message
		}
	}
	s := strings.TrimSpace(string(body))
	if s == "" {
		return "empty body"
	}
	return clip(s, 200)
}

// rootCause shortens a transport error to its last part, e.g.
// "connect: connection refused".
func rootCause(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Op + ": " + oe.Err.Error()
	}
	return err.Error()
}
