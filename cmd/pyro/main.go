// Command pyro runs commands for coding agents inside real microVMs.
package main

import (
	"os"

	"github.com/pyro-mcp/pyro/internal/agent"
	"github.com/pyro-mcp/pyro/internal/cli"
)

func main() {
	// The same static binary is the guest's /init, so host and agent always match.
	if os.Getpid() == 1 {
		agent.RunInit() // never returns
	}
	os.Exit(cli.Main(os.Args[1:]))
}
