// Command init is a minimal PID 1 for the backend's boot test: it prints a
// marker and the kernel arguments it received on the serial console, then
// reboots, which with reboot=t and -no-reboot ends QEMU cleanly.
package main

import (
	"os"
	"strings"
	"syscall"
)

func main() {
	_ = os.MkdirAll("/dev", 0o755)
	_ = syscall.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	if f, err := os.OpenFile("/dev/ttyS0", os.O_WRONLY, 0); err == nil {
		f.WriteString("PYRO-TEST-INIT-OK args=" + strings.Join(os.Environ(), ",") + "\n")
		f.Sync()
		f.Close()
	}
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_RESTART)
}
