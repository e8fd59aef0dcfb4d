package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// httpServer is `pyro mcp serve --http 127.0.0.1:0` on the host_compat
// backend: commands run on the host, so a test sees at once whether a
// request ran one (it leaves a file behind). No guest is needed.
type httpServer struct {
	url, tokenPath, runDir string
	cmd                    *exec.Cmd
	mu                     sync.Mutex
	stderr                 bytes.Buffer
}

func (s *httpServer) log(l string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stderr.WriteString(l + "\n")
}

func (s *httpServer) logged() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

func startHTTPServer(t *testing.T, args ...string) *httpServer {
	t.Helper()
	runDir, err := os.MkdirTemp("", "pyro-http-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(runDir) })
	cmd := exec.Command(filepath.Join(pyroBinDir, "pyro"), append([]string{"mcp", "serve", "--no-project", "--http", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "PYRO_RUNTIME_DIR="+runDir, "PYRO_STATE_DIR="+t.TempDir(), "PYRO_CACHE_DIR="+t.TempDir(),
		"PYRO_BACKEND=host_compat", "PYRO_LOG_LEVEL=info")
	cmd.Dir = t.TempDir()
	pr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &httpServer{runDir: runDir, cmd: cmd}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		if t.Failed() {
			t.Logf("server stderr:\n%s", s.logged())
		}
	})
	urlRE := regexp.MustCompile(`MCP over streamable HTTP at (http://\S+/mcp)`)
	tokRE := regexp.MustCompile(`bearer token in (\S+) `)
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(30 * time.Second)
	for s.url == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("server exited:\n%s", s.logged())
			}
			s.log(l)
			if m := urlRE.FindStringSubmatch(l); m != nil {
				s.url = m[1]
			}
			if m := tokRE.FindStringSubmatch(l); m != nil {
				s.tokenPath = m[1]
			}
		case <-deadline:
			t.Fatalf("no address on stderr:\n%s", s.logged())
		}
	}
	go func() {
		for l := range lines {
			s.log(l)
		}
	}()
	return s
}

// bearer adds a header to every request of a client.
type bearer struct {
	header, value string
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(b.header, b.value)
	return http.DefaultTransport.RoundTrip(r)
}

func (s *httpServer) token(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(s.tokenPath)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// connect is the go-sdk's own streamable HTTP client with the token.
func (s *httpServer) connect(t *testing.T, token string) *mcp.ClientSession {
	t.Helper()
	tr := &mcp.StreamableClientTransport{Endpoint: s.url, MaxRetries: -1,
		HTTPClient: &http.Client{Transport: bearer{"Authorization", "Bearer " + token}}}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "pyro-test", Version: "0"}, nil).Connect(t.Context(), tr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// callTouch is a raw JSON-RPC tools/call that would create marker on the
// host: what an attacker on the same host would send.
func (s *httpServer) callTouch(t *testing.T, session, marker string, hdr map[string]string, query string) int {
	t.Helper()
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"vm_run","arguments":{"environment":"debian:12","allow_host_compat":true,"command":"touch %s"}}}`, marker)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.url+query, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", session)
	req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body) // the answer arrives once the call ended
	resp.Body.Close()
	return resp.StatusCode
}

func TestMCPHTTPNeedsToken(t *testing.T) {
	s := startHTTPServer(t)
	if s.tokenPath == "" {
		t.Fatalf("no token path on stderr:\n%s", s.logged())
	}
	fi, err := os.Stat(s.tokenPath)
	if err != nil || fi.Mode().Perm() != 0o600 || filepath.Dir(s.tokenPath) != s.runDir {
		t.Fatalf("token file %s: %v %v, want 0600 in %s", s.tokenPath, fi.Mode(), err, s.runDir)
	}
	tok := s.token(t)
	if len(tok) < 32 {
		t.Fatalf("token %q is short", tok)
	}

	// The right token, through the go-sdk client: tools work.
	cs := s.connect(t, tok)
	marks := t.TempDir()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "vm_run", Arguments: map[string]any{
		"environment": "debian:12", "allow_host_compat": true, "command": "touch " + filepath.Join(marks, "legit")}})
	if err != nil || res.IsError {
		t.Fatalf("vm_run with the token: %v %+v", err, res)
	}
	if _, err := os.Stat(filepath.Join(marks, "legit")); err != nil {
		t.Fatal("the authorised call ran nothing")
	}

	// A raw request with the right token runs too (the attacks below
	// differ only in how they carry it).
	if code := s.callTouch(t, cs.ID(), filepath.Join(marks, "control"), map[string]string{"Authorization": "Bearer " + tok}, ""); code != http.StatusOK {
		t.Fatalf("raw call with the token: HTTP %d", code)
	}
	if _, err := os.Stat(filepath.Join(marks, "control")); err != nil {
		t.Fatal("the raw authorised call ran nothing")
	}

	attacks := []struct {
		name  string
		hdr   map[string]string
		query string
	}{
		{"no token", nil, ""},
		{"wrong token", map[string]string{"Authorization": "Bearer " + strings.Repeat("0", len(tok))}, ""},
		{"token with a byte more", map[string]string{"Authorization": "Bearer " + tok + "0"}, ""},
		{"empty bearer", map[string]string{"Authorization": "Bearer "}, ""},
		{"token without scheme", map[string]string{"Authorization": tok}, ""},
		{"token as basic auth", map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("pyro:"+tok))}, ""},
		{"token in X-Api-Key", map[string]string{"X-Api-Key": tok}, ""},
		{"token in Proxy-Authorization", map[string]string{"Proxy-Authorization": "Bearer " + tok}, ""},
		{"token in the query", nil, "?access_token=" + tok},
	}
	for i, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			marker := filepath.Join(marks, fmt.Sprintf("pwned-%d", i))
			if code := s.callTouch(t, cs.ID(), marker, a.hdr, a.query); code != http.StatusUnauthorized {
				t.Errorf("HTTP %d, want 401", code)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Errorf("the command ran")
			}
		})
	}

	// A new session cannot even start without the token.
	tr := &mcp.StreamableClientTransport{Endpoint: s.url, MaxRetries: -1}
	if _, err := mcp.NewClient(&mcp.Implementation{Name: "intruder", Version: "0"}, nil).Connect(t.Context(), tr, nil); err == nil {
		t.Error("a client without the token connected")
	}

	// The token goes away with the server.
	cs.Close()
	s.cmd.Process.Signal(os.Interrupt)
	s.cmd.Wait()
	if _, err := os.Stat(s.tokenPath); err == nil {
		t.Error("token file left behind")
	}
}

func TestMCPHTTPTokenFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tok")
	os.WriteFile(file, []byte("  my-own-long-secret-token  \n"), 0o644)
	// Readable by others: refused before anything is served.
	cmd := exec.Command(filepath.Join(pyroBinDir, "pyro"), "mcp", "serve", "--http", "127.0.0.1:0", "--token-file", file)
	cmd.Env = append(os.Environ(), "PYRO_RUNTIME_DIR="+t.TempDir(), "PYRO_STATE_DIR="+t.TempDir(), "PYRO_CACHE_DIR="+t.TempDir())
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "chmod 600") {
		t.Fatalf("a world-readable token file was accepted: %v\n%s", err, out)
	}

	os.Chmod(file, 0o600)
	s := startHTTPServer(t, "--token-file", file)
	if s.tokenPath != file {
		t.Errorf("token path %q, want %q", s.tokenPath, file)
	}
	s.connect(t, "my-own-long-secret-token")
	tr := &mcp.StreamableClientTransport{Endpoint: s.url, MaxRetries: -1,
		HTTPClient: &http.Client{Transport: bearer{"Authorization", "Bearer my-own-long-secret-tokeN"}}}
	if _, err := mcp.NewClient(&mcp.Implementation{Name: "intruder", Version: "0"}, nil).Connect(t.Context(), tr, nil); err == nil {
		t.Error("a wrong token connected")
	}
}
