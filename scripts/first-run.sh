#!/usr/bin/env bash
# Regenerate docs/first-run.md by really running a first session with pyro on
# this machine: every block in that file is the output this script captured
# (stdout and stderr interleaved, as a terminal shows them), and section 6 is
# a text capture of the live progress line under a pseudo-terminal (script(1),
# from util-linux).
#
#   ./scripts/first-run.sh                 # builds bin/pyro, writes docs/first-run.md
#   PYRO_BIN=/path/to/pyro ./scripts/first-run.sh
#   FIRST_RUN_FRESH_CACHE=1 ./scripts/first-run.sh   # pull into an empty cache (builds debian:12: minutes)
#   FIRST_RUN_OUT=/tmp/first-run.md ./scripts/first-run.sh
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
out=${FIRST_RUN_OUT:-$repo/docs/first-run.md}

if [ -z "${PYRO_BIN:-}" ]; then
  echo "[first-run] building bin/pyro" >&2
  mkdir -p bin
  CGO_ENABLED=0 go build -trimpath -o bin/pyro ./cmd/pyro || exit 1
  PYRO_BIN=$repo/bin/pyro
fi
# The transcript shows `pyro ...`, so put the binary on PATH under that name.
bindir=$(mktemp -d /tmp/pyro-first-run-bin.XXXXXX)
work=$(mktemp -d /tmp/pyro-first-run.XXXXXX)
cleanup() {
  # A workspace left behind by a failed step is deleted, never leaked.
  [ -n "${ws:-}" ] && pyro workspace delete "$ws" >/dev/null 2>&1
  rm -rf "$bindir" "$work"
}
trap cleanup EXIT
ln -s "$(readlink -f "$PYRO_BIN")" "$bindir/pyro"
export PATH="$bindir:$PATH"
if [ "${FIRST_RUN_FRESH_CACHE:-}" = 1 ]; then
  export PYRO_CACHE_DIR=$work/cache
fi
cd "$work"

body=$(mktemp /tmp/pyro-first-run-body.XXXXXX)
trap 'cleanup; rm -f "$body"' EXIT
say() { printf '%s\n' "$@" >>"$body"; }

# step 'shown command' [real command...]: runs the command (by default the
# shown one, through bash) and appends "$ shown" plus its output to the body.
step() {
  local shown=$1
  shift
  echo "[first-run] \$ $shown" >&2
  local rc
  {
    printf '$ %s\n' "$shown"
    if [ $# -gt 0 ]; then "$@" 2>&1; else bash -c "$shown" 2>&1; fi
    rc=$?
    [ "$rc" -eq 0 ] || printf '[exit status %d]\n' "$rc"
  } >>"$body"
  return 0
}
fence() { say '```'"${1:-}"; }

# --- the session -----------------------------------------------------------

say "## 1. Can this host run pyro?" ""
say "\`pyro doctor\` probes every way pyro can run a guest and says which one it will use. Here /dev/kvm" \
  "exists but cannot run a standard guest (a nested-virtualisation quirk), so pyro falls back to QEMU's" \
  "software emulation (TCG): everything works, boots take a few seconds." ""
fence console; step "pyro doctor"; fence; say ""

say "## 2. Environments" ""
say "The catalog, then pulling the default environment. A pull that finds the environment already in the" \
  "cache says so (\`source: cache\`); the very first pull downloads it from the configured registry or builds it" \
  "from Debian's archive with mmdebstrap (about a minute), showing progress on stderr." ""
fence console; step "pyro env list"; say ""; step "pyro env pull debian:12"; fence; say ""

say "## 3. One command in a fresh microVM" ""
say "\`pyro run\` boots a VM, runs the command, streams its output, prints a one-line summary on stderr and" \
  "deletes the VM. Its exit status is the guest command's." ""
fence console; step "pyro run debian:12 -- git --version"; fence; say ""

say "## 4. The demo" ""
if pyro demo --help >/dev/null 2>&1; then
  say "\`pyro demo\` shows the whole product in one command." ""
  fence console; step "pyro demo"; fence; say ""
else
  say "> **Placeholder.** \`pyro demo\` is not in this build yet. Re-run \`./scripts/first-run.sh\` once it" \
    "> ships and this section is filled with its real output." ""
fi

say "## 5. A persistent workspace" ""
say "A small project on the host:" ""
mkdir -p my-project
printf '# my-project\nA tiny project seeded into a pyro workspace.\n' >my-project/README.md
printf 'set -e\necho "in $(pwd) on $(uname -sr)"\necho "files:" $(find . -type f | sort)\n' >my-project/test.sh
fence console; step "find my-project -type f | sort"; step "cat my-project/test.sh"; fence; say ""

say "Create a workspace seeded from it. The result's \`workspace_id\` names the workspace in every later" \
  "command (any unique prefix of it works), and \`workspace_seed\` records how \`/workspace\` was filled." ""
fence console
step "pyro workspace create debian:12 --seed-path ./my-project"
ws=$(sed -n 's/^workspace_id: *//p' "$body" | tail -1)
fence; say ""
if [ -z "$ws" ]; then
  echo "[first-run] workspace create printed no workspace_id; see $out" >&2
else
  say "Run the project's script in \`/workspace\`. The workspace stays alive afterwards." ""
  fence console; step "pyro workspace exec $ws -- sh test.sh"; fence; say ""

  say "Push more content from the host (a directory or a \`.tar\`/\`.tar.gz\`/\`.tgz\`), here an archive into" \
    "a subdirectory, and use it:" ""
  mkdir -p patches
  printf 'echo "hello from a pushed patch"\n' >patches/hello.sh
  tar -czf patches.tgz patches
  fence console
  step "tar -tzf patches.tgz"
  step "pyro workspace sync push $ws ./patches.tgz --dest /workspace/extra"
  step "pyro workspace exec $ws -- sh extra/patches/hello.sh"
  fence; say ""

  say "Its state, seed and last command; then the persisted command history:" ""
  fence console; step "pyro workspace status $ws"; say ""; step "pyro workspace logs $ws"; fence; say ""

  say "Delete it: the VM, its disk, its logs and its state are gone." ""
  fence console; step "pyro workspace delete $ws"; step "pyro workspace status $ws"; fence; say ""
  ws=""
fi

say "## 6. What a terminal shows while work is moving" ""
say "On a terminal, long operations draw one live line on stderr: a bar with the rate and time left when" \
  "the total is known, a spinner with the elapsed seconds otherwise; the line is cleared when the work is" \
  "done, and stdout gets only the result. Below, a workspace seeded with 10,000 small files was created" \
  "under a pseudo-terminal (\`script\`, 100 columns) with stdout sent to a file; every distinct frame the" \
  "terminal was sent is one line here (a few are left out, marked \`...\`), then what the screen shows at" \
  "the end. Piped instead (as in the blocks above), the same command prints plain \`[workspace create]" \
  "phase=...\` lines." ""
mkdir -p big-project
python3 -c 'import os
for i in range(10000): open(os.path.join("big-project", "f%05d.txt" % i), "w").write("x\n")'
rm -f typescript ws.out
echo "[first-run] \$ pyro workspace create debian:12 --seed-path ./big-project (under a pty)" >&2
script -q -e -c "stty cols 100 rows 20; pyro workspace create debian:12 --seed-path ./big-project > ws.out" typescript >/dev/null 2>&1
bigws=$(sed -n 's/^workspace_id: *//p' ws.out)
[ -n "$bigws" ] && pyro workspace delete "$bigws" >/dev/null 2>&1
fence text
python3 - typescript <<'PYEOF' >>"$body"
import re, sys
raw = open(sys.argv[1], encoding="utf-8", errors="replace").read()
raw = re.sub(r"^Script started.*\n|\nScript done.*$", "", raw)
# Frames that differ only by the spinner's turn and the seconds shown are
# one step: keep the last of each run of them.
frames, keys = [], []
for part in re.split(r"[\r\n]", raw):
    f = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", part).rstrip()
    if not f.strip():
        continue
    key = re.sub(r"\[[0-9s:]+\]", "", re.sub(r"^[\u2800-\u28ff] ", "", f))
    if keys and keys[-1] == key:
        frames[-1] = f
    else:
        frames.append(f)
        keys.append(key)
keep = frames if len(frames) <= 24 else frames[:12] + ["..."] + frames[-11:]
print("$ pyro workspace create debian:12 --seed-path ./big-project > ws.out   # on a terminal")
for f in keep:
    print("  " + f if f != "..." else "  ...")
# What stays on the screen: play \r and \n out on one line.
line = ""
col = 0
for ch in raw:
    if ch == "\r":
        col = 0
    elif ch == "\n":
        line, col = "", 0
    else:
        line = line[:col] + ch + line[col + 1:]
        col += 1
print("screen at the end: " + ("(empty: the line was cleared)" if not line.strip() else repr(line)))
PYEOF
fence; say ""
fence console; step "grep -E '^(workspace_id|state|workspace_seed):' ws.out"; fence; say ""

say "## 7. The MCP server" ""
say "\`pyro mcp serve\` speaks MCP (newline-delimited JSON-RPC) on stdin/stdout; MCP clients launch it" \
  "themselves (see [integrations.md](integrations.md)). Here a few lines of Python play the client:" \
  "\`initialize\`, \`tools/list\`, and one \`tools/call\` of \`vm_run\`." ""
cat >mcp-client.py <<'EOF'
import json, subprocess
p = subprocess.Popen(["pyro", "mcp", "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
def send(msg):
    p.stdin.write(json.dumps(msg) + "\n"); p.stdin.flush()
def call(id, method, params):
    send({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
    while True:
        msg = json.loads(p.stdout.readline())
        if msg.get("id") == id:
            return msg["result"]
init = call(1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                              "clientInfo": {"name": "first-run", "version": "0"}})
print("server:", init["serverInfo"]["name"], init["serverInfo"]["version"], "protocol", init["protocolVersion"])
send({"jsonrpc": "2.0", "method": "notifications/initialized"})
tools = call(2, "tools/list", {})["tools"]
for t in tools:
    print(f'tool {t["name"]:22} args: {", ".join(t["inputSchema"].get("properties", {})) or "(none)"}')
res = call(3, "tools/call", {"name": "vm_run", "arguments": {"environment": "debian:12", "command": "git --version"}})
print("vm_run isError:", res.get("isError", False))
print("vm_run structuredContent:", {k: res["structuredContent"][k] for k in ("exit_code", "stdout", "execution_mode")})
p.stdin.close(); p.wait()
EOF
fence console; step "cat mcp-client.py"; say ""; step "python3 mcp-client.py"; fence; say ""

# --- the document ----------------------------------------------------------

{
  cat <<EOF
# First run: a real session

<!-- Generated by scripts/first-run.sh: do not edit by hand; run the script again. -->

Every block below is the real output of one run of \`scripts/first-run.sh\`, captured on a
Debian 12 machine with 2 CPUs and no usable KVM (so pyro uses QEMU's software emulation).
Ids, timings and sizes differ from run to run; the shapes do not. Stdout and stderr are
interleaved as a terminal shows them; the lines in \`[brackets]\` and the progress lines are
pyro's stderr.

- pyro version: \`$(pyro --version | sed "s/^pyro //")\`
- host: \`$(uname -srm)\`, $(. /etc/os-release && echo "$PRETTY_NAME"), $(nproc) CPUs
- generated: $(date -u +%Y-%m-%d)

If you have not installed pyro yet, start with [install.md](install.md); if a step fails for
you, see [troubleshooting.md](troubleshooting.md).

EOF
  cat "$body"
  cat <<'EOF'
## Next

- [integrations.md](integrations.md): pyro in Claude Code, Codex, Claude Desktop, Cursor, your
  own tool-calling loop, Go and Python.
- [reference/workspace.md](reference/workspace.md): workspaces in depth.
- [public-contract.md](public-contract.md): what is stable.
EOF
} >"$out"
echo "[first-run] wrote $out" >&2
