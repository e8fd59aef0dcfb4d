// Command bench measures the figures pyro's issues name, all in one run, and
// prints them as a Markdown report with the ratios the targets are stated in.
//
//	CGO_ENABLED=0 go build -o bin/pyro ./cmd/pyro
//	go run ./bench                      # env, vm and workspace suites
//	go run ./bench -suites vm -n 200    # one suite
//	go run ./bench -suites exec         # issue 19's exec figures alone (part of workspace)
//	go run ./bench -suites env -build   # include from-scratch environment builds (minutes)
//
// It uses the real pyro binary (bin/pyro, or -pyro) for end-to-end figures
// and the engine in-process for round trips, with its own state and runtime
// directories, and the user's environment cache (so debian:12 and
// debian:12-base are pulled once).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

type benchEnv struct {
	pyro     string
	work     string // scratch directory
	stateDir string
	runDir   string
	n        int
	build    bool
	profile  string // -profile: where the datapath suite writes CPU profiles
	density  int    // -density: workspaces the density suite starts
	report   *report
}

func main() {
	suites := flag.String("suites", "env,vm,workspace,datapath,snapshot,faces,living,files,warm", "comma-separated suites: env, vm, workspace, exec, datapath, snapshot, faces, living, files, warm; also density, peer and peer-image (not in the default set)")
	pyro := flag.String("pyro", "bin/pyro", "the pyro binary to measure (static build)")
	n := flag.Int("n", 200, "round trips for latency figures")
	profile := flag.String("profile", "", "datapath suite: write CPU profiles of the client, supervisor and guest agent to this directory")
	density := flag.Int("density", 10, "density suite: idle workspaces to start from one template (stops at 80% of RAM in use)")
	build := flag.Bool("build", false, "env suite: also time from-scratch builds of every environment (slow)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	abs, err := filepath.Abs(*pyro)
	if err != nil {
		fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		fatal(fmt.Errorf("%s not found: build it with CGO_ENABLED=0 go build -o bin/pyro ./cmd/pyro", abs))
	}
	if *profile != "" {
		if *profile, err = filepath.Abs(*profile); err != nil {
			fatal(err)
		}
	}
	work, err := os.MkdirTemp("", "pyro-bench-")
	if err != nil {
		fatal(err)
	}
	defer os.RemoveAll(work)
	b := &benchEnv{pyro: abs, work: work, stateDir: filepath.Join(work, "state"), runDir: filepath.Join(work, "run"), n: *n, build: *build, profile: *profile, density: *density, report: &report{}}
	// Every pyro this process starts, in-process or not, uses the bench's
	// own state; environments come from the normal cache.
	os.Setenv("PYRO_STATE_DIR", b.stateDir)
	os.Setenv("PYRO_RUNTIME_DIR", b.runDir)
	os.Setenv("PYRO_BIN", abs)
	os.Setenv("PYRO_AGENT_BIN", abs)

	host, _ := os.Hostname()
	b.report.line("# pyro bench — %s on %s (%d CPUs)\n", time.Now().UTC().Format(time.RFC3339), host, numCPU())
	for _, s := range strings.Split(*suites, ",") {
		var err error
		switch strings.TrimSpace(s) {
		case "env":
			err = b.envSuite(ctx)
		case "vm":
			err = b.vmSuite(ctx)
		case "workspace":
			err = b.workspaceSuite(ctx)
		case "exec":
			err = b.execSuite(ctx)
		case "datapath":
			err = b.datapathSuite(ctx)
		case "snapshot":
			err = b.snapshotSuite(ctx)
		case "faces":
			err = b.facesSuite(ctx)
		case "files":
			err = b.filesSuite(ctx)
		case "living":
			err = b.livingSuite(ctx)
		case "warm":
			err = b.warmSuite(ctx)
		case "density":
			err = b.densitySuite(ctx)
		case "peer":
			err = b.peerSuite(ctx)
		case "peer-image":
			err = b.peerImage(ctx)
		default:
			err = fmt.Errorf("unknown suite %q", s)
		}
		if err != nil {
			b.report.line("\n**suite %s failed:** %v\n", s, err)
		}
	}
	// Leave nothing running.
	exec.Command(abs, "vm", "reap").Run()
	fmt.Print(b.report.String())
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

type report struct{ strings.Builder }

func (r *report) line(format string, args ...any) {
	fmt.Fprintf(&r.Builder, format, args...)
	fmt.Fprintf(os.Stderr, format, args...)
}

// pyroCmd runs the pyro binary and returns its stdout.
func (b *benchEnv) pyroCmd(ctx context.Context, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, b.pyro, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("pyro %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// timeIt runs f n times and returns the durations sorted.
func timeIt(n int, f func() error) ([]time.Duration, error) {
	ds := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		t := time.Now()
		if err := f(); err != nil {
			return nil, err
		}
		ds = append(ds, time.Since(t))
	}
	slices.Sort(ds)
	return ds, nil
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := int(float64(len(ds)-1) * p)
	return ds[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func mbps(bytes int64, d time.Duration) float64 {
	return float64(bytes) / 1e6 / d.Seconds()
}

func numCPU() int {
	data, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(data), "processor\t:")
}

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}
