package engine

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/atomicfile"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/lazyregexp"
	"github.com/pyro-mcp/pyro/internal/redact"
)

// A workspace's secrets. Their values are on the host in exactly one
// place, secretsFile in the workspace's state directory (mode 0600,
// removed with the directory on delete), from which they are delivered
// into the guest at every boot; the record holds only each secret's name,
// source kind and a keyed digest. Every output pyro returns from the
// workspace goes through redactor.
const secretsFile = "secrets.json"

// secretMeta is what the record keeps of a secret.
type secretMeta struct {
	Name   string `json:"name"`
	Source string `json:"source"` // api.SecretFromValue or api.SecretFromFile
	// Digest is an HMAC of the value under a key kept in secretsFile:
	// it tells whether a value changed without letting anyone who reads
	// the record guess it.
	Digest string `json:"digest"`
}

// secretsData is secretsFile's content.
type secretsData struct {
	Key     []byte              `json:"key"`
	Secrets []agentproto.Secret `json:"secrets"`
}

var envVarName = lazyregexp.New(`^[A-Za-z_][A-Za-z0-9_]*$`)

func secretInfos(m []secretMeta) []api.SecretInfo {
	if len(m) == 0 {
		return nil
	}
	out := make([]api.SecretInfo, len(m))
	for i, s := range m {
		out[i] = api.SecretInfo{Name: s.Name, SourceKind: s.Source}
	}
	return out
}

// readSecretSpecs checks specs and reads the files they name; nothing is
// written. FilePaths are read as given (relative to the working
// directory); a face that confines host paths does so before.
func readSecretSpecs(specs []api.Secret) ([]agentproto.Secret, []secretMeta, error) {
	if len(specs) > api.MaxSecrets {
		return nil, nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("give at most %d secrets", api.MaxSecrets), "%d secrets", len(specs))
	}
	var vals []agentproto.Secret
	var metas []secretMeta
	for _, s := range specs {
		if err := agentproto.CheckSecretName(s.Name); err != nil {
			return nil, nil, err
		}
		if slices.ContainsFunc(vals, func(v agentproto.Secret) bool { return v.Name == s.Name }) {
			return nil, nil, errdefs.New(errdefs.ErrInvalidArgument, "give each secret once", "secret %s is given twice", s.Name)
		}
		value, source := s.Value, api.SecretFromValue
		switch {
		case s.Value != "" && s.FilePath != "":
			return nil, nil, errdefs.New(errdefs.ErrInvalidArgument, "give a secret's `value` or its `file_path`, not both", "secret %s has both", s.Name)
		case s.FilePath != "":
			v, err := readSecretFile(s.Name, s.FilePath)
			if err != nil {
				return nil, nil, err
			}
			value = v
			// A pipe (`<(pass show token)`, the Python facade's way of
			// keeping a value off the command line) carries a value.
			if fi, err := os.Stat(s.FilePath); err == nil && fi.Mode().IsRegular() {
				source = api.SecretFromFile
			}
		}
		switch {
		case value == "":
			return nil, nil, errdefs.New(errdefs.ErrInvalidArgument, "give the secret's `value` or a non-empty `file_path`", "secret %s is empty", s.Name)
		case len(value) < api.MinSecretBytes:
			return nil, nil, errdefs.New(errdefs.ErrInvalidArgument,
				fmt.Sprintf("a secret must have at least %d bytes: hiding a shorter one would hide ordinary output", api.MinSecretBytes),
				"secret %s is too short", s.Name)
		case len(value) > api.MaxSecretBytes:
			return nil, nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("a secret holds at most %d bytes", api.MaxSecretBytes),
				"secret %s is too long", s.Name)
		}
		vals = append(vals, agentproto.Secret{Name: s.Name, Value: value})
		metas = append(metas, secretMeta{Name: s.Name, Source: source})
	}
	return vals, metas, nil
}

// readSecretFile reads a secret's value from a host file, without one
// trailing newline. The path is never part of an error's text beyond
// what the caller gave.
func readSecretFile(name, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		class := errdefs.ErrInvalidArgument
		if errors.Is(err, os.ErrNotExist) {
			class = errdefs.ErrNotFound
		}
		return "", errdefs.New(class, "give a readable file as the secret's `file_path`", "cannot read secret %s from %s", name, path)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, api.MaxSecretBytes+2))
	if err != nil {
		return "", errdefs.New(errdefs.ErrInvalidArgument, "give a readable file as the secret's `file_path`", "cannot read secret %s from %s", name, path)
	}
	v := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	return v, nil
}

// writeSecrets stores values as workspace id's secrets and returns their
// metadata with digests.
func (e *Engine) writeSecrets(id string, vals []agentproto.Secret, metas []secretMeta) ([]secretMeta, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	d := secretsData{Key: make([]byte, 32), Secrets: vals}
	if _, err := rand.Read(d.Key); err != nil {
		return nil, err
	}
	out := slices.Clone(metas)
	for i := range out {
		m := hmac.New(sha256.New, d.Key)
		m.Write([]byte(vals[i].Value))
		out[i].Digest = "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))[:32]
	}
	data, _ := json.Marshal(d)
	if err := atomicfile.WriteFile(filepath.Join(e.wss.Path(id), secretsFile), data, 0o600); err != nil {
		return nil, fmt.Errorf("storing secrets: %w", err)
	}
	return out, nil
}

// readSecrets returns workspace id's secrets (none when it has none).
func (e *Engine) readSecrets(id string) ([]agentproto.Secret, error) {
	data, err := os.ReadFile(filepath.Join(e.wss.Path(id), secretsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var d secretsData
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("reading secrets: %w", err)
	}
	return d.Secrets, nil
}

// redactor hides workspace id's secrets (nil when it has none).
func (e *Engine) redactor(id string) *redact.Redactor {
	vals, err := e.readSecrets(id)
	if err != nil || len(vals) == 0 {
		return nil
	}
	vs := make([]string, len(vals))
	for i, v := range vals {
		vs[i] = v.Value
	}
	return redact.New(vs...)
}

// scrub hides workspace id's secrets in err's text, keeping its class
// and hint.
func (e *Engine) scrub(id string, err error) error {
	if err == nil {
		return nil
	}
	r := e.redactor(id)
	msg := r.String(err.Error())
	if r.Empty() || msg == err.Error() {
		return err
	}
	return &errdefs.Error{Class: errdefs.ClassOf(err), Msg: msg, Hint: errdefs.HintOf(err)}
}

// deliverSecrets puts a workspace's secrets into its running guest: at
// every boot (the guest's tmpfs starts empty), and after a reset or fork.
func (e *Engine) deliverSecrets(ctx context.Context, rec *vmRecord) error {
	if rec.Workspace == nil || len(rec.Workspace.Secrets) == 0 {
		return nil
	}
	vals, err := e.readSecrets(rec.ID)
	if err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := e.dial(dctx, rec)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetSecrets(dctx, vals); err != nil {
		return fmt.Errorf("delivering secrets: %w", err)
	}
	return nil
}

// secretEnv turns a secret_env request (secret name to variable name)
// into environment variables, checking every name against the workspace.
func (e *Engine) secretEnv(rec *vmRecord, want map[string]string) (map[string]string, error) {
	if len(want) == 0 {
		return nil, nil
	}
	var have []string
	if rec.Workspace != nil {
		for _, m := range rec.Workspace.Secrets {
			have = append(have, m.Name)
		}
	}
	for name, v := range want {
		if !slices.Contains(have, name) {
			hint := "this workspace has no secrets; give them at create (`secrets`)"
			if len(have) > 0 {
				hint = "its secrets are " + strings.Join(have, ", ")
			}
			return nil, errdefs.New(errdefs.ErrNotFound, hint, "workspace %s has no secret %q", rec.ID, name)
		}
		if v != "" && !envVarName.MatchString(v) {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "use a variable name of letters, digits and _", "invalid environment variable name %q for secret %s", v, name)
		}
	}
	vals, err := e.readSecrets(rec.ID)
	if err != nil {
		return nil, err
	}
	env := map[string]string{}
	for name, v := range want {
		if v == "" {
			v = name
		}
		for _, s := range vals {
			if s.Name == name {
				env[v] = s.Value
			}
		}
	}
	return env, nil
}

// withEnv returns base with extra added (extra wins).
func withEnv(base, extra map[string]string) map[string]string {
	if len(extra) == 0 {
		return base
	}
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// execRedacted is exec with the workspace's secrets hidden from the
// output, live (a value split across two chunks included) and in the
// result.
func (e *Engine) execRedacted(ctx context.Context, rec *vmRecord, o api.ExecOptions, red *redact.Redactor) (*api.ExecResult, error) {
	if red.Empty() {
		return e.exec(ctx, rec, o)
	}
	var streams []*redact.Stream
	for _, w := range []*io.Writer{&o.Stdout, &o.Stderr} {
		if *w != nil {
			s := redact.NewStream(red, *w)
			streams = append(streams, s)
			*w = s
		}
	}
	res, err := e.exec(ctx, rec, o)
	for _, s := range streams {
		s.Flush()
	}
	if res != nil {
		res.Stdout, res.Stderr, res.Message = red.String(res.Stdout), red.String(res.Stderr), red.String(res.Message)
	}
	return res, err
}

// copySecrets gives workspace dst the secrets of workspace srcID (a fork
// inherits its source's): the same values file and metadata. The caller
// writes dst's record; its next boot delivers them.
func (e *Engine) copySecrets(srcID string, dst *vmRecord) error {
	var src vmRecord
	if err := e.wss.Read(srcID, &src); err != nil {
		return err
	}
	if src.Workspace == nil || len(src.Workspace.Secrets) == 0 {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(e.wss.Path(srcID), secretsFile))
	if err != nil {
		return fmt.Errorf("reading secrets: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(e.wss.Path(dst.ID), secretsFile), data, 0o600); err != nil {
		return fmt.Errorf("storing secrets: %w", err)
	}
	dst.Workspace.Secrets = slices.Clone(src.Workspace.Secrets)
	return nil
}
