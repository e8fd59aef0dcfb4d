package engine

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/lazyregexp"
	"github.com/pyro-mcp/pyro/internal/state"
)

// Names and labels of workspaces, the one resolver of a workspace
// reference, and update.
var (
	workspaceName = lazyregexp.New(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	// anID is what a workspace id looks like: a name may not, or it
	// would hide that workspace from its own id.
	anID     = lazyregexp.New(`^[0-9a-f]{16}$`)
	labelKey = lazyregexp.New(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$`)
)

const (
	maxLabels      = 32
	maxLabelValue  = 256
	maxTTLSeconds  = 30 * 24 * 3600
	touchThreshold = 5 * time.Second
)

// resolve turns ref into an id of st. A workspace is found by, in this
// order: its exact id, its exact name, a unique prefix of its id.
func (e *Engine) resolve(st *state.Store, ref string) (string, error) {
	if st != e.wss {
		return st.Resolve(ref)
	}
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return st.Resolve(ref)
	}
	ids, err := st.IDs()
	if err != nil {
		return "", err
	}
	if slices.Contains(ids, ref) {
		return ref, nil
	}
	if workspaceName.MatchString(ref) {
		for _, id := range ids {
			var rec vmRecord
			if st.Read(id, &rec) == nil && rec.Workspace != nil && rec.Workspace.Name == ref {
				return id, nil
			}
		}
	}
	id, err := st.Resolve(ref)
	if errors.Is(err, errdefs.ErrNotFound) {
		return "", errdefs.New(errdefs.ErrNotFound, "list them with 'pyro workspace list'", "no workspace with id or name %q", ref)
	}
	return id, err
}

// lockNames serialises the choice of names: a create or an update checks
// that a name is free and writes it under this lock.
func (e *Engine) lockNames() (*state.Lock, error) {
	return state.LockFile(filepath.Join(e.opts.StateDir, "workspace-names.lock"))
}

// checkName refuses a malformed workspace name.
func checkName(name string) error {
	if !workspaceName.MatchString(name) || anID.MatchString(name) {
		return errdefs.New(errdefs.ErrInvalidArgument,
			"name it with 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit (and not 16 hex digits, which is an id)",
			"invalid workspace name %q", name)
	}
	return nil
}

// checkNewName refuses a malformed name, or one another workspace than
// self has. The caller holds lockNames.
func (e *Engine) checkNewName(name, self string) error {
	if err := checkName(name); err != nil {
		return err
	}
	ids, err := e.wss.IDs()
	if err != nil {
		return err
	}
	for _, id := range ids {
		var rec vmRecord
		if id != self && e.wss.Read(id, &rec) == nil && rec.Workspace != nil && rec.Workspace.Name == name {
			return errdefs.New(errdefs.ErrAlreadyExists, "pick another name, or rename that one with 'pyro workspace update'",
				"workspace %s is already named %q", id, name)
		}
	}
	return nil
}

// checkLabels refuses malformed labels.
func checkLabels(labels map[string]string) error {
	if len(labels) > maxLabels {
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("use at most %d labels", maxLabels), "%d labels", len(labels))
	}
	for k, v := range labels {
		if err := checkLabelKey(k); err != nil {
			return err
		}
		if len(v) > maxLabelValue || strings.ContainsFunc(v, unicode.IsControl) {
			return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("use a label value of at most %d printable characters", maxLabelValue),
				"invalid value for label %q", k)
		}
	}
	return nil
}

func checkLabelKey(k string) error {
	if !labelKey.MatchString(k) {
		return errdefs.New(errdefs.ErrInvalidArgument, "use a label key of letters, digits, '.', '_', '/' or '-', starting with a letter or digit",
			"invalid label key %q", k)
	}
	return nil
}

// UpdateWorkspace renames a workspace, sets or clears labels, or moves its
// expiry to ttl_seconds from now.
func (e *Engine) UpdateWorkspace(ctx context.Context, ref string, o api.WorkspaceUpdateOptions) (*api.Workspace, error) {
	defer e.enter()()
	np, err := updatePolicy(o)
	if err != nil {
		return nil, err
	}
	if o.Name == "" && len(o.Labels) == 0 && len(o.ClearLabels) == 0 && o.TTLSeconds == 0 && np == nil {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "give a new `name`, `labels` to set, `clear_labels`, `ttl_seconds` or `network_policy`", "nothing to update")
	}
	if o.Name != "" {
		if err := checkName(o.Name); err != nil {
			return nil, err
		}
	}
	if err := checkLabels(o.Labels); err != nil {
		return nil, err
	}
	for _, k := range o.ClearLabels {
		if err := checkLabelKey(k); err != nil {
			return nil, err
		}
		if _, ok := o.Labels[k]; ok {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "", "label %q is both set and cleared", k)
		}
	}
	if o.TTLSeconds < 0 || o.TTLSeconds > maxTTLSeconds {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("use a `ttl_seconds` from 1 to %d", maxTTLSeconds),
			"ttl_seconds %d is out of range", o.TTLSeconds)
	}
	id, err := e.resolve(e.wss, ref)
	if err != nil {
		return nil, err
	}
	if o.Name != "" {
		names, err := e.lockNames()
		if err != nil {
			return nil, err
		}
		defer names.Unlock()
		if err := e.checkNewName(o.Name, id); err != nil {
			return nil, err
		}
	}
	var out *vmRecord
	netNote := ""
	err = e.update(id, func(rec *vmRecord) error {
		if err := notDeleting(rec); err != nil {
			return err
		}
		if np != nil {
			if netNote, err = e.updateNetwork(ctx, rec, *np); err != nil {
				return err
			}
		}
		ws := rec.Workspace
		if o.Name != "" {
			ws.Name = o.Name
		}
		labels := map[string]string{}
		for k, v := range ws.Labels {
			labels[k] = v
		}
		for k, v := range o.Labels {
			labels[k] = v
		}
		for _, k := range o.ClearLabels {
			delete(labels, k)
		}
		if err := checkLabels(labels); err != nil {
			return err
		}
		ws.Labels = labels
		if len(labels) == 0 {
			ws.Labels = nil
		}
		now := time.Now().UTC().Truncate(time.Millisecond)
		if o.TTLSeconds > 0 {
			rec.TTLSeconds = o.TTLSeconds
			rec.ExpiresAt = now.Add(time.Duration(o.TTLSeconds) * time.Second)
		}
		ws.LastActivityAt = &now
		out = rec
		return nil
	})
	if err != nil {
		return nil, err
	}
	running, note := e.liveness(out)
	if netNote != "" {
		note = strings.TrimPrefix(note+"; "+netNote, "; ")
	}
	return e.livingView(ctx, out, running, note), nil
}

// ListWorkspacesWith lists the workspaces that have every label of o,
// the most recently active first, with their shell and service counts.
func (e *Engine) ListWorkspacesWith(ctx context.Context, o *api.WorkspaceListOptions) ([]*api.Workspace, error) {
	if o == nil {
		o = &api.WorkspaceListOptions{}
	}
	for k := range o.Labels {
		if err := checkLabelKey(k); err != nil {
			return nil, err
		}
	}
	all, err := list(e, e.wss, func(rec *vmRecord, running bool, note string) *api.Workspace {
		for k, v := range o.Labels {
			if rec.Workspace == nil || rec.Workspace.Labels[k] != v {
				return nil
			}
		}
		return e.livingView(ctx, rec, running, note)
	})
	if err != nil {
		return nil, err
	}
	out := slices.DeleteFunc(all, func(w *api.Workspace) bool { return w == nil })
	sort.SliceStable(out, func(i, j int) bool { return out[i].LastActivityAt.After(out[j].LastActivityAt) })
	return out, nil
}

// lastActivity is when the workspace was last used (its creation before).
func (r *vmRecord) lastActivity() time.Time {
	if ws := r.Workspace; ws != nil && ws.LastActivityAt != nil {
		return *ws.LastActivityAt
	}
	if r.StartedAt != nil && r.StartedAt.After(r.CreatedAt) {
		return *r.StartedAt
	}
	return r.CreatedAt
}

// touch records activity on workspace id, at most every touchThreshold.
func (e *Engine) touch(id string) {
	var rec vmRecord
	if e.wss.Read(id, &rec) != nil || time.Since(rec.lastActivity()) < touchThreshold {
		return
	}
	e.update(id, func(rec *vmRecord) error {
		now := time.Now().UTC().Truncate(time.Millisecond)
		rec.Workspace.LastActivityAt = &now
		return nil
	})
}

// setupLiving stores a new workspace's secrets and claims its name: the
// check that the name is free and the record that takes it are written
// under lockNames, so two creates cannot both have it.
func (e *Engine) setupLiving(rec *vmRecord, name string, vals []agentproto.Secret, metas []secretMeta) error {
	m, err := e.writeSecrets(rec.ID, vals, metas)
	if err != nil {
		return err
	}
	rec.Workspace.Secrets = m
	if name == "" {
		return e.wss.Write(rec.ID, rec)
	}
	names, err := e.lockNames()
	if err != nil {
		return err
	}
	defer names.Unlock()
	if err := e.checkNewName(name, rec.ID); err != nil {
		return err
	}
	rec.Workspace.Name = name
	return e.wss.Write(rec.ID, rec)
}
