package firecracker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// errTemporary marks a handshake failure worth retrying: the guest is
// still booting (no socket yet, nobody listening on the port, or
// Firecracker closed the connection without an answer).
var errTemporary = errors.New("temporary")

// handshakeTimeout bounds one CONNECT/OK exchange.
const handshakeTimeout = 2 * time.Second

// DialVsock connects to guest port through Firecracker's vsock unix socket
// at uds, following the documented host-initiated handshake: write
// "CONNECT <port>\n", read "OK <host_port>\n"; the connection is then the
// guest's stream. It retries only on temporary errors until ctx ends or
// done closes (the VMM exited).
func DialVsock(ctx context.Context, uds string, port uint32, done <-chan struct{}) (net.Conn, error) {
	delay := 5 * time.Millisecond
	for {
		c, err := dialVsockOnce(ctx, uds, port)
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, errTemporary) {
			return nil, err
		}
		select {
		case <-done:
			return nil, fmt.Errorf("firecracker exited before the guest accepted vsock port %d: %w", port, err)
		case <-ctx.Done():
			return nil, fmt.Errorf("vsock port %d: %w (last: %v)", port, ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 100*time.Millisecond)
	}
}

func dialVsockOnce(ctx context.Context, uds string, port uint32) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", uds)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return nil, fmt.Errorf("%w: %v", errTemporary, err)
		}
		return nil, err
	}
	dl := time.Now().Add(handshakeTimeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(dl) {
		dl = cd
	}
	_ = c.SetDeadline(dl)
	if _, err := fmt.Fprintf(c, "CONNECT %d\n", port); err != nil {
		c.Close()
		return nil, fmt.Errorf("%w: writing CONNECT: %v", errTemporary, err)
	}
	// Read byte by byte up to the newline: anything after it belongs to
	// the guest's stream and must not be swallowed by a buffer.
	line, err := readLine(c, 64)
	if err != nil {
		c.Close()
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF) {
			// Firecracker closes at once while nothing listens on the port.
			return nil, fmt.Errorf("%w: empty reply to CONNECT %d (guest not listening yet)", errTemporary, port)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, fmt.Errorf("%w: no reply to CONNECT %d", errTemporary, port)
		}
		return nil, fmt.Errorf("reading vsock handshake: %w", err)
	}
	f := strings.Fields(line)
	if len(f) != 2 || f[0] != "OK" {
		c.Close()
		return nil, fmt.Errorf("vsock handshake: unexpected reply %q to CONNECT %d", line, port)
	}
	if _, err := strconv.ParseUint(f[1], 10, 32); err != nil {
		c.Close()
		return nil, fmt.Errorf("vsock handshake: bad host port in %q", line)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

func readLine(r io.Reader, max int) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for len(b) < max {
		n, err := r.Read(one)
		if n == 1 {
			if one[0] == '\n' {
				return string(b), nil
			}
			b = append(b, one[0])
			continue
		}
		if err != nil {
			if err == io.EOF && len(b) > 0 {
				return "", io.ErrUnexpectedEOF
			}
			return "", err
		}
	}
	return "", fmt.Errorf("handshake line longer than %d bytes", max)
}

// ServeHandshake is the Firecracker side of the handshake, for tests and
// fakes: it reads "CONNECT <port>\n" from c and answers "OK <hostPort>\n".
func ServeHandshake(c net.Conn, hostPort uint32) (uint32, error) {
	line, err := readLine(c, 64)
	if err != nil {
		return 0, err
	}
	var port uint32
	if _, err := fmt.Sscanf(line, "CONNECT %d", &port); err != nil {
		return 0, fmt.Errorf("bad handshake %q", line)
	}
	_, err = fmt.Fprintf(c, "OK %d\n", hostPort)
	return port, err
}
