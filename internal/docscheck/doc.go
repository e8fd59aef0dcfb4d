// Package docscheck keeps the documentation honest. Its test parses every
// `pyro ...` command line in README.md and docs/ against the real command
// tree, and checks that every name of the public contract (CLI commands and
// flags, Go SDK methods, Python methods, MCP tools and their arguments) is
// both in docs/public-contract.md and in the code.
package docscheck
