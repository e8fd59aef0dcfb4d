package agent

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"time"

	"golang.org/x/sys/unix"
)

// BenchChannelArg is the kernel argument that turns the guest into bench/'s
// bound for the host-guest channel: instead of serving pyro's protocol, the
// agent moves raw bytes over the virtio-serial port with blocking reads and
// writes and nothing else, the way `cat port > /dev/null` would.
const BenchChannelArg = "pyro_bench_channel=1"

// Bench channel commands: the host sends one byte (BenchSink or
// BenchSource) and a big-endian uint64 count. For BenchSink the guest reads
// and discards that many bytes, then answers one byte; for BenchSource it
// writes that many zero bytes.
const (
	BenchSink   = 'W' // host -> guest
	BenchSource = 'R' // guest -> host
)

// benchChannel serves bench commands until the host hangs up, then powers
// off. It never returns.
func benchChannel(log *slog.Logger) {
	defer func() {
		unix.Reboot(offCmd)
		select {}
	}()
	dev, err := findVirtioPort("pyro.agent", 15*time.Second)
	if err != nil {
		log.Error("bench channel", "err", err)
		return
	}
	buf := make([]byte, 1<<20)
	for {
		fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			log.Error("bench channel", "err", err)
			return
		}
		served, err := benchServe(fd, buf)
		unix.Close(fd)
		if served {
			if err != nil && !errors.Is(err, io.EOF) {
				log.Error("bench channel", "err", err)
			}
			return
		}
		// No host yet: the port reads EOF until one connects.
		time.Sleep(20 * time.Millisecond)
	}
}

// benchServe runs commands on fd; served says whether any arrived.
func benchServe(fd int, buf []byte) (served bool, err error) {
	for {
		var cmd [9]byte
		if err := benchReadFull(fd, cmd[:]); err != nil {
			return served, err
		}
		served = true
		n := int64(binary.BigEndian.Uint64(cmd[1:]))
		switch cmd[0] {
		case BenchSink:
			for n > 0 {
				k, err := unix.Read(fd, buf[:min(int64(len(buf)), n)])
				if err != nil {
					return served, err
				}
				if k == 0 {
					return served, io.ErrUnexpectedEOF
				}
				n -= int64(k)
			}
			if err := benchWriteAll(fd, []byte{1}); err != nil {
				return served, err
			}
		case BenchSource:
			clear(buf)
			for n > 0 {
				k := min(int64(len(buf)), n)
				if err := benchWriteAll(fd, buf[:k]); err != nil {
					return served, err
				}
				n -= k
			}
		default:
			return served, errors.New("unknown bench command")
		}
	}
}

func benchReadFull(fd int, p []byte) error {
	for len(p) > 0 {
		k, err := unix.Read(fd, p)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if k == 0 {
			return io.EOF
		}
		p = p[k:]
	}
	return nil
}

func benchWriteAll(fd int, p []byte) error {
	for len(p) > 0 {
		k, err := unix.Write(fd, p)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		p = p[k:]
	}
	return nil
}

// BenchProfileArg makes the agent profile itself on request, for bench/
// (see internal/benchprof), into BenchProfilePath.
const BenchProfileArg = "pyro_bench_pprof=1"

// BenchProfilePath is where the agent writes its CPU profile, for an exec
// of `cat` to fetch.
const BenchProfilePath = "/run/pyro-agent.pprof"
