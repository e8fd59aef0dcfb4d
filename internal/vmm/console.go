package vmm

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// ConsoleMaxBytes bounds a VM's console log on the host by default. A
// guest writes to its serial console as fast as it likes (root in the
// guest can flood /dev/ttyS0 for the VM's whole life), so the file keeps
// the most recent output only: once it reaches the cap it is rewritten to
// its last half. $PYRO_CONSOLE_MAX_BYTES (at least 64 KiB) sets another.
const ConsoleMaxBytes = 4 << 20

// ConsoleCap is the cap in force: $PYRO_CONSOLE_MAX_BYTES, else
// ConsoleMaxBytes.
func ConsoleCap() int64 {
	if n, err := strconv.ParseInt(os.Getenv("PYRO_CONSOLE_MAX_BYTES"), 10, 64); err == nil && n >= 64<<10 {
		return n
	}
	return ConsoleMaxBytes
}

// Console copies what a VMM writes (the guest's console, or the VMM's own
// log where the guest can make it talk) into a capped log file. The VMM
// gets the write end of a pipe (Writer), or opens a FIFO (StartLogFIFO);
// the copy runs until the VMM exited.
type Console struct {
	w    *os.File // pipe write end; nil for a FIFO
	r    *os.File
	done chan struct{}
}

// StartConsole opens (appending to) the log at path, kept under max bytes
// (0 means ConsoleCap()), and starts copying into it.
func StartConsole(path string, max int64) (*Console, error) {
	if max <= 0 {
		max = ConsoleCap()
	}
	log, err := openRing(path, max)
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		log.f.Close()
		return nil, err
	}
	c := &Console{w: w, r: r, done: make(chan struct{})}
	go c.copy(log)
	return c, nil
}

// StartLogFIFO makes a FIFO at fifo (owned by uid:gid when uid >= 0, for a
// jailed VMM) for a VMM to open as its log file, and copies what arrives
// into the capped log at path. A VMM that opens its log non-blocking (as
// Firecracker does) drops lines rather than wait when the FIFO is full.
// Call Stop once the VMM exited.
func StartLogFIFO(fifo, path string, max int64, uid, gid int) (*Console, error) {
	if max <= 0 {
		max = ConsoleCap()
	}
	_ = os.Remove(fifo)
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		return nil, fmt.Errorf("creating log fifo: %w", err)
	}
	if uid >= 0 {
		if err := os.Chown(fifo, uid, gid); err != nil {
			return nil, fmt.Errorf("chown log fifo: %w", err)
		}
	}
	log, err := openRing(path, max)
	if err != nil {
		return nil, err
	}
	// Read-write: this end never sees EOF while the VMM has not opened
	// the FIFO yet, and never blocks opening it.
	r, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		log.f.Close()
		return nil, fmt.Errorf("opening log fifo: %w", err)
	}
	c := &Console{r: r, done: make(chan struct{})}
	go c.copy(log)
	return c, nil
}

func (c *Console) copy(log *ring) {
	defer close(c.done)
	defer c.r.Close()
	defer log.f.Close()
	_, _ = io.CopyBuffer(log, c.r, make([]byte, 32<<10))
}

// Stop ends the copy once the VMM exited: what is still buffered is read
// for a moment, then the reading end is closed.
func (c *Console) Stop() {
	if c.w != nil {
		c.w.Close()
	}
	_ = c.r.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	select {
	case <-c.done:
	case <-time.After(2 * time.Second):
	}
}

// Writer is the end to hand to the VMM (as its stdout, or an inherited
// descriptor). The caller closes its own copy with CloseWriter once the VMM
// holds it; the copy then ends by itself when the VMM exits.
func (c *Console) Writer() *os.File { return c.w }

// CloseWriter closes this process's copy of the write end.
func (c *Console) CloseWriter() { c.w.Close() }

// Done is closed once the copy ended (the VMM exited and all was written).
func (c *Console) Done() <-chan struct{} { return c.done }

// ring is an append-only file that keeps its last max bytes.
type ring struct {
	path    string
	f       *os.File
	size    int64
	max     int64
	dropped int64
}

func openRing(path string, max int64) (*ring, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening console log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	g := &ring{path: path, f: f, size: fi.Size(), max: max}
	if g.size > max {
		if err := g.rotate(); err != nil {
			f.Close()
			return nil, err
		}
	}
	return g, nil
}

// Write appends p, rotating first when it would pass the cap. It never
// reports an error to the copy loop (a full disk must not stall the
// guest's console): what cannot be written is dropped.
func (g *ring) Write(p []byte) (int, error) {
	n := len(p)
	if int64(len(p)) > g.max/2 {
		g.dropped += int64(len(p)) - g.max/2
		p = p[int64(len(p))-g.max/2:]
	}
	if g.size+int64(len(p)) > g.max {
		if err := g.rotate(); err != nil {
			g.dropped += int64(len(p))
			return n, nil
		}
	}
	if k, err := g.f.Write(p); err == nil {
		g.size += int64(k)
	}
	return n, nil
}

// rotate replaces the file by its last half behind a line that says how
// much was dropped, through a temp file and a rename, so that a reader
// (the engine's tail of the console) always sees a whole file.
func (g *ring) rotate() error {
	keep := g.max / 2
	in, err := os.Open(g.path)
	if err != nil {
		return err
	}
	defer in.Close()
	start := max(g.size-keep, 0)
	if _, err := in.Seek(start, io.SeekStart); err != nil {
		return err
	}
	g.dropped += start
	tmp, err := os.CreateTemp(filepath.Dir(g.path), ".console-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	head := fmt.Sprintf("[pyro: %d earlier bytes of console output dropped; the log keeps the last %d]\n", g.dropped, g.max)
	n, err := io.WriteString(tmp, head)
	if err == nil {
		var m int64
		m, err = io.Copy(tmp, in)
		n += int(m)
	}
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if err != nil {
		tmp.Close()
		return err
	}
	if err := os.Rename(tmp.Name(), g.path); err != nil {
		tmp.Close()
		return err
	}
	g.f.Close()
	g.f, g.size = tmp, int64(n)
	// The temp file was opened O_RDWR at offset n: appends continue there.
	return nil
}
