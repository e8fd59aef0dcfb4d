#!/usr/bin/env bash
# Set up the bench's peer suite (issue 18): gVisor (runsc) through podman,
# running a Debian 12 root made by mmdebstrap and imported into podman.
# Idempotent; not run by CI. Only the host apt's own Debian mirror is used:
# the packages come through apt, and the bench's Go code gives mmdebstrap
# the mirror read from the host's apt configuration (internal/aptsource).
#   ./scripts/peer-setup.sh       # as root, or with sudo available
#   go run ./bench -suites peer   # then
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(podman runsc mmdebstrap)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[peer-setup] installing: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
fi

if [ ! -x bin/pyro ]; then
  echo "[peer-setup] building bin/pyro" >&2
  mkdir -p bin
  CGO_ENABLED=0 go build -trimpath -o bin/pyro ./cmd/pyro
fi

# The image: a tarball from mmdebstrap (debian:12-base's variant and packages, from the
# host apt's mirror), imported by `podman import`, unless podman has it.
# Root is needed: podman and runsc run rootful here (see bench/README.md).
echo "[peer-setup] making the peer image (skipped if podman has it)" >&2
$sudo env "PATH=$PATH" CGO_ENABLED=0 go run ./bench -suites peer-image >/dev/null

# A smoke test: one gVisor container.
$sudo podman --cgroup-manager=cgroupfs --events-backend=file run --rm --network=none \
  --runtime=runsc --runtime-flag=network=none localhost/pyro-bench-debian12:latest true
echo "[peer-setup] ready: go run ./bench -suites peer" >&2
