package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/sys/unix"
)

func init() {
	// jsonfield FIELD VAR: set $VAR to the top-level FIELD of the JSON on stdout.
	scriptCmdRegistry["jsonfield"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: jsonfield FIELD VAR")
		}
		var obj map[string]any
		if err := json.Unmarshal([]byte(ts.ReadFile("stdout")), &obj); err != nil {
			ts.Fatalf("stdout is not a JSON object: %v", err)
		}
		v, ok := obj[args[0]]
		if !ok {
			ts.Fatalf("no field %q in stdout", args[0])
		}
		ts.Setenv(args[1], fmt.Sprint(v))
	}
	// sigrun SIGNAL: send SIGNAL (INT, TERM, ...) to this script's
	// `pyro run` processes, as a terminal or a process manager would.
	scriptCmdRegistry["sigrun"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: sigrun SIGNAL")
		}
		signalPyro(ts, "run", args[0])
	}
	// waitpast FIELD: wait until the time in FIELD (RFC 3339) of the JSON
	// object on stdout has passed, e.g. a VM's expires_at.
	scriptCmdRegistry["waitpast"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: waitpast FIELD")
		}
		var obj map[string]any
		if err := json.Unmarshal([]byte(ts.ReadFile("stdout")), &obj); err != nil {
			ts.Fatalf("stdout is not a JSON object: %v", err)
		}
		at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(obj[args[0]]))
		ts.Check(err)
		if d := time.Until(at); d > time.Minute {
			ts.Fatalf("%s is %s away", args[0], d)
		}
		for !time.Now().After(at) {
			time.Sleep(time.Until(at) + time.Millisecond)
		}
	}
	// sleep DURATION: pause the script.
	scriptCmdRegistry["sleep"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: sleep DURATION")
		}
		d, err := time.ParseDuration(args[0])
		ts.Check(err)
		time.Sleep(d)
	}
	// waitrunning: wait until some VM of this script is running (booted).
	scriptCmdRegistry["waitrunning"] = func(ts *testscript.TestScript, neg bool, args []string) {
		// The deadline only guards against a hang: boots under TCG on a
		// loaded host take far longer than the ~3 s of an idle one.
		deadline := time.Now().Add(5 * time.Minute)
		for time.Now().Before(deadline) {
			recs, _ := filepath.Glob(filepath.Join(ts.Getenv("PYRO_STATE_DIR"), "*", "*", "record.json"))
			for _, r := range recs {
				data, _ := os.ReadFile(r)
				if strings.Contains(string(data), `"state": "running"`) {
					return
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		ts.Fatalf("no VM reached the running state")
	}
	// loopback-secret: listen on 127.0.0.1 and answer every connection with
	// a secret; export its port as $LOOPBACK_PORT.
	scriptCmdRegistry["loopback-secret"] = func(ts *testscript.TestScript, neg bool, args []string) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		ts.Check(err)
		ts.Defer(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				fmt.Fprint(c, "HTTP/1.0 200 OK\r\n\r\nHOST-LOOPBACK-SECRET\n")
				c.Close()
			}
		}()
		ts.Setenv("LOOPBACK_PORT", fmt.Sprint(l.Addr().(*net.TCPAddr).Port))
	}
}

// signalPyro sends SIGNAL (INT, TERM, ...) to this script's `pyro VERB`
// processes (found by their PYRO_STATE_DIR), as a terminal would.
func signalPyro(ts *testscript.TestScript, verb, signal string) {
	sig := unix.SignalNum("SIG" + signal)
	if sig == 0 {
		ts.Fatalf("unknown signal %s", signal)
	}
	mine := "PYRO_STATE_DIR=" + ts.Getenv("PYRO_STATE_DIR") + "\x00"
	n := 0
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		env, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if strings.HasSuffix(strings.SplitN(string(cmd), "\x00", 2)[0], "pyro") &&
			strings.Contains(string(cmd), "\x00"+verb+"\x00") && strings.Contains(string(env), mine) {
			pid, _ := strconv.Atoi(e.Name())
			unix.Kill(pid, sig)
			n++
		}
	}
	if n == 0 {
		ts.Fatalf("no pyro %s process of this script", verb)
	}
}
