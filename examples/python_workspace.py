#!/usr/bin/env python3
"""A persistent pyro workspace driven from Python.

Seeds /workspace from a small host project, runs its script, pushes an update
(as a .tar.gz into a subdirectory), runs it again, prints the workspace's
command history, and deletes the workspace.

    pip install ./python                # or: PYTHONPATH=python
    PYRO_BIN=/path/to/pyro python3 examples/python_workspace.py
"""

from __future__ import annotations

import os
import sys
import tarfile
import tempfile

try:
    from pyro_mcp import Pyro, PyroError
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
    from pyro_mcp import Pyro, PyroError

ENVIRONMENT = os.environ.get("PYRO_EXAMPLE_ENV", "debian:12")


def write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def show(label: str, result: dict) -> None:
    print(f"$ {label}  (exit {result['exit_code']}, {result['duration_ms']} ms)")
    for stream in ("stdout", "stderr"):
        text = result[stream].rstrip("\n")
        if text:
            print("  " + text.replace("\n", "\n  "))


def main() -> int:
    pyro = Pyro()
    with tempfile.TemporaryDirectory(prefix="pyro-example-") as tmp:
        # A tiny project: a README and a shell script that reads the project.
        project = os.path.join(tmp, "project")
        write(os.path.join(project, "README.md"), "# hello-pyro\nA tiny project seeded into a microVM.\n")
        write(os.path.join(project, "check.sh"),
              'set -e\necho "kernel: $(uname -r)"\necho "files:" $(find . -type f | sort)\n'
              'if [ -f lib/greet.sh ]; then sh lib/greet.sh; else echo "no lib/greet.sh yet"; fi\n')

        # The update: a .tar.gz holding greet.sh, to land in /workspace/lib.
        update = os.path.join(tmp, "update", "greet.sh")
        write(update, 'echo "greetings from $(hostname) as $(id -un)"\n')
        archive = os.path.join(tmp, "lib.tar.gz")
        with tarfile.open(archive, "w:gz") as tf:
            tf.add(update, arcname="greet.sh")

        ws = pyro.create_workspace(ENVIRONMENT, seed_path=project)
        wid = ws["workspace_id"]
        seed = ws["workspace_seed"]
        print(f"workspace {wid}: {ws['environment']}, {ws['vcpu_count']} vCPU / {ws['mem_mib']} MiB, "
              f"{ws['execution_mode']} ({ws['backend']}), boot {ws.get('boot_ms', 0)} ms")
        print(f"seeded /workspace from {seed['mode']}: {seed['entries']} entries, {seed['bytes']} bytes")
        try:
            show("sh check.sh", pyro.exec_workspace(wid, command="sh check.sh"))

            pushed = pyro.push_workspace_sync(wid, archive, dest="/workspace/lib")
            print(f"pushed {os.path.basename(archive)} -> {pushed['dest']} ({pushed['entries']} entries, {pushed['bytes']} bytes)")

            result = pyro.exec_workspace(wid, command="sh check.sh")
            show("sh check.sh", result)
            if result["exit_code"] != 0:
                return 1

            status = pyro.status_workspace(wid)
            print(f"status: {status['state']}, running={status['running']}, {status['command_count']} command(s)")
            logs = pyro.logs_workspace(wid)
            print(f"history ({logs['count']} entries):")
            for entry in logs["entries"]:
                if entry.get("kind", "exec") != "exec":
                    # a sync push, file write, patch, export, snapshot...
                    print(f"  #{entry['sequence']} {entry['kind']} in {entry.get('duration_ms', 0)} ms")
                    continue
                argv = entry["command"]
                shown = argv[2] if argv[:2] == ["sh", "-c"] and len(argv) == 3 else " ".join(argv)
                print(f"  #{entry['sequence']} {shown!r} -> exit {entry['exit_code']} "
                      f"in {entry['duration_ms']} ms")
        finally:
            pyro.delete_workspace(wid)
            print(f"deleted workspace {wid}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except PyroError as e:
        print(f"pyro error [{e.code}]: {e}", file=sys.stderr)
        sys.exit(1)
