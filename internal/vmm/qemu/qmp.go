package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// QMP is a connection to a running machine's monitor (QMPSocket in its
// runtime directory). QEMU serves one monitor client at a time, so hold it
// only for the commands at hand, under the VM's lock.
type QMP struct {
	c net.Conn
	r *bufio.Reader
	// migration holds the statuses of MIGRATION events read while
	// waiting for a command's answer, oldest first (nextMigration).
	migration []string
}

// DialQMP connects to the monitor of the machine whose runtime directory
// is dir and negotiates capabilities.
func DialQMP(ctx context.Context, dir string) (*QMP, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", filepath.Join(dir, QMPSocket))
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrUnavailable, err, "start the workspace again", "connecting to the VM's monitor")
	}
	q := &QMP{c: c, r: bufio.NewReader(c)}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(30 * time.Second))
	}
	if _, err := q.r.ReadBytes('\n'); err != nil { // greeting
		c.Close()
		return nil, errdefs.Wrap(errdefs.ErrUnavailable, err, "", "reading the monitor's greeting")
	}
	if err := q.Execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		c.Close()
		return nil, err
	}
	return q, nil
}

// Close ends the connection.
func (q *QMP) Close() error { return q.c.Close() }

// Execute runs one command and decodes its return value into out (may be
// nil). Asynchronous events in between are skipped.
func (q *QMP) Execute(ctx context.Context, cmd string, args, out any) error {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, _ := json.Marshal(req)
	if dl, ok := ctx.Deadline(); ok {
		q.c.SetDeadline(dl)
	}
	if _, err := q.c.Write(append(b, '\n')); err != nil {
		return errdefs.Wrap(errdefs.ErrUnavailable, err, "", "qmp %s", cmd)
	}
	return q.readReturn(ctx, cmd, out)
}

// readReturn reads the answer to cmd, skipping events, and decodes its
// return value into out (may be nil).
func (q *QMP) readReturn(ctx context.Context, cmd string, out any) error {
	for {
		line, err := q.r.ReadBytes('\n')
		if err != nil {
			return errdefs.Wrap(errdefs.ErrUnavailable, err, "", "qmp %s: reading the answer", cmd)
		}
		var resp struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class string `json:"class"`
				Desc  string `json:"desc"`
			} `json:"error"`
			Event string `json:"event"`
		}
		if err := json.Unmarshal(line, &resp); err != nil {
			return errdefs.Wrap(errdefs.ErrInternal, err, "", "qmp %s: decoding %q", cmd, line)
		}
		switch {
		case resp.Event != "":
			q.keepEvent(line)
			continue
		case resp.Error != nil:
			return errdefs.New(errdefs.ErrInternal, "", "qmp %s: %s: %s", cmd, resp.Error.Class, resp.Error.Desc)
		}
		if out != nil && len(resp.Return) > 0 {
			if err := json.Unmarshal(resp.Return, out); err != nil {
				return errdefs.Wrap(errdefs.ErrInternal, err, "", "qmp %s: decoding the return value", cmd)
			}
		}
		return nil
	}
}

// qmpEvent is the part of an asynchronous event pyro reads.
type qmpEvent struct {
	Event string `json:"event"`
	Data  struct {
		Status string `json:"status"`
	} `json:"data"`
}

// keepEvent keeps the status of a MIGRATION event for nextMigration.
func (q *QMP) keepEvent(line []byte) {
	var ev qmpEvent
	if json.Unmarshal(line, &ev) == nil && ev.Event == "MIGRATION" {
		q.migration = append(q.migration, ev.Data.Status)
	}
}

// nextMigration is the status of the next MIGRATION event (the migration
// capability "events" must be on): one kept while a command was answered,
// else the next one QEMU sends. It waits until ctx is done.
func (q *QMP) nextMigration(ctx context.Context) (string, error) {
	stop := context.AfterFunc(ctx, func() { q.c.SetReadDeadline(time.Now()) })
	defer stop()
	for len(q.migration) == 0 {
		line, err := q.r.ReadBytes('\n')
		if err != nil {
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			return "", errdefs.Wrap(errdefs.ErrUnavailable, err, "", "qmp: waiting for the migration's events")
		}
		q.keepEvent(line)
	}
	st := q.migration[0]
	q.migration = q.migration[1:]
	return st, nil
}

// DriveID is the -drive id (and QMP device name) of spec.Disks[i].
func DriveID(i int) string { return fmt.Sprintf("disk%d", i) }

// ExternalSnapshot moves a drive onto a new top image that already exists
// (created by the caller, its backing file naming the drive's current top).
type ExternalSnapshot struct {
	Device string // DriveID
	File   string // the new top's path
	Format string // "qcow2"
}

// SnapshotDrives switches every drive onto its new top in one QMP
// transaction of blockdev-snapshot-sync (mode "existing"): all drives
// move, or none does. The old tops stay open read-only as backing files.
func (q *QMP) SnapshotDrives(ctx context.Context, snaps []ExternalSnapshot) error {
	type action struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	}
	var actions []action
	for _, s := range snaps {
		actions = append(actions, action{Type: "blockdev-snapshot-sync", Data: map[string]any{
			"device": s.Device, "snapshot-file": s.File, "format": s.Format, "mode": "existing"}})
	}
	return q.Execute(ctx, "transaction", map[string]any{"actions": actions}, nil)
}

// ActiveFiles maps each drive to the file of its active (top) image.
func (q *QMP) ActiveFiles(ctx context.Context) (map[string]string, error) {
	var blocks []struct {
		Device   string `json:"device"`
		Inserted *struct {
			File string `json:"file"`
		} `json:"inserted"`
	}
	if err := q.Execute(ctx, "query-block", nil, &blocks); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, b := range blocks {
		if b.Inserted != nil {
			out[b.Device] = topFile(b.Inserted.File)
		}
	}
	return out, nil
}

// topFile is the file of an image's top layer in a query-block "file":
// a path, or, when the image's chain differs from what its header says
// (after a snapshot in mode "existing"), a "json:{...}" description whose
// outer "file" is the top's.
func topFile(f string) string {
	desc, ok := strings.CutPrefix(f, "json:")
	if !ok {
		return f
	}
	var d struct {
		File struct {
			Filename string `json:"filename"`
		} `json:"file"`
	}
	if json.Unmarshal([]byte(desc), &d) != nil {
		return f
	}
	return d.File.Filename
}
