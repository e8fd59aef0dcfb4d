"""Shared test plumbing: the pyro binary, private state/runtime dirs, leak checks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.dirname(HERE)
REPO = os.path.dirname(PYTHON_DIR)

# Test the sources in this checkout, not whatever pyro_mcp is installed.
if PYTHON_DIR not in sys.path:
    sys.path.insert(0, PYTHON_DIR)


def pyro_bin() -> str:
    """$PYRO_BIN, which CI sets; a clear failure (not a skip) when it is missing."""
    b = os.environ.get("PYRO_BIN", "")
    if not b:
        raise AssertionError(
            "PYRO_BIN is not set: build pyro (CGO_ENABLED=0 go build -o /tmp/pyro ./cmd/pyro) and "
            "export PYRO_BIN=/tmp/pyro, or run python/run_tests.sh which does both"
        )
    if not (os.path.isfile(b) and os.access(b, os.X_OK)):
        raise AssertionError(f"PYRO_BIN={b!r} is not an executable file")
    return os.path.abspath(b)


class GuestTestCase(unittest.TestCase):
    """A test class with its own PYRO_STATE_DIR and short PYRO_RUNTIME_DIR.

    The environment cache stays the shared one (environments are built once).
    At the end, no VM or workspace may be left in the private state.
    """

    pyro = None  # type: ignore[assignment]
    env: dict = {}

    @classmethod
    def setUpClass(cls) -> None:
        from pyro_mcp import Pyro

        cls.bin = pyro_bin()
        cls.tmp = tempfile.mkdtemp(prefix="pyro-py-", dir="/tmp")
        cls.env = {
            "PYRO_BIN": cls.bin,
            "PYRO_STATE_DIR": os.path.join(cls.tmp, "s"),
            "PYRO_RUNTIME_DIR": os.path.join(cls.tmp, "r"),
        }
        cls.pyro = Pyro(env=cls.env)

    @classmethod
    def cli(cls, *args: str) -> dict:
        env = dict(os.environ)
        env.update(cls.env)
        out = subprocess.run([cls.bin, "--json", *args], env=env, stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=300)
        return json.loads(out.stdout)

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            vms = cls.cli("vm", "list")
            wss = cls.cli("workspace", "list")
            leaked = [v["vm_id"] for v in vms.get("vms") or []] + [w["workspace_id"] for w in wss.get("workspaces") or []]
            for v in vms.get("vms") or []:
                cls.cli("vm", "delete", v["vm_id"])
            for w in wss.get("workspaces") or []:
                cls.cli("workspace", "delete", w["workspace_id"])
            if vms.get("count") != 0 or wss.get("count") != 0:
                raise AssertionError(f"{cls.__name__} left VMs/workspaces behind: {leaked}")
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)
