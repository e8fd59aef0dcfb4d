package agentproto_test

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/agentproto/fakeguest"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

func hostileClient(t *testing.T, b fakeguest.Behavior) (*agentproto.Client, *fakeguest.Conn) {
	t.Helper()
	host, guest := net.Pipe()
	g := fakeguest.Serve(t.Context(), guest, b)
	c, err := agentproto.NewClient(t.Context(), host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, g
}

// slowWriter is a consumer that cannot keep up.
type slowWriter struct{ n int64 }

func (w *slowWriter) Write(p []byte) (int, error) {
	time.Sleep(time.Millisecond)
	w.n += int64(len(p))
	return len(p), nil
}

// A guest that breaks the protocol costs the host a bounded amount of
// memory, and every call returns with an error (or, for harmless garbage,
// its answer).
func TestHostileGuest(t *testing.T) {
	// The live heap (what the host retains, fakeguest.Peaks): a
	// connection queues at most 16 MiB (a call 4 MiB of it), plus the
	// frames in hand; measured 20 MiB at most. Without the caps a flood
	// retains the guest's whole output (gigabytes here).
	const heapBound = 32 << 20
	tests := []struct {
		name      string
		guest     fakeguest.Behavior
		stdout    func() io.Writer
		timeout   time.Duration
		wantClass error  // nil: the call succeeds
		wantIn    string // in the error, or the stdout on success
		minSent   int64  // the guest must have pushed at least this much
	}{
		{"flood stdout, fast consumer", fakeguest.Flood(64<<10, agentproto.TypeStdout), func() io.Writer { return io.Discard }, 2 * time.Second, errdefs.ErrTimeout, "", 64 << 20},
		{"flood stderr, slow consumer", fakeguest.Flood(64<<10, agentproto.TypeStderr), func() io.Writer { return &slowWriter{} }, 2 * time.Second, errdefs.ErrTimeout, "", 1 << 20},
		{"flood of one-byte frames", fakeguest.Tiny, func() io.Writer { return io.Discard }, 2 * time.Second, errdefs.ErrTimeout, "", 4 << 10},
		// The queue fills (~64k frames of overhead) and then holds the
		// guest back instead of growing.
		{"one-byte frames, slow consumer", fakeguest.Tiny, func() io.Writer { return &slowWriter{} }, 2 * time.Second, errdefs.ErrTimeout, "", 4 << 10},
		{"never answers", fakeguest.Silent, nil, 300 * time.Millisecond, errdefs.ErrTimeout, "", 0},
		{"unknown types and stream ids", fakeguest.Garbage(agentproto.ExecResult{}), nil, 10 * time.Second, nil, "ok\n", 0},
		{"host-only frame type", fakeguest.HostOnly(agentproto.TypeData), nil, 10 * time.Second, errdefs.ErrUnavailable, "only the host may send", 0},
		{"oversized length", fakeguest.Oversized(1 << 31), nil, 10 * time.Second, errdefs.ErrUnavailable, "frame too large", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runtime.GC()
			goroutines := runtime.NumGoroutine()
			stop := fakeguest.Peaks()
			c, g := hostileClient(t, tt.guest)
			var out syncBuffer
			var stdout io.Writer = &out
			if tt.stdout != nil {
				stdout = tt.stdout()
			}
			ctx, cancel := context.WithTimeout(t.Context(), tt.timeout)
			defer cancel()
			r, err := c.Exec(ctx, agentproto.ExecRequest{Shell: "true"}, nil, stdout, stdout)
			peak, _ := stop()
			t.Logf("guest sent %d KiB; host live heap peak %d MiB", g.Sent()>>10, peak>>20)
			if peak > heapBound {
				t.Errorf("live heap peak %d MiB, bound %d MiB", peak>>20, heapBound>>20)
			}
			if g.Sent() < tt.minSent {
				t.Errorf("the guest sent only %d bytes: the flood did not happen", g.Sent())
			}
			if tt.wantClass == nil {
				if err != nil || out.String() != tt.wantIn {
					t.Fatalf("Exec = %+v, %v, stdout %q; want success with %q", r, err, out.String(), tt.wantIn)
				}
			} else if !errors.Is(err, tt.wantClass) || !strings.Contains(err.Error(), tt.wantIn) {
				t.Fatalf("err = %v, want %v containing %q", err, tt.wantClass, tt.wantIn)
			}
			c.Close()
			// Every goroutine the call and the client started is gone.
			deadline := time.Now().Add(5 * time.Second)
			for runtime.NumGoroutine() > goroutines+2 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := runtime.NumGoroutine(); n > goroutines+2 {
				t.Errorf("%d goroutines left, %d before", n, goroutines)
			}
		})
	}
}

// Output past the cap is cut on arrival and reported as truncated even when
// the guest claims it was not.
func TestHostCapsOutput(t *testing.T) {
	const max = 1000
	c, _ := hostileClient(t, func(ctx context.Context, g *fakeguest.Conn, req agentproto.Frame) {
		for i := 0; i < 10; i++ {
			g.Write(agentproto.Frame{Type: agentproto.TypeStdout, Stream: req.Stream, Payload: []byte(strings.Repeat("o", 300))})
			g.Write(agentproto.Frame{Type: agentproto.TypeStderr, Stream: req.Stream, Payload: []byte("e")})
		}
		g.Respond(req.Stream, agentproto.ExecResult{})
	})
	var out, errb syncBuffer
	r, err := c.Exec(t.Context(), agentproto.ExecRequest{Shell: "x", MaxOutput: max}, nil, &out, &errb)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.String()) != max || !r.StdoutTruncated {
		t.Errorf("stdout %d bytes, truncated %v; want %d, true", len(out.String()), r.StdoutTruncated, max)
	}
	if errb.String() != strings.Repeat("e", 10) || r.StderrTruncated {
		t.Errorf("stderr %q, truncated %v", errb.String(), r.StderrTruncated)
	}
}

func TestOutputBuffer(t *testing.T) {
	tests := []struct {
		name      string
		max       int
		writes    []string
		want      string
		truncated bool
	}{
		{"under", 5, []string{"ab", "c"}, "abc", false},
		{"exact", 3, []string{"ab", "c"}, "abc", false},
		{"over in one write", 3, []string{"abcd"}, "abc", true},
		{"over across writes", 3, []string{"ab", "cd", "e"}, "abc", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := agentproto.OutputBuffer{Max: tt.max}
			for _, w := range tt.writes {
				if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if b.String() != tt.want || b.Truncated() != tt.truncated {
				t.Fatalf("got %q truncated=%v, want %q %v", b.String(), b.Truncated(), tt.want, tt.truncated)
			}
		})
	}
}
