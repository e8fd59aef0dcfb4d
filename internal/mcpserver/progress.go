package mcpserver

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/progress"
)

// notifier turns the progress of one tool call into MCP progress
// notifications: one for every report the engine makes (it already spaces
// counted ones 100 ms apart), and a heartbeat when nothing moved for a
// while. Values only increase, as the protocol requires: they count the
// phases of the call's operation done so far (total: its phase count).
type notifier struct {
	tool  string
	token any
	ss    *mcp.ServerSession
	start time.Time

	mu         sync.Mutex
	msg        string
	value      float64
	total      float64
	index      int // current phase of the call's own operation (1-based)
	op         string
	fresh      bool
	lastSent   time.Time
	sentValues float64
}

// track marks a call in flight and, when the client asked for progress,
// reports it: the returned context carries the receiver the engine reports
// to. stop ends the notifications before the result goes out.
func (s *Server) track(ctx context.Context, req *mcp.CallToolRequest, tool, what string) (context.Context, func()) {
	var token any
	if req != nil && req.Params != nil {
		token = req.Params.GetProgressToken()
	}
	if token == nil || req.Session == nil {
		return ctx, func() {}
	}
	n := &notifier{tool: tool, token: token, ss: req.Session, start: time.Now(), msg: what, fresh: true, sentValues: -1}
	kick := make(chan struct{}, 1)
	ctx = progress.WithFunc(ctx, func(p api.Progress) {
		n.update(p)
		select {
		case kick <- struct{}{}:
		default:
		}
	})
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		n.send(ctx, s, false)
		t := time.NewTicker(s.beat)
		defer t.Stop()
		for {
			select {
			case <-kick:
				n.send(ctx, s, false)
			case <-t.C:
				n.send(ctx, s, true)
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return ctx, func() {
		close(done)
		wg.Wait()
	}
}

// update records a report of the call's operation or of one it runs (the
// pull of a workspace create's environment).
func (n *notifier) update(p api.Progress) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.op == "" && p.PhaseCount > 0 {
		n.op = p.Op
	}
	frac := 0.0
	if p.Total > 0 {
		frac = min(0.99, float64(p.Done)/float64(p.Total)) // the phase ends with the next one
	}
	if p.Op == n.op {
		if p.PhaseCount > 0 {
			n.total = float64(p.PhaseCount)
		}
		if p.PhaseIndex > 0 {
			n.index = p.PhaseIndex
		}
		if p.Phase == api.PhaseDone {
			n.index, frac = int(n.total)+1, 0
		}
	}
	if v := float64(max(n.index, 1)-1) + frac; v > n.value {
		n.value = v
	}
	n.msg = n.tool + ": " + p.Message()
	n.fresh = true
}

// send notifies the latest state; a heartbeat only when nothing new was
// sent for a while.
func (n *notifier) send(ctx context.Context, s *Server, heartbeat bool) {
	n.mu.Lock()
	if heartbeat && (n.fresh || time.Since(n.lastSent) < s.beat/2) {
		n.mu.Unlock()
		return
	}
	if !n.fresh && !heartbeat {
		n.mu.Unlock()
		return
	}
	v := n.value
	if v <= n.sentValues {
		// Nothing moved: nudge the value up so that it still increases,
		// never reaching the total.
		if n.total > 0 {
			v = n.sentValues + (n.total-n.sentValues)*0.01
		} else {
			v = n.sentValues + 1
		}
		if v <= n.sentValues {
			n.mu.Unlock()
			return
		}
	}
	n.sentValues, n.value = v, max(n.value, v)
	n.fresh, n.lastSent = false, time.Now()
	params := &mcp.ProgressNotificationParams{ProgressToken: n.token, Progress: v, Total: n.total,
		Message: fmt.Sprintf("%s, %ds elapsed", n.msg, int(time.Since(n.start).Seconds()))}
	n.mu.Unlock()
	if err := n.ss.NotifyProgress(ctx, params); err != nil {
		s.log.Debug("progress notification", "err", err)
	}
}
