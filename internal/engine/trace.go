package engine

import (
	"context"
	"log/slog"
	"time"
)

// Timing of the steps of a start (issue 18's warm-start targets): each
// step logs, at debug level, how long it took, as
//
//	level=DEBUG msg=timing step=disk ms=3.2
//
// so that `pyro run --log-level debug ENV -- true` shows where the time
// of a run goes. The supervisor's own steps (QEMU start, restore, the
// agent's identity) come back in its ready report and are logged the
// same way, prefixed "supervisor.". Nothing is measured when debug
// logging is off.

// timed starts timing step; the returned func logs its duration.
func (e *Engine) timed(step string) func() {
	if !e.log.Enabled(context.Background(), slog.LevelDebug) {
		return func() {}
	}
	t := time.Now()
	return func() { e.logTiming(step, time.Since(t)) }
}

func (e *Engine) logTiming(step string, d time.Duration) {
	e.log.Debug("timing", "step", step, "ms", msOf(d))
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
