package hostcfg

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/pyro-mcp/pyro/internal/atomicfile"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// A JSON configuration file is edited as raw members: everything but
// pyro's own entry is written back as it was read (the file's indentation
// and the order of its top-level keys may change; the backup keeps the
// original).
type object = map[string]json.RawMessage

// readObject reads a JSON object file; a missing file is an empty object.
func readObject(path string) (object, bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return object{}, false, nil
	}
	if err != nil {
		return nil, false, errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "check its permissions", "reading %s", path)
	}
	obj := object{}
	if len(bytes.TrimSpace(data)) == 0 {
		return obj, true, nil
	}
	if err := json.Unmarshal(data, &obj); err != nil {
		return nil, true, errdefs.Wrap(errdefs.ErrFailedPrecondition, err,
			"fix the file, or add pyro by hand (it may hold comments pyro does not rewrite): see `pyro host print-config`",
			"%s is not a JSON object", path)
	}
	return obj, true, nil
}

// member decodes obj[key] as an object; absent or null is empty.
func member(obj object, key, path string) (object, error) {
	m := object{}
	raw, ok := obj[key]
	if !ok || string(raw) == "null" {
		return m, nil
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "fix the file by hand", "%q in %s is not an object", key, path)
	}
	return m, nil
}

func setMember(obj object, key string, v any) {
	b, _ := json.Marshal(v)
	obj[key] = b
}

// servers returns the object that holds the MCP servers of a JSON host
// config, and a function that puts it back into the file's object.
func servers(f format, obj object, path string) (object, func(object), error) {
	switch f {
	case formatOpenCode:
		mcp, err := member(obj, "mcp", path)
		if err != nil {
			return nil, nil, err
		}
		// OpenCode 2 nests servers under "servers"; 1.x puts them
		// directly under "mcp". Follow the file.
		if raw, ok := mcp["servers"]; ok && isObject(raw) {
			srv, err := member(mcp, "servers", path)
			if err != nil {
				return nil, nil, err
			}
			return srv, func(s object) { setMember(mcp, "servers", s); setMember(obj, "mcp", mcp) }, nil
		}
		return mcp, func(s object) { setMember(obj, "mcp", s) }, nil
	default:
		srv, err := member(obj, "mcpServers", path)
		if err != nil {
			return nil, nil, err
		}
		return srv, func(s object) { setMember(obj, "mcpServers", s) }, nil
	}
}

func isObject(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) > 0 && t[0] == '{'
}

// opencodeV2 says whether an OpenCode servers object is the nested (2.x) one.
func opencodeV2(obj object) bool {
	if raw, ok := obj["mcp"]; ok {
		var mcp object
		if json.Unmarshal(raw, &mcp) == nil {
			return isObject(mcp["servers"])
		}
	}
	return false
}

// readJSONEntry reads pyro's entry from a JSON host config; nil when
// there is none.
func readJSONEntry(f format, path string) (*Entry, error) {
	obj, _, err := readObject(path)
	if err != nil {
		return nil, err
	}
	srv, _, err := servers(f, obj, path)
	if err != nil {
		return nil, err
	}
	raw, ok := srv[ServerName]
	if !ok {
		return nil, nil
	}
	if f == formatOpenCode {
		var oc struct {
			Command []string `json:"command"`
		}
		if err := json.Unmarshal(raw, &oc); err != nil || len(oc.Command) == 0 {
			return &Entry{}, nil // present but unusable: repair rewrites it
		}
		return &Entry{Command: oc.Command[0], Args: oc.Command[1:]}, nil
	}
	var e Entry
	if err := json.Unmarshal(raw, &e); err != nil {
		return &Entry{}, nil
	}
	return &e, nil
}

// writeJSONEntry puts e (or, when nil, no entry) into the JSON host config
// at path, keeping every other member and the keys of pyro's entry it does
// not set (env, timeouts), after backing the file up. It reports the
// backup's path.
func writeJSONEntry(f format, path string, e *Entry) (backup string, err error) {
	obj, exists, err := readObject(path)
	if err != nil {
		return "", err
	}
	srv, put, err := servers(f, obj, path)
	if err != nil {
		return "", err
	}
	if e == nil {
		delete(srv, ServerName)
	} else {
		entry, _ := member(srv, ServerName, path)
		if entry == nil {
			entry = object{}
		}
		if f == formatOpenCode {
			setMember(entry, "type", "local")
			setMember(entry, "command", e.Argv())
			if !opencodeV2(obj) {
				setMember(entry, "enabled", true)
			}
		} else {
			setMember(entry, "command", e.Command)
			setMember(entry, "args", e.Args)
		}
		setMember(srv, ServerName, entry)
	}
	put(srv)
	data, err := json.MarshalIndent(obj, "", "  ")
	if err != nil {
		return "", err
	}
	data = append(data, '\n')
	perm := os.FileMode(0o600)
	if exists {
		fi, err := os.Stat(path)
		if err != nil {
			return "", err
		}
		perm = fi.Mode().Perm()
		if backup, err = backupFile(path, perm); err != nil {
			return "", err
		}
	} else if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "", "creating %s", filepath.Dir(path))
	}
	if err := atomicfile.WriteFile(path, data, perm); err != nil {
		return "", errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "check its permissions", "writing %s", path)
	}
	return backup, nil
}

// backupFile copies path next to itself, with a timestamp.
func backupFile(path string, perm os.FileMode) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	b := path + ".pyro-backup-" + time.Now().UTC().Format("20060102T150405.000Z")
	if err := atomicfile.WriteFile(b, data, perm); err != nil {
		return "", errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "", "backing up %s", path)
	}
	return b, nil
}

// jsonSnippet is the part of a JSON host config that adds pyro.
func jsonSnippet(f format, e Entry) string {
	var v any
	if f == formatOpenCode {
		v = map[string]any{"mcp": map[string]any{ServerName: map[string]any{"type": "local", "command": e.Argv(), "enabled": true}}}
	} else {
		v = map[string]any{"mcpServers": map[string]any{ServerName: e}}
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b) + "\n"
}
