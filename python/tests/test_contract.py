"""The public contract's names, signatures and defaults; no guest is booted."""

from __future__ import annotations

import inspect
import os
import unittest

from helpers import REPO, pyro_bin  # noqa: F401  (helpers puts the checkout on sys.path)

import pyro_mcp
from pyro_mcp import (
    BinaryNotFoundError,
    InvalidArgumentError,
    NotFoundError,
    Pyro,
    PyroError,
    PyroMCPServer,
    PyroTimeoutError,
    create_server,
)
from pyro_mcp.errors import error_from_json

# public-contract-2.4.md, "Python SDK Contract", with the defaults the
# contract leaves as "...": ttl_seconds is 600 for VMs and 3600 for workspaces,
# as on the CLI; then the additive methods and arguments since (the names
# pyro-mcp's later versions use).
CONTRACT = """
create_server(self, profile=None)
list_environments(self)
pull_environment(self, environment)
inspect_environment(self, environment)
prune_environments(self)
create_vm(self, environment, vcpu_count=1, mem_mib=1024, ttl_seconds=600, network=False, allow_host_compat=False)
create_workspace(self, environment, vcpu_count=1, mem_mib=1024, ttl_seconds=3600, network=False, allow_host_compat=False, seed_path=None, disk_gib=10, name=None, labels=None, secrets=None)
push_workspace_sync(self, workspace_id, source_path, *, dest="/workspace")
start_vm(self, vm_id)
exec_vm(self, vm_id, *, command, timeout_seconds=30)
exec_workspace(self, workspace_id, *, command, timeout_seconds=30, secret_env=None)
stop_vm(self, vm_id)
delete_vm(self, vm_id)
delete_workspace(self, workspace_id)
status_vm(self, vm_id)
status_workspace(self, workspace_id)
logs_workspace(self, workspace_id)
network_info_vm(self, vm_id)
reap_expired(self)
run_in_vm(self, environment, command, vcpu_count=1, mem_mib=1024, timeout_seconds=30, ttl_seconds=600, network=False, allow_host_compat=False)
start_workspace(self, workspace_id)
stop_workspace(self, workspace_id)
create_snapshot(self, workspace_id, name)
list_snapshots(self, workspace_id)
delete_snapshot(self, workspace_id, name)
reset_workspace(self, workspace_id, snapshot="baseline")
fork_workspace(self, workspace_id, *, snapshot=None, name=None)
list_workspace_disk(self, workspace_id, path="/workspace", recursive=False)
read_workspace_disk(self, workspace_id, path, max_bytes=65536)
export_workspace_disk(self, workspace_id, output_path, *, disk=None, force=False)
update_workspace(self, workspace_id, *, name=None, labels=None, clear_labels=None, ttl_seconds=None)
list_workspaces(self, labels=None)
open_shell(self, workspace_id, cwd="/workspace", cols=120, rows=30, secret_env=None)
read_shell(self, workspace_id, shell_id, cursor=0, max_chars=65536, plain=False, wait_for_idle_ms=None)
write_shell(self, workspace_id, shell_id, input, append_newline=True)
signal_shell(self, workspace_id, shell_id, signal_name="INT")
close_shell(self, workspace_id, shell_id)
list_shells(self, workspace_id)
start_service(self, workspace_id, name, command, cwd="/workspace", readiness=None, ready_timeout_seconds=30, ready_interval_ms=500, restart="no", secret_env=None)
list_services(self, workspace_id)
status_service(self, workspace_id, name)
logs_service(self, workspace_id, name, tail_lines=200, all=False)
stop_service(self, workspace_id, name)
"""


def _expected():
    out = {}
    for line in CONTRACT.strip().splitlines():
        name = line.split("(", 1)[0]
        ns: dict = {}
        exec(f"def {line}: pass", ns)  # noqa: S102 - our own constant
        out[name] = inspect.signature(ns[name])
    return out


def _shape(sig):
    return [(p.name, p.kind, p.default) for p in sig.parameters.values()]


class ContractTest(unittest.TestCase):
    def test_imports(self):
        self.assertTrue(callable(create_server))
        self.assertIs(pyro_mcp.Pyro, Pyro)
        self.assertEqual([p.name for p in inspect.signature(create_server).parameters.values()], ["profile"])

    def test_method_signatures(self):
        for name, want in _expected().items():
            with self.subTest(method=name):
                self.assertTrue(hasattr(Pyro, name), f"Pyro.{name} is missing")
                got = inspect.signature(getattr(Pyro, name))
                self.assertEqual(_shape(got), _shape(want), f"Pyro.{name}{got} != {want}")

    def test_docs_cover_every_method(self):
        doc = os.path.join(REPO, "docs", "reference", "python.md")
        with open(doc, encoding="utf-8") as f:
            text = f.read()
        for name in list(_expected()) + ["create_server", "PyroError", "NotFoundError"]:
            with self.subTest(name=name):
                self.assertIn(name, text)

    def test_construct_never_needs_the_binary(self):
        p = Pyro("/nonexistent/pyro")
        with self.assertRaises(BinaryNotFoundError) as cm:
            p.list_environments()
        self.assertIsInstance(cm.exception, PyroError)
        self.assertIn("/nonexistent/pyro", cm.exception.message)
        self.assertTrue(cm.exception.hint)

    def test_argument_validation(self):
        p = Pyro("/nonexistent/pyro")  # validation happens before pyro runs
        for call in (
            lambda: p.run_in_vm("debian:12", ""),
            lambda: p.run_in_vm("debian:12", []),
            lambda: p.run_in_vm("debian:12", ["ls", 3]),
            lambda: p.run_in_vm("debian:12", "true", mem_mib="1024"),
            lambda: p.run_in_vm("debian:12", "true", vcpu_count=True),
            lambda: p.run_in_vm("debian:12", "true", network="yes"),
            lambda: p.run_in_vm("", "true"),
            lambda: p.exec_vm("--help", command="true"),
            lambda: p.status_workspace(None),
            lambda: p.push_workspace_sync("abc", "/tmp", dest=""),
            lambda: p.create_workspace("debian:12", secrets=[{"name": "A=B", "value": "xxxxx"}]),
            lambda: p.create_workspace("debian:12", secrets=[{"name": "A", "value": "xxxxx", "file_path": "/x"}]),
            lambda: p.create_workspace("debian:12", secrets="A=B"),
            lambda: p.create_workspace("debian:12", labels={"a": 1}),
            lambda: p.start_service("abc", "web", "true", readiness={"type": "udp", "port": 1}),
            lambda: p.start_service("abc", "web", "true", readiness={"type": "http", "path": "x"}),
            lambda: p.read_shell("abc", "sh", plain="yes"),
            lambda: p.write_shell("abc", "sh", 7),
            lambda: p.logs_service("abc", "web", all=1),
            lambda: p.exec_workspace("abc", command="true", secret_env={"A=B": "X"}),
        ):
            with self.assertRaises(InvalidArgumentError):
                call()

    def test_error_mapping(self):
        e = error_from_json({"code": "not_found", "message": "no vm", "hint": "list them"}, returncode=1)
        self.assertIsInstance(e, NotFoundError)
        self.assertIsInstance(e, LookupError)
        self.assertEqual((e.code, e.message, e.hint, e.returncode), ("not_found", "no vm", "list them", 1))
        self.assertEqual(str(e), "no vm (hint: list them)")
        t = error_from_json({"code": "timeout", "message": "boot timed out"})
        self.assertIsInstance(t, PyroTimeoutError)
        self.assertIsInstance(t, TimeoutError)
        i = error_from_json({"code": "invalid_argument", "message": "bad"})
        self.assertIsInstance(i, ValueError)
        u = error_from_json({"code": "something_new", "message": "?"})
        self.assertIs(type(u), PyroError)
        self.assertEqual(u.code, "something_new")

    def test_create_server_object(self):
        b = pyro_bin()
        env = dict(os.environ, PYRO_BIN=b)
        srv = Pyro(env={"PYRO_BIN": b}).create_server()
        self.assertIsInstance(srv, PyroMCPServer)
        self.assertEqual(srv.command, [b, "mcp", "serve"])
        self.assertEqual(srv.env["PYRO_BIN"], env["PYRO_BIN"])
        self.assertTrue(callable(srv.run) and callable(srv.start))

    def test_create_server_profiles(self):
        b = pyro_bin()
        p = Pyro(env={"PYRO_BIN": b})
        for profile in pyro_mcp.MCP_PROFILES:
            with self.subTest(profile=profile):
                self.assertEqual(p.create_server(profile).command, [b, "mcp", "serve", "--profile", profile])
        self.assertEqual(p.create_server(None).command, [b, "mcp", "serve"])
        with self.assertRaises(InvalidArgumentError) as cm:
            p.create_server("everything")
        self.assertIn("workspace-core", cm.exception.hint)


if __name__ == "__main__":
    unittest.main()
