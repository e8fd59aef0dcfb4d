// Package progress carries the progress of long operations from where the
// work happens (the engine, the catalog) to whoever shows it (the CLI's
// live line, the MCP server's notifications, the Go SDK's callbacks).
//
// The report itself is the public api.Progress. Receivers travel in the
// context, so that concurrent calls on one engine (an MCP server) each hear
// only about their own work; an operation also reports to one fixed
// receiver of its package's choosing (the SDK's Options.Progress).
//
//	ctx = progress.WithFunc(ctx, show)
//	ctx, op := progress.Start(ctx, "workspace create", nil, "environment", "disk", "boot", "seed")
//	op.Phase("boot")
//	op.Count(api.UnitFiles, 4000, 10000)
//	op.Done()
package progress

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/pyro-mcp/pyro/api"
)

// Func receives progress reports. It must return quickly and be safe to
// call from several goroutines.
type Func func(api.Progress)

type funcsKey struct{}
type opKey struct{}

// WithFunc returns a context whose operations also report to f.
func WithFunc(ctx context.Context, f Func) context.Context {
	if f == nil {
		return ctx
	}
	fs, _ := ctx.Value(funcsKey{}).([]Func)
	return context.WithValue(ctx, funcsKey{}, append(slices.Clip(fs), f))
}

// countEvery bounds how often Count reports within one phase: a seed of
// 10,000 files should not make 10,000 notifications.
const countEvery = 100 * time.Millisecond

// Op is one operation in progress. Its methods are safe for concurrent use.
type Op struct {
	mu      sync.Mutex
	funcs   []Func
	phases  []string
	start   time.Time
	cur     api.Progress
	lastCnt time.Time
}

// Start begins the operation name, with its phases in order when known, and
// returns a context carrying it (From finds it there) for the code that does
// the work. Reports go to the receivers of ctx and to also (if not nil).
func Start(ctx context.Context, name string, also Func, phases ...string) (context.Context, *Op) {
	fs, _ := ctx.Value(funcsKey{}).([]Func)
	o := &Op{funcs: slices.Clone(fs), phases: phases, start: time.Now(), cur: api.Progress{Op: name}}
	if also != nil {
		o.funcs = append(o.funcs, also)
	}
	return context.WithValue(ctx, opKey{}, o), o
}

// From returns the operation ctx carries, or a discarding one.
func From(ctx context.Context) *Op {
	if o, ok := ctx.Value(opKey{}).(*Op); ok {
		return o
	}
	return &Op{start: time.Now()}
}

// Elapsed is the time since Start.
func (o *Op) Elapsed() time.Duration { return time.Since(o.start) }

// Describe sets the environment and object every later report names.
func (o *Op) Describe(environment, id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if environment != "" {
		o.cur.Environment = environment
	}
	if id != "" {
		o.cur.ID = id
	}
}

// Phase enters a phase, forgetting the previous one's step and count, and
// reports it.
func (o *Op) Phase(name string) { o.PhaseStep(name, "") }

// PhaseStep enters a phase at a given step and reports it.
func (o *Op) PhaseStep(name, step string) {
	o.mu.Lock()
	o.cur.Phase, o.cur.Step = name, step
	o.cur.Unit, o.cur.Done, o.cur.Total = "", 0, 0
	o.cur.PhaseIndex, o.cur.PhaseCount = 0, 0
	if i := slices.Index(o.phases, name); i >= 0 {
		o.cur.PhaseIndex, o.cur.PhaseCount = i+1, len(o.phases)
	}
	o.lastCnt = time.Time{}
	p := o.stamp()
	o.mu.Unlock()
	o.send(p)
}

// Count reports how far the current phase is: done of total in unit
// (total 0 when unknown). Reports closer together than 100 ms are dropped,
// except the first and the last (done == total).
func (o *Op) Count(unit string, done, total int64) {
	o.mu.Lock()
	o.cur.Unit, o.cur.Done, o.cur.Total = unit, done, total
	now := time.Now()
	if !o.lastCnt.IsZero() && now.Sub(o.lastCnt) < countEvery && (total == 0 || done < total) {
		o.mu.Unlock()
		return
	}
	o.lastCnt = now
	p := o.stamp()
	o.mu.Unlock()
	o.send(p)
}

// Report sends p as this operation's: its Op, environment, id and elapsed
// time are filled in, and it becomes the current phase. For code that
// builds whole reports (the catalog's pulls).
func (o *Op) Report(p api.Progress) {
	o.mu.Lock()
	p.Op = o.cur.Op
	if p.Environment == "" {
		p.Environment = o.cur.Environment
	}
	if p.ID == "" {
		p.ID = o.cur.ID
	}
	if i := slices.Index(o.phases, p.Phase); i >= 0 {
		p.PhaseIndex, p.PhaseCount = i+1, len(o.phases)
	}
	if p.Phase == o.cur.Phase && p.Step == o.cur.Step && p.Unit != "" {
		now := time.Now()
		if !o.lastCnt.IsZero() && now.Sub(o.lastCnt) < countEvery && (p.Total == 0 || p.Done < p.Total) {
			o.cur = p
			o.mu.Unlock()
			return
		}
		o.lastCnt = now
	} else {
		o.lastCnt = time.Time{}
	}
	o.cur = p
	p = o.stamp()
	o.mu.Unlock()
	o.send(p)
}

// Done reports the end of the operation.
func (o *Op) Done() { o.Phase(api.PhaseDone) }

// Current returns the latest report, with the elapsed time brought up to now.
func (o *Op) Current() api.Progress {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.stamp()
}

func (o *Op) stamp() api.Progress {
	p := o.cur
	p.ElapsedMs = time.Since(o.start).Milliseconds()
	return p
}

func (o *Op) send(p api.Progress) {
	for _, f := range o.funcs {
		f(p)
	}
}
