#!/usr/bin/env bash
# Test the Python facade end to end: build a static pyro into a temp dir, point
# PYRO_BIN at it, run the unittest suite (real guests) and the example.
# The environment cache is the shared one ($PYRO_CACHE_DIR or ~/.cache/pyro);
# VM and workspace state go to private temp dirs that are removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

tmp="$(mktemp -d /tmp/pyro-pyt-XXXXXX)"
cleanup() {
  # Delete whatever a failing example left in its private state, then the dir.
  if [[ -n "${PYRO_BIN:-}" && -d "$tmp/s" ]]; then
    PYRO_STATE_DIR="$tmp/s" PYRO_RUNTIME_DIR="$tmp/r" "$PYTHON" - "$PYRO_BIN" <<'PY' || true
import json, subprocess, sys
b = sys.argv[1]
for kind, key, idk in (("workspace", "workspaces", "workspace_id"), ("vm", "vms", "vm_id")):
    out = subprocess.run([b, "--json", kind, "list"], capture_output=True, text=True).stdout
    for item in (json.loads(out or "{}").get(key) or []):
        subprocess.run([b, kind, "delete", item[idk]], capture_output=True)
PY
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

if [[ -z "${PYRO_BIN:-}" || "${PYRO_PY_REBUILD:-1}" == "1" ]]; then
  echo "== building pyro into $tmp"
  CGO_ENABLED=0 go build -o "$tmp/pyro" ./cmd/pyro
  export PYRO_BIN="$tmp/pyro"
fi
echo "== PYRO_BIN=$PYRO_BIN ($("$PYRO_BIN" --version))"
# Cold boots: the warm path is tested by the warm*.txtar scripts of cmd/pyro.
export PYRO_TEMPLATES="${PYRO_TEMPLATES:-off}"

echo "== python unittest (python/tests)"
"$PYTHON" -m unittest discover -s python/tests -t python/tests -v

echo "== examples/python_workspace.py"
mkdir -p "$tmp/s" "$tmp/r"
PYRO_STATE_DIR="$tmp/s" PYRO_RUNTIME_DIR="$tmp/r" PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}" \
  "$PYTHON" examples/python_workspace.py
left="$(PYRO_STATE_DIR="$tmp/s" PYRO_RUNTIME_DIR="$tmp/r" "$PYRO_BIN" workspace list --json | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["count"])')"
if [[ "$left" != "0" ]]; then
  echo "example left $left workspace(s) behind" >&2
  exit 1
fi
echo "== python: all passed"
