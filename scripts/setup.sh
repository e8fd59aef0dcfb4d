#!/usr/bin/env bash
# Set up a Debian/Ubuntu host for pyro, build it, and run its main job:
# boot a real microVM and run `git --version` inside it.
#   ./scripts/setup.sh            # as root, or with sudo available
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(qemu-system-x86 qemu-utils passt mmdebstrap e2fsprogs docker-registry zstd cpio ca-certificates python3 busybox-static)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

echo "[setup] building bin/pyro" >&2
mkdir -p bin
CGO_ENABLED=0 go build -trimpath -o bin/pyro ./cmd/pyro

bin/pyro doctor >&2 || true
# The main job: pulls (or builds) debian:12 on first use, boots it, runs git.
bin/pyro run debian:12 -- git --version
