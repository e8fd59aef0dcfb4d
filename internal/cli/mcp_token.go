package cli

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/pyro-mcp/pyro/internal/atomicfile"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/paths"
)

// minTokenLen is the shortest token --token-file may hold: a guessable
// token is no better than none.
const minTokenLen = 16

// httpToken is the bearer token `pyro mcp serve --http` requires on every
// request. Anyone who can reach a loopback port can send requests, so the
// token, readable only by the user who started the server, is what stands
// between another local user and running commands as this one.
type httpToken struct {
	sum   [sha256.Size]byte // of the token: compared in constant time
	path  string            // where the token is
	owned bool              // pyro wrote path and removes it at exit
}

// newHTTPToken reads the token from tokenFile, or generates one and
// stores it 0600 in the runtime directory as mcp-http-PORT.token.
func newHTTPToken(tokenFile string, addr net.Addr) (*httpToken, error) {
	if tokenFile != "" {
		tok, err := readTokenFile(tokenFile)
		if err != nil {
			return nil, err
		}
		abs, _ := filepath.Abs(tokenFile)
		return &httpToken{sum: sha256.Sum256([]byte(tok)), path: abs}, nil
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	tok := hex.EncodeToString(b[:])
	dir := paths.RuntimeDir()
	if err := paths.EnsureRuntimeDir(dir); err != nil {
		return nil, err
	}
	port := "0"
	if ta, ok := addr.(*net.TCPAddr); ok {
		port = fmt.Sprint(ta.Port)
	}
	p := filepath.Join(dir, "mcp-http-"+port+".token")
	if err := atomicfile.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		return nil, errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "check the runtime directory ($PYRO_RUNTIME_DIR) is writable", "writing the MCP token")
	}
	return &httpToken{sum: sha256.Sum256([]byte(tok)), path: p, owned: true}, nil
}

// readTokenFile reads a token the user keeps: it must be theirs and
// private, or another user could read it.
func readTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", errdefs.Wrap(errdefs.ErrInvalidArgument, err, "name a file holding the token", "reading --token-file")
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	if !fi.Mode().IsRegular() || (st != nil && int(st.Uid) != os.Geteuid()) || fi.Mode().Perm()&0o077 != 0 {
		return "", errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("make it a regular file of yours that only you can read: chmod 600 %s", path),
			"--token-file %s is readable by others (mode %v) or not yours", path, fi.Mode().Perm())
	}
	b := make([]byte, 4097)
	n, _ := f.Read(b)
	tok := strings.TrimSpace(string(b[:n]))
	if n > 4096 || len(tok) < minTokenLen || strings.ContainsAny(tok, " \t\r\n") {
		return "", errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("put one token of %d to 4096 characters without spaces in it, e.g. from 'openssl rand -hex 32'", minTokenLen),
			"--token-file %s holds no usable token", path)
	}
	return tok, nil
}

// require answers 401 to any request without "Authorization: Bearer
// TOKEN"; nothing else carries the token (no query string, no other
// header), so that it does not end up in logs or browser history.
func (t *httpToken) require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		ok := subtle.ConstantTimeCompare(got[:], t.sum[:]) == 1
		if !strings.EqualFold(scheme, "Bearer") || !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pyro"`)
			http.Error(w, "missing or wrong bearer token: send Authorization: Bearer TOKEN, with the token from the file pyro mcp serve named on its stderr", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// remove deletes the token file pyro wrote.
func (t *httpToken) remove() {
	if t != nil && t.owned {
		os.Remove(t.path)
	}
}
