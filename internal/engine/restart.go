package engine

import (
	"context"
	"errors"
	"syscall"
)

// supervisorGone says a call could not reach the supervisor its record
// names: the socket is gone or refuses connections. Right after its VMM
// dies, a supervisor is still alive for a moment (so ensureRunning takes
// it for running) but no longer serves.
func supervisorGone(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
}

// restartGone boots workspace id again from its disk after a call found
// its supervisor gone: the dying one is killed first. The caller retries
// its call once on the returned record.
func (e *Engine) restartGone(ctx context.Context, id string) (*vmRecord, error) {
	lock, err := e.wss.Lock(id)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	var rec vmRecord
	if err := e.wss.Read(id, &rec); err != nil {
		return nil, err
	}
	if err := notDeleting(&rec); err != nil {
		return nil, err
	}
	e.log.Info("workspace's supervisor is gone: booting it again from its disk", "workspace_id", id)
	e.killProcesses(&rec)
	rec.SupervisorPID = 0
	if err := e.startLocked(ctx, &rec); err != nil {
		return nil, err
	}
	rec.Workspace.Restarts++
	if err := e.wss.Write(id, &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}
