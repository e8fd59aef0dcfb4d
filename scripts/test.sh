#!/usr/bin/env bash
# Run every test: unit tests, and end-to-end tests that boot real guests
# through the real pyro binary. Environments are built once and shared
# through pyro's cache (the one ./scripts/setup.sh filled).
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=0
go vet ./...
go test -count=1 -timeout 40m ./... "$@"
# The Python facade and its example, against real guests.
python/run_tests.sh
