// Package version holds pyro's version, reported by `pyro --version`, the
// guest agent's handshake and the MCP server.
package version

// Version is overridden at link time with -ldflags "-X ...version.Version=...".
var Version = "2.4.0"
