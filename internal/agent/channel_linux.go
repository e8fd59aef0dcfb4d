package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/internal/agentproto"
)

// serveVirtioSerial serves the host on the virtio-serial port named name.
// While no host is connected read() returns EOF at once, so it reopens
// the port after a short sleep rather than spinning.
func serveVirtioSerial(log *slog.Logger, h *Handler, name string) error {
	dev, err := findVirtioPort(name, 15*time.Second)
	if err != nil {
		return err
	}
	for {
		f, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("opening %s: %w", dev, err)
		}
		began := time.Now()
		err = agentproto.Serve(context.Background(), f, h)
		if err != nil && !errors.Is(err, io.EOF) {
			log.Warn("connection ended", "err", err)
		}
		if time.Since(began) < time.Second {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func findVirtioPort(name string, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		ents, _ := os.ReadDir("/sys/class/virtio-ports")
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join("/sys/class/virtio-ports", e.Name(), "name"))
			if err != nil || strings.TrimSpace(string(b)) != name {
				continue
			}
			dev := "/dev/" + e.Name()
			if _, err := os.Stat(dev); err != nil {
				// No node yet (devtmpfs normally makes it): make one from sysfs.
				if mm, err := os.ReadFile(filepath.Join("/sys/class/virtio-ports", e.Name(), "dev")); err == nil {
					var maj, min uint32
					fmt.Sscanf(strings.TrimSpace(string(mm)), "%d:%d", &maj, &min)
					unix.Mknod(dev, unix.S_IFCHR|0o600, int(unix.Mkdev(maj, min)))
				}
			}
			if _, err := os.Stat(dev); err == nil {
				return dev, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no virtio-serial port named %s within %s (is virtio_console loaded?)", name, wait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func serveVsock(log *slog.Logger, h *Handler, port uint32) error {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("vsock socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: port}); err != nil {
		return fmt.Errorf("vsock bind port %d: %w", port, err)
	}
	if err := unix.Listen(fd, 8); err != nil {
		return fmt.Errorf("vsock listen: %w", err)
	}
	for {
		nfd, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("vsock accept: %w", err)
		}
		f := os.NewFile(uintptr(nfd), "vsock")
		go func() {
			if err := agentproto.Serve(context.Background(), f, h); err != nil {
				log.Warn("vsock connection ended", "err", err)
			}
		}()
	}
}
