// Command pyro runs commands for coding agents inside real microVMs.
package main

import (
	"os"

	"github.com/pyro-mcp/pyro/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
