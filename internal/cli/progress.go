package cli

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/pyro-mcp/pyro/api"
)

// progressView shows one command's progress on stderr, never on stdout. On
// a terminal it draws a live line (progressbar): a bar with rate and time
// left when the total is known, a spinner with the elapsed seconds when it
// is not; the line is cleared when the work is done or the guest command
// starts writing. Elsewhere (a pipe, CI=true, --json) it prints one plain
// line per phase and step, so that logs stay greppable.
type progressView struct {
	mu    sync.Mutex
	w     io.Writer
	live  bool
	width int // of the terminal

	// live
	bar     *progressbar.ProgressBar
	key     string
	stopped bool // the guest command runs: its output owns the terminal

	// plain
	last string
}

func (a *App) newProgressView() *progressView {
	v := &progressView{w: a.Stderr, width: 80}
	if f, ok := a.Stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) && !a.JSON && os.Getenv("CI") == "" {
		v.live = true
		if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 0 {
			v.width = w
		}
	}
	return v
}

// show takes one report; it is a pyro.Options.Progress.
func (v *progressView) show(p api.Progress) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.live {
		v.draw(p)
	} else {
		v.plain(p)
	}
}

// plain prints a line when the phase or step changes; of a counted step,
// only its first and last report.
func (v *progressView) plain(p api.Progress) {
	key := p.Op + "\x00" + p.Phase + "\x00" + p.Step
	if key == v.last && (p.Unit == "" || p.Total == 0 || p.Done < p.Total) {
		return
	}
	v.last = key
	fmt.Fprintln(v.w, p.String())
}

func (v *progressView) draw(p api.Progress) {
	if v.stopped {
		return
	}
	switch p.Phase {
	case "exec":
		v.clear()
		v.stopped = true
		return
	case api.PhaseDone:
		v.clear()
		return
	}
	key := fmt.Sprint(p.Op, "\x00", p.Phase, "\x00", p.Step, "\x00", p.Unit, "\x00", p.Total > 0)
	if key != v.key {
		v.clear()
		v.key = key
		v.bar = newBar(v.w, p, v.width)
		_ = v.bar.RenderBlank()
	}
	if p.Unit != "" {
		_ = v.bar.Set64(p.Done)
	}
}

func newBar(w io.Writer, p api.Progress, width int) *progressbar.ProgressBar {
	desc := p.Activity()
	if p.Op != "pull" && p.Op != "push" {
		desc = p.Op + ": " + desc
		if p.PhaseCount > 0 {
			desc = fmt.Sprintf("%s %d/%d: %s", p.Op, p.PhaseIndex, p.PhaseCount, p.Activity())
		}
	}
	// A line that wraps could not be cleared: the bar, counts, rate and
	// times take ~65 columns, a spinner and its seconds ~12.
	room := width - 12
	if p.Total > 0 {
		room = width - 65
	}
	if room = max(room, 16); len(desc) > room {
		desc = desc[:room-1] + "…"
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionThrottle(80 * time.Millisecond),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionUseIECUnits(true),
	}
	max := int64(-1)
	switch {
	case p.Total > 0:
		max = p.Total
		opts = append(opts, progressbar.OptionSetWidth(24), progressbar.OptionSetPredictTime(true))
		if p.Unit == api.UnitBytes {
			opts = append(opts, progressbar.OptionShowBytes(true))
		} else {
			opts = append(opts, progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString(p.Unit))
		}
	default:
		opts = append(opts, progressbar.OptionSpinnerType(14), progressbar.OptionSetPredictTime(false))
		if p.Unit == api.UnitBytes {
			opts = append(opts, progressbar.OptionShowBytes(true))
		} else if p.Unit != "" {
			opts = append(opts, progressbar.OptionShowCount(), progressbar.OptionSetItsString(p.Unit))
		}
	}
	return progressbar.NewOptions64(max, opts...)
}

// clear removes the live line, if any.
func (v *progressView) clear() {
	if v.bar != nil {
		_ = v.bar.Finish()
		v.bar = nil
	}
	v.key = ""
}

// finish removes the live line; call it before printing the result.
func (v *progressView) finish() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.clear()
}

// output wraps a writer the guest command's output goes to (stdout or
// stderr of the terminal) so that the live line is gone before it.
func (v *progressView) output(w io.Writer) io.Writer {
	return writerFunc(func(b []byte) (int, error) {
		v.mu.Lock()
		if v.bar != nil {
			v.clear()
		}
		v.stopped = v.live
		v.mu.Unlock()
		return w.Write(b)
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
