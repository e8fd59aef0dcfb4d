// Command pyro-agent is pyro's guest agent. As PID 1 in a microVM it sets
// the guest up and serves the host (see internal/agent). Run any other way
// it serves one host connection on stdin/stdout, rooted at /, which is
// handy for debugging the protocol; --version prints the release and the
// protocol it speaks. Built beside pyro (a few MB against pyro's ~27), it
// is the guest's /init: pyro finds it there (internal/initramfs.FindAgent)
// when it is of the same release. Without it the pyro binary itself is the
// agent: it does the same when it finds itself PID 1.
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/pyro-mcp/pyro/internal/agent"
	"github.com/pyro-mcp/pyro/internal/agentproto"
)

func main() {
	if os.Getpid() == 1 {
		agent.RunInit() // never returns
	}
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		fmt.Println(agentproto.AgentVersion())
		return
	}
	rw := struct {
		io.Reader
		io.Writer
		io.Closer
	}{os.Stdin, os.Stdout, os.Stdin}
	if err := agentproto.Serve(context.Background(), rw, agent.NewHandler(agent.Config{})); err != nil {
		fmt.Fprintln(os.Stderr, "pyro-agent:", err)
		os.Exit(1)
	}
}
