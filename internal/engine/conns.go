package engine

import (
	"context"
	"sync"

	"github.com/pyro-mcp/pyro/internal/agentproto"
)

// agentConns keeps one connection to each running VM's supervisor for the
// engine's life, so that a caller that keeps its engine (the Go SDK, the
// MCP server) does not connect and shake hands again for every command. A
// connection that broke, or that leads to a supervisor that was replaced
// since (a restarted workspace), is noticed before use and replaced.
type agentConns struct {
	mu sync.Mutex
	m  map[string]agentConn // by VM id
}

type agentConn struct {
	c   *agentproto.Client
	pid int // the supervisor it leads to
}

func (a agentConn) alive(pid int) bool {
	if a.c == nil || a.pid != pid {
		return false
	}
	select {
	case <-a.c.Done():
		return false
	default:
		return true
	}
}

// agent returns a connection to rec's supervisor shared by the engine's
// callers (agentproto.Client is safe for concurrent use). The caller must
// not close it.
func (e *Engine) agent(ctx context.Context, rec *vmRecord) (*agentproto.Client, error) {
	e.conns.mu.Lock()
	cur := e.conns.m[rec.ID]
	e.conns.mu.Unlock()
	if cur.alive(rec.SupervisorPID) {
		return cur.c, nil
	}
	c, err := e.dial(ctx, rec)
	if err != nil {
		return nil, err
	}
	e.conns.mu.Lock()
	defer e.conns.mu.Unlock()
	if cur := e.conns.m[rec.ID]; cur.alive(rec.SupervisorPID) {
		c.Close() // another caller got there first
		return cur.c, nil
	} else if cur.c != nil {
		cur.c.Close()
	}
	if e.conns.m == nil {
		e.conns.m = map[string]agentConn{}
	}
	e.conns.m[rec.ID] = agentConn{c: c, pid: rec.SupervisorPID}
	return c, nil
}
