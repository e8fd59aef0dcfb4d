package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Shells, services, secrets, names and labels through `pyro mcp serve`
// over stdio, as a model would use them: a Python REPL in a shell, an HTTP
// service, a secret that no tool result shows, and bad input refused.
func TestMCPLiving(t *testing.T) {
	needGuestHere(t)
	m := startMCP(t)
	const secret = "mcp-s3cret-Value-7731"
	seen := &strings.Builder{} // every result, to look for the secret
	ok := func(tool string, args map[string]any) map[string]any {
		t.Helper()
		res, out := m.call(t, t.Context(), tool, args, nil)
		seen.WriteString(contentText(res))
		b, _ := json.Marshal(out)
		seen.Write(b)
		if res.IsError {
			t.Fatalf("%s %v: %s", tool, args, contentText(res))
		}
		return out
	}
	fails := func(tool string, args map[string]any, want string) {
		t.Helper()
		res, _ := m.call(t, t.Context(), tool, args, nil)
		seen.WriteString(contentText(res))
		if !res.IsError || !strings.Contains(contentText(res), want) {
			t.Errorf("%s %v: %q, want an error with %q", tool, args, contentText(res), want)
		}
	}

	ws := ok("workspace_create", map[string]any{"environment": "debian:12-build", "mem_mib": 512, "name": "mcp-living",
		"labels": map[string]any{"via": "mcp"}, "secrets": []any{map[string]any{"name": "TOKEN", "value": secret}}})
	id := ws["workspace_id"].(string)
	defer m.ok(t, "workspace_delete", map[string]any{"workspace_id": id})
	if ws["name"] != "mcp-living" {
		t.Fatalf("created %v", ws)
	}
	if l := ok("workspace_list", map[string]any{"labels": map[string]any{"via": "mcp"}}); l["count"] != 1.0 {
		t.Fatalf("list by label: %v", l)
	}

	// A Python REPL: write 1+1, read 2.
	sh := ok("shell_open", map[string]any{"workspace_id": "mcp-living", "secret_env": map[string]any{"TOKEN": "T"}})
	shell := sh["shell_id"].(string)
	read := func(cursor float64, want string) float64 {
		t.Helper()
		re := regexp.MustCompile("(?m)" + want)
		var got strings.Builder
		for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); {
			r := ok("shell_read", map[string]any{"workspace_id": id, "shell_id": shell, "cursor": cursor, "plain": true, "wait_for_idle_ms": 300})
			got.WriteString(r["output"].(string))
			cursor = r["next_cursor"].(float64)
			if re.MatchString(got.String()) {
				return cursor
			}
		}
		t.Fatalf("no %q in the shell: %q", want, got.String())
		return 0
	}
	ok("shell_write", map[string]any{"workspace_id": id, "shell_id": shell, "input": "python3 -q"})
	cur := read(0, `>>> $`)
	ok("shell_write", map[string]any{"workspace_id": id, "shell_id": shell, "input": "1+1"})
	cur = read(cur, `^2$`)
	ok("shell_signal", map[string]any{"workspace_id": id, "shell_id": shell})
	ok("shell_write", map[string]any{"workspace_id": id, "shell_id": shell, "input": "exit()"})
	ok("shell_write", map[string]any{"workspace_id": id, "shell_id": shell, "input": `echo "t=$T"`})
	read(cur, `t=\[REDACTED\]`)
	if l := ok("shell_list", map[string]any{"workspace_id": id}); l["count"] != 1.0 {
		t.Fatalf("shell_list: %v", l)
	}

	// A service ready by HTTP, its log, its stop.
	svc := ok("service_start", map[string]any{"workspace_id": id, "name": "web", "command": "python3 -m http.server 8000",
		"readiness": map[string]any{"type": "http", "url": "http://127.0.0.1:8000/"}})
	if svc["state"] != "ready" || svc["published_ports"] == nil {
		t.Fatalf("service_start: %v", svc)
	}
	if lg := ok("service_logs", map[string]any{"workspace_id": id, "name": "web", "all": true}); !strings.Contains(lg["output"].(string), "GET / HTTP") {
		t.Fatalf("service_logs: %v", lg)
	}
	ok("service_start", map[string]any{"workspace_id": id, "name": "leaky", "command": `echo "leak $TOKEN"; exec sleep 300`, "secret_env": map[string]any{"TOKEN": ""}})
	for deadline := time.Now().Add(30 * time.Second); ; {
		lg := ok("service_logs", map[string]any{"workspace_id": id, "name": "leaky"})
		if strings.Contains(lg["output"].(string), "leak [REDACTED]") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leaky's log: %v", lg)
		}
		time.Sleep(time.Second)
	}
	fails("service_start", map[string]any{"workspace_id": id, "name": "never", "command": "echo slow; sleep 100",
		"readiness": map[string]any{"type": "file", "path": "never"}, "ready_timeout_seconds": 2}, "error (timeout)")
	if st := ok("service_status", map[string]any{"workspace_id": id, "name": "never"}); st["state"] != "failed" {
		t.Fatalf("never: %v", st)
	}
	if st := ok("service_stop", map[string]any{"workspace_id": id, "name": "web"}); st["state"] != "stopped" {
		t.Fatalf("service_stop: %v", st)
	}
	ex := ok("workspace_exec", map[string]any{"workspace_id": id, "command": `echo "x=$TOKEN"; cat /run/pyro-secrets/TOKEN`, "secret_env": map[string]any{"TOKEN": ""}})
	if ex["stdout"] != "x=[REDACTED]\n[REDACTED]" {
		t.Fatalf("exec: %v", ex)
	}

	// Bad input: clear errors, nothing changed.
	fails("shell_read", map[string]any{"workspace_id": id, "shell_id": "nosuch"}, "error (not_found)")
	fails("shell_signal", map[string]any{"workspace_id": id, "shell_id": shell, "signal": "STOP"}, `unknown signal "STOP"`)
	fails("service_start", map[string]any{"workspace_id": id, "name": "leaky", "command": "true"}, "error (already_exists)")
	fails("service_start", map[string]any{"workspace_id": id, "name": "x", "command": "true", "readiness": map[string]any{"type": "http", "url": "https://x/"}}, "not an http URL")
	fails("workspace_create", map[string]any{"environment": "debian:12", "secrets": []any{map[string]any{"name": "A=B", "value": "xxxxx"}}}, `invalid secret name "A=B"`)
	fails("workspace_exec", map[string]any{"workspace_id": id, "command": "true", "secret_env": map[string]any{"NOPE": ""}}, `no secret "NOPE"`)
	if l := ok("service_list", map[string]any{"workspace_id": id}); l["count"] != 3.0 {
		t.Fatalf("service_list: %v", l)
	}
	if l := ok("workspace_list", map[string]any{}); l["count"] != 1.0 {
		t.Fatalf("workspace_list: %v", l)
	}

	up := ok("workspace_update", map[string]any{"workspace_id": "mcp-living", "name": "mcp-renamed", "clear_labels": []any{"via"}, "ttl_seconds": 900})
	if up["name"] != "mcp-renamed" || up["labels"] != nil || up["ttl_seconds"] != 900.0 {
		t.Fatalf("update: %v", up)
	}
	ok("shell_close", map[string]any{"workspace_id": "mcp-renamed", "shell_id": shell})
	ok("workspace_status", map[string]any{"workspace_id": id})
	ok("workspace_logs", map[string]any{"workspace_id": id})
	if strings.Contains(seen.String(), secret) {
		t.Fatalf("the secret is in a tool result")
	}
}
