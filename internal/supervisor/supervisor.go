// Package supervisor owns the long-lived per-VM process that sits between
// the guest and every pyro process that talks to it.
//
// The guest agent's channel (virtio-serial here) accepts one host connection
// and a guest reading it sees EOF while nobody is connected, so one process
// must hold that connection for the VM's whole life. The supervisor does: it
// starts the VMM through a vmm.Backend, performs the protocol handshake with
// the guest, reports readiness to whoever spawned it, then listens on a unix
// socket where any number of clients speak the same agentproto protocol. It
// relays frames, remapping each client's stream ids to ids unique on the
// guest connection, and cancels a client's open streams when it disconnects.
// When the VMM exits (power-off, crash, kill -9) the supervisor exits too.
package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"sync"
	"time"

	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// Ready is what the supervisor reports to its parent once the guest
// answered the handshake (OK) or booting failed (Error). A failure keeps
// its class (ErrorCode, an errdefs code) and its hint across the process
// boundary: Failed builds one from an error and Err turns it back.
type Ready struct {
	OK        bool             `json:"ok"`
	Error     string           `json:"error,omitempty"`
	ErrorCode string           `json:"error_code,omitempty"`
	Hint      string           `json:"hint,omitempty"`
	BootMs    int64            `json:"boot_ms"`
	VMMPid    int              `json:"vmm_pid"`
	Kind      vmm.Kind         `json:"kind,omitempty"`  // the backend that booted the guest
	Accel     string           `json:"accel,omitempty"` // "kvm", "tcg" or ""
	Guest     agentproto.Hello `json:"guest"`
	// Start is how the guest came up: "cold" (booted), "warm" (a
	// template's clone) or "resume" (a suspended machine's own state).
	Start string `json:"start,omitempty"`
	// Restored is set when a restore failed: the caller may boot cold.
	Restored bool `json:"restore_failed,omitempty"`
	// Identity is what the restored guest reported once given its own.
	Identity *agentproto.IdentityResult `json:"identity,omitempty"`
	// Timings are how long the steps of the start took, in order (the
	// engine logs them at debug level).
	Timings []Timing `json:"timings,omitempty"`
}

// Failed is the report of a boot that failed with err.
func Failed(err error) Ready {
	return Ready{Error: err.Error(), ErrorCode: errdefs.Code(err), Hint: errdefs.HintOf(err)}
}

// Err is the failure r reports, with its class and hint, or nil.
func (r *Ready) Err() error {
	if r.OK {
		return nil
	}
	return errdefs.New(errdefs.FromCode(r.ErrorCode), r.Hint, "%s", r.Error)
}

// Config tells Run what to boot and where to listen.
type Config struct {
	Spec        vmm.MachineSpec
	ControlSock string        // unix socket clients connect to
	BootTimeout time.Duration // handshake deadline
	ExpiresAt   time.Time     // zero: never; past it the guest is powered off
	Software    string        // our Hello.Software
	Logger      *slog.Logger
	// Identity is given to a restored guest (Spec.Restore set) before
	// anything else, and before Run reports ready; its entropy and clock
	// are filled in then.
	Identity *agentproto.IdentityRequest
	// Recheck, when set, is asked once ExpiresAt has passed: it returns
	// when to ask again (a TTL extended since, or a guest still busy), or
	// the zero time to power the guest off now.
	Recheck func(ctx context.Context) time.Time
	// NetSock, when set, is where the guest network's control socket
	// listens (netctl.go), for machines with pyro's own network stack.
	NetSock string
	// Before are steps the caller timed before Run (the supervisor
	// process's own start): they lead the ready report's Timings.
	Before []Timing
}

// startKind names how a machine of spec comes up.
func startKind(spec vmm.MachineSpec) string {
	switch {
	case spec.Restore == nil:
		return "cold"
	case spec.Restore.IgnoreShared:
		return "warm"
	}
	return "resume"
}

// Run boots the machine, reports on ready (closed after one JSON line), and
// serves until the VMM exits. It returns nil when the guest powered off.
func Run(ctx context.Context, b vmm.Backend, cfg Config, ready io.WriteCloser) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	restoring := cfg.Spec.Restore != nil
	report := func(r Ready) {
		if ready == nil {
			return
		}
		r.Start = startKind(cfg.Spec)
		r.Restored = !r.OK && restoring
		data, _ := json.Marshal(r)
		ready.Write(append(data, '\n'))
		ready.Close()
		ready = nil
	}
	start := time.Now()
	steps := newStepTimer()
	steps.steps = append(steps.steps, cfg.Before...)
	bootCtx, cancel := context.WithTimeout(ctx, cfg.BootTimeout)
	defer cancel()

	m, err := b.Start(bootCtx, cfg.Spec)
	if err != nil {
		if errdefs.ClassOf(err) == errdefs.ErrInternal {
			err = errdefs.Wrap(errdefs.ErrUnavailable, err, "", "starting the vmm")
		}
		report(Failed(err))
		return fmt.Errorf("starting vmm: %w", err)
	}
	steps.done("vmm")
	steps.add(m)
	exited := make(chan error, 1)
	go func() { exited <- m.Wait() }()

	conn, hello, err := connectGuest(bootCtx, m, cfg.Software, exited)
	if err != nil {
		m.Kill()
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			err = errdefs.New(errdefs.ErrTimeout, "", "guest did not answer within %s", cfg.BootTimeout)
		case errdefs.ClassOf(err) == errdefs.ErrInternal:
			err = errdefs.Wrap(errdefs.ErrUnavailable, err, "", "guest did not answer")
		}
		report(Failed(err))
		return err
	}
	steps.done("handshake")
	var identity *agentproto.IdentityResult
	if restoring {
		req := agentproto.IdentityRequest{}
		if cfg.Identity != nil {
			req = *cfg.Identity
		}
		if identity, err = giveIdentity(bootCtx, conn, req); err != nil {
			m.Kill()
			err = errdefs.Wrap(errdefs.ErrUnavailable, err, "", "giving the restored guest its identity")
			report(Failed(err))
			return err
		}
		steps.done("identity")
	}
	bootMs := time.Since(start).Milliseconds()

	os.Remove(cfg.ControlSock)
	ln, err := net.Listen("unix", cfg.ControlSock)
	if err != nil {
		m.Kill()
		report(Failed(errdefs.Wrap(errdefs.ErrInternal, err, "", "listening on control socket")))
		return err
	}
	defer os.Remove(cfg.ControlSock)
	defer serveNet(cfg.NetSock, m, log)()

	r := newRouter(conn, hello, log)
	if restoring {
		r.next = identityStream
	}
	go r.readGuest()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go r.serveClient(c)
		}
	}()
	caps := b.Capabilities()
	steps.done("listen")
	report(Ready{OK: true, BootMs: bootMs, VMMPid: m.Pid(), Kind: caps.Kind, Accel: caps.Accel, Guest: hello, Identity: identity, Timings: steps.steps})
	log.Info("guest ready", "boot_ms", bootMs, "vmm_pid", m.Pid(), "start", startKind(cfg.Spec))

	var ttl <-chan time.Time
	if !cfg.ExpiresAt.IsZero() {
		t := time.NewTimer(time.Until(cfg.ExpiresAt))
		defer t.Stop()
		ttl = t.C
	}
	for {
		select {
		case err := <-exited:
			ln.Close()
			r.close()
			log.Info("vmm exited", "err", err)
			return nil
		case <-ttl:
			if cfg.Recheck != nil {
				if next := cfg.Recheck(ctx); !next.IsZero() {
					log.Info("ttl reached but the guest is still needed", "next_check", next)
					ttl = time.After(max(time.Until(next), time.Second))
					continue
				}
			}
			log.Info("ttl reached: powering the guest off")
			r.shutdownGuest()
			go func() {
				time.Sleep(10 * time.Second)
				m.Kill()
			}()
			ttl = nil
		case <-ctx.Done():
			log.Info("supervisor signalled: powering the guest off")
			r.shutdownGuest()
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				m.Kill()
				<-exited
			}
			ln.Close()
			r.close()
			return ctx.Err()
		}
	}
}

// connectGuest gets the agent stream and performs the handshake.
func connectGuest(ctx context.Context, m vmm.Machine, software string, exited <-chan error) (io.ReadWriteCloser, agentproto.Hello, error) {
	type result struct {
		conn  io.ReadWriteCloser
		hello agentproto.Hello
		err   error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := m.AgentConn(ctx)
		if err != nil {
			done <- result{err: err}
			return
		}
		h, _ := json.Marshal(agentproto.Hello{Proto: agentproto.Version, Software: software})
		if err := agentproto.WriteFrame(conn, agentproto.Frame{Type: agentproto.TypeHello, Payload: h}); err != nil {
			conn.Close()
			done <- result{err: fmt.Errorf("sending handshake: %w", err)}
			return
		}
		for {
			f, err := agentproto.ReadFrame(conn)
			if err != nil {
				conn.Close()
				done <- result{err: fmt.Errorf("reading handshake: %w", err)}
				return
			}
			if f.Type != agentproto.TypeHello {
				continue
			}
			var hello agentproto.Hello
			if err := json.Unmarshal(f.Payload, &hello); err != nil {
				conn.Close()
				done <- result{err: fmt.Errorf("decoding guest handshake: %w", err)}
				return
			}
			if hello.Proto != agentproto.Version {
				conn.Close()
				done <- result{err: fmt.Errorf("guest agent %q speaks protocol %d, this pyro speaks %d: rebuild the initramfs with this pyro", hello.Software, hello.Proto, agentproto.Version)}
				return
			}
			done <- result{conn: conn, hello: hello}
			return
		}
	}()
	select {
	case r := <-done:
		return r.conn, r.hello, r.err
	case err := <-exited:
		return nil, agentproto.Hello{}, fmt.Errorf("vmm exited during boot: %v", err)
	case <-ctx.Done():
		return nil, agentproto.Hello{}, ctx.Err()
	}
}

// route is one client stream relayed to the guest.
type route struct {
	c     *client
	local uint32
	// maxOut is the most stdout (and stderr) the relay passes on for this
	// stream: the request's own cap plus one byte, so that the client, which
	// enforces the cap itself, can tell that output was cut.
	maxOut int64
	seen   *[2]int64 // guarded by readGuest (its only user)
}

type router struct {
	log    *slog.Logger
	hello  agentproto.Hello
	guest  io.ReadWriteCloser
	in     *agentproto.FrameReader
	gw     sync.Mutex // serialises writes to the guest
	mu     sync.Mutex
	next   uint32
	routes map[uint32]route
	conns  map[*client]bool
	closed bool
}

type client struct {
	conn    net.Conn
	wmu     sync.Mutex
	streams map[uint32]uint32 // local -> global, guarded by router.mu
	gone    bool
}

func newRouter(guest io.ReadWriteCloser, hello agentproto.Hello, log *slog.Logger) *router {
	return &router{log: log, hello: hello, guest: guest, in: agentproto.NewFrameReader(guest),
		routes: map[uint32]route{}, conns: map[*client]bool{}}
}

func (r *router) toGuest(f agentproto.Frame) error {
	r.gw.Lock()
	defer r.gw.Unlock()
	return agentproto.WriteFrame(r.guest, f)
}

func (r *router) shutdownGuest() {
	r.mu.Lock()
	r.next++
	id := r.next
	r.mu.Unlock()
	req, _ := json.Marshal(agentproto.Request{Method: agentproto.MethodShutdown})
	r.toGuest(agentproto.Frame{Type: agentproto.TypeRequest, Stream: id, Payload: req})
}

// readGuest relays guest frames to the client that owns their stream. A slow
// client delays every stream (head-of-line blocking): clients are pyro's own
// processes that read continuously, so this is accepted for simplicity. It
// holds one frame at a time whatever the guest sends: frames for unknown
// streams, of types a guest must not send, and output past a stream's cap
// are dropped here; an oversized frame header ends the guest connection.
// A relayed frame is not copied: its header is rewritten in front of its
// payload, in the buffer it was read into.
func (r *router) readGuest() {
	for {
		f, err := r.in.Next()
		if err != nil {
			r.log.Info("guest connection closed", "err", err)
			r.close()
			return
		}
		r.relayGuest(f)
		f.Release()
	}
}

// relayGuest passes one guest frame to its client, or drops it.
func (r *router) relayGuest(f agentproto.Frame) {
	if f.Stream == 0 {
		return
	}
	switch f.Type {
	case agentproto.TypeStdout, agentproto.TypeStderr, agentproto.TypeResponse:
	default:
		// Host-only or unknown types: not the guest's to send; the
		// client would fail the call on the former, so never relay them.
		r.log.Debug("dropping guest frame", "type", f.Type, "stream", f.Stream)
		return
	}
	r.mu.Lock()
	rt, ok := r.routes[f.Stream]
	gone := ok && rt.c.gone
	if ok && f.Type == agentproto.TypeResponse {
		delete(r.routes, f.Stream)
		delete(rt.c.streams, rt.local)
	}
	r.mu.Unlock()
	if !ok || gone {
		return
	}
	if f.Type != agentproto.TypeResponse && !rt.admit(&f) {
		return
	}
	f.Stream = rt.local
	rt.c.wmu.Lock()
	err := agentproto.WriteFrame(rt.c.conn, f)
	rt.c.wmu.Unlock()
	if err != nil {
		rt.c.conn.Close()
	}
}

// admit trims an output frame to the route's cap; false when nothing is
// left to relay.
func (rt route) admit(f *agentproto.Frame) bool {
	i := 0
	if f.Type == agentproto.TypeStderr {
		i = 1
	}
	room := rt.maxOut - rt.seen[i]
	if room <= 0 {
		return false
	}
	if int64(len(f.Payload)) > room {
		f.Payload = f.Payload[:room]
	}
	rt.seen[i] += int64(len(f.Payload))
	return len(f.Payload) > 0
}

// outputCap is the relay's cap for a request: the protocol's own bound
// for its method (agentproto.OutputCap: an exec's max_output or the
// default, a file read's max_bytes, ...) plus one byte; a shell attach
// streams a terminal for as long as it lasts, uncapped; other methods
// (shell reads, service logs) get the default, so that a guest cannot make
// them carry more.
func outputCap(payload []byte) int64 {
	var req agentproto.Request
	if json.Unmarshal(payload, &req) != nil {
		return agentproto.DefaultMaxOutput + 1
	}
	if req.Method == agentproto.MethodShellAttach {
		return math.MaxInt64 // a terminal's output, for as long as it is attached
	}
	return agentproto.OutputCap(req) + 1
}

func (r *router) serveClient(conn net.Conn) {
	c := &client{conn: conn, streams: map[uint32]uint32{}}
	defer func() {
		conn.Close()
		r.mu.Lock()
		c.gone = true
		delete(r.conns, c)
		var open []uint32
		for _, g := range c.streams {
			open = append(open, g)
		}
		r.mu.Unlock()
		// A client that went away mid-request (Ctrl-C, crash) must not leave
		// its commands running in the guest.
		for _, g := range open {
			r.toGuest(agentproto.Frame{Type: agentproto.TypeCancel, Stream: g})
		}
	}()
	in := agentproto.NewFrameReader(conn)
	first, err := in.Next()
	if err != nil || first.Type != agentproto.TypeHello {
		return
	}
	h, _ := json.Marshal(r.hello)
	c.wmu.Lock()
	err = agentproto.WriteFrame(conn, agentproto.Frame{Type: agentproto.TypeHello, Payload: h})
	c.wmu.Unlock()
	if err != nil {
		return
	}
	var theirs agentproto.Hello
	if json.Unmarshal(first.Payload, &theirs) != nil || theirs.Proto != r.hello.Proto {
		return
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.conns[c] = true
	r.mu.Unlock()
	for {
		f, err := in.Next()
		if err != nil {
			return
		}
		err = r.relayClient(c, f)
		f.Release()
		if err != nil {
			return
		}
	}
}

// relayClient passes one client frame to the guest under its global
// stream id (opening the stream on a request), or drops it.
func (r *router) relayClient(c *client, f agentproto.Frame) error {
	if f.Stream == 0 {
		return nil
	}
	r.mu.Lock()
	g, ok := c.streams[f.Stream]
	if f.Type == agentproto.TypeRequest {
		if ok {
			r.mu.Unlock()
			return nil // a stream id may be opened once
		}
		r.next++
		g = r.next
		c.streams[f.Stream] = g
		r.routes[g] = route{c: c, local: f.Stream, maxOut: outputCap(f.Payload), seen: new([2]int64)}
		ok = true
	}
	r.mu.Unlock()
	if !ok {
		return nil
	}
	f.Stream = g
	return r.toGuest(f)
}

func (r *router) close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	conns := r.conns
	r.conns = map[*client]bool{}
	r.mu.Unlock()
	r.guest.Close()
	for c := range conns {
		c.conn.Close()
	}
}
