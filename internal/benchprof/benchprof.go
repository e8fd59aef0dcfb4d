// Package benchprof lets bench/ take CPU profiles of pyro's long-lived
// processes (the guest agent, a VM's supervisor) while a workload runs:
// SIGUSR1 starts a profile, SIGUSR2 stops it and writes it to a file. It
// is off unless bench asks for it (a pyro_bench_pprof=1 kernel argument
// for the agent, PYRO_BENCH_PPROF=1 in a supervisor's environment).
package benchprof

import (
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

// EnvVar, set to 1, makes a supervisor serve profiles.
const EnvVar = "PYRO_BENCH_PPROF"

// Enabled reports whether this process's environment asks for profiles.
func Enabled() bool { return os.Getenv(EnvVar) == "1" }

// Serve answers SIGUSR1 and SIGUSR2 for ever, writing each profile to path
// (through a temporary file, so that a reader never sees half of one).
func Serve(path string, log *slog.Logger) {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2)
	var f *os.File
	for s := range sig {
		switch {
		case s == syscall.SIGUSR1 && f == nil:
			var err error
			if f, err = os.Create(path + ".tmp"); err == nil {
				if err = pprof.StartCPUProfile(f); err != nil {
					f.Close()
				}
			}
			if err != nil {
				log.Warn("bench profile", "err", err)
				f = nil
			}
		case s == syscall.SIGUSR2 && f != nil:
			pprof.StopCPUProfile()
			f.Close()
			if err := os.Rename(path+".tmp", path); err != nil {
				log.Warn("bench profile", "err", err)
			}
			f = nil
		}
	}
}
