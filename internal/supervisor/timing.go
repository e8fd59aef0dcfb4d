package supervisor

import (
	"sort"
	"time"

	"github.com/pyro-mcp/pyro/internal/vmm"
)

// Timing is one step of a start and its duration.
type Timing struct {
	Step string  `json:"step"`
	Ms   float64 `json:"ms"`
}

// stepTimer records the steps of a start.
type stepTimer struct {
	last  time.Time
	steps []Timing
}

func newStepTimer() *stepTimer { return &stepTimer{last: time.Now()} }

// done ends step at now.
func (t *stepTimer) done(step string) {
	now := time.Now()
	t.steps = append(t.steps, Timing{Step: step, Ms: ms(now.Sub(t.last))})
	t.last = now
}

// add records the steps a machine timed itself (vmm backends that
// implement startSteps), in name order.
func (t *stepTimer) add(m vmm.Machine) {
	s, ok := m.(startSteps)
	if !ok {
		return
	}
	steps := s.StartSteps()
	names := make([]string, 0, len(steps))
	for n := range steps {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		t.steps = append(t.steps, Timing{Step: n, Ms: ms(steps[n])})
	}
}

// startSteps is a machine that says how long the steps of its start took
// (QEMU's: process, monitor, restore).
type startSteps interface {
	StartSteps() map[string]time.Duration
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
