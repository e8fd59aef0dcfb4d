"""pyro_mcp against real guests: a handful of boots, through the real pyro binary."""

from __future__ import annotations

import io
import json
import os
import select
import subprocess
import sys
import tarfile
import tempfile
import time
import unittest

from helpers import PYTHON_DIR, GuestTestCase, pyro_bin

from pyro_mcp import InvalidArgumentError, NotFoundError, Pyro, PyroError, PyroTimeoutError, create_server

ENV = "debian:12"


class RunInVMTest(GuestTestCase):
    def test_run_in_vm_defaults_and_exit_code(self):
        r = self.pyro.run_in_vm(ENV, "echo out; echo err >&2; exit 3")
        self.assertEqual(r["exit_code"], 3)  # not an exception
        self.assertEqual(r["stdout"], "out\n")
        self.assertEqual(r["stderr"], "err\n")
        self.assertFalse(r["timed_out"])
        self.assertEqual((r["vcpu_count"], r["mem_mib"], r["network"]), (1, 1024, False))
        self.assertEqual(r["environment"], ENV)
        self.assertEqual(r["execution_mode"], "guest")
        self.assertEqual(r["command"], ["sh", "-c", "echo out; echo err >&2; exit 3"])
        for k in ("vm_id", "backend", "duration_ms", "boot_ms", "total_ms", "stdout_truncated", "stderr_truncated"):
            self.assertIn(k, r)

    def test_errors(self):
        with self.assertRaises(NotFoundError) as cm:
            self.pyro.run_in_vm("debian:nope", "true")
        e = cm.exception
        self.assertEqual(e.code, "not_found")
        self.assertIn("debian:nope", e.message)
        self.assertIn("debian:12", e.hint)
        self.assertEqual(e.returncode, 125)
        with self.assertRaises(NotFoundError):
            self.pyro.inspect_environment("debian:nope")
        with self.assertRaises(NotFoundError) as cm:
            self.pyro.status_workspace("0123456789abcdef")
        self.assertIn("0123456789abcdef", cm.exception.message)
        with self.assertRaises(NotFoundError):
            self.pyro.exec_workspace("0123456789abcdef", command="true")
        with self.assertRaises(NotFoundError):
            self.pyro.status_vm("0123456789abcdef")
        with self.assertRaises(InvalidArgumentError) as cm:  # rejected by pyro itself
            self.pyro.run_in_vm(ENV, "true", mem_mib=0)
        self.assertEqual(cm.exception.code, "invalid_argument")

    def test_call_timeout_stops_pyro_and_cleans_up(self):
        # No allowance beyond the command's 2 s: the facade's guard fires during
        # boot, sends pyro SIGTERM, and pyro deletes the VM before exiting.
        p = Pyro(env=self.env, call_timeout_seconds=0)
        start = time.monotonic()
        with self.assertRaises(PyroTimeoutError) as cm:
            p.run_in_vm(ENV, "sleep 60", timeout_seconds=2)
        self.assertEqual(cm.exception.code, "timeout")
        self.assertLess(time.monotonic() - start, 40)
        self.assertEqual(self.cli("vm", "list")["count"], 0)

    def test_environments(self):
        envs = self.pyro.list_environments()
        names = [e["name"] for e in envs["environments"]]
        self.assertIn(ENV, names)
        self.assertIn("catalog_version", envs)
        info = self.pyro.inspect_environment(ENV)
        self.assertEqual(info["name"], ENV)
        self.assertTrue(info["installed"])
        pulled = self.pyro.pull_environment(ENV)  # already cached: instant
        self.assertEqual(pulled["source"], "cache")
        # prune against an empty private cache, never the shared one
        with tempfile.TemporaryDirectory(prefix="pyro-py-cache-", dir="/tmp") as cache:
            res = Pyro(env=dict(self.env, PYRO_CACHE_DIR=cache)).prune_environments()
        self.assertEqual(res["freed_bytes"], 0)


class VMLifecycleTest(GuestTestCase):
    def test_create_start_exec_autocleans(self):
        vm = self.pyro.create_vm(ENV, mem_mib=512, ttl_seconds=300)
        vm_id = vm["vm_id"]
        self.assertEqual((vm["state"], vm["vcpu_count"], vm["mem_mib"], vm["ttl_seconds"]), ("created", 1, 512, 300))
        self.assertFalse(vm["running"])
        try:
            started = self.pyro.start_vm(vm_id)
            self.assertEqual(started["state"], "running")
            self.assertTrue(started["running"])
            self.assertEqual(self.pyro.status_vm(vm_id)["state"], "running")
            net = self.pyro.network_info_vm(vm_id)
            self.assertEqual((net["network"], net["mode"]), (False, "none"))
            r = self.pyro.exec_vm(vm_id, command=["sh", "-c", "echo $((6*7))"], timeout_seconds=20)
            self.assertEqual((r["exit_code"], r["stdout"], r["cleaned"]), (0, "42\n", True))
            with self.assertRaises(NotFoundError):  # exec auto-cleaned the VM
                self.pyro.status_vm(vm_id)
        except BaseException:
            try:
                self.pyro.delete_vm(vm_id)
            except PyroError:
                pass
            raise

    def test_create_stop_delete_reap_without_boot(self):
        vm = self.pyro.create_vm(ENV)
        self.assertEqual((vm["vcpu_count"], vm["mem_mib"], vm["ttl_seconds"]), (1, 1024, 600))
        self.assertEqual(self.pyro.stop_vm(vm["vm_id"])["running"], False)
        self.assertEqual(self.pyro.delete_vm(vm["vm_id"]), {"vm_id": vm["vm_id"], "deleted": True})
        reaped = self.pyro.reap_expired()
        self.assertEqual(reaped["count"], 0)


class WorkspaceTest(GuestTestCase):
    def test_workspace_flow(self):
        src = tempfile.mkdtemp(prefix="pyro-py-seed-", dir=self.tmp)
        with open(os.path.join(src, "README.md"), "w") as f:
            f.write("# demo\n")
        with open(os.path.join(src, "run.sh"), "w") as f:
            f.write("echo \"hello from $(pwd)\"\nls\n")
        ws = self.pyro.create_workspace(ENV, seed_path=src)
        wid = ws["workspace_id"]
        try:
            self.assertEqual((ws["vcpu_count"], ws["mem_mib"], ws["ttl_seconds"]), (1, 1024, 3600))
            self.assertTrue(ws["running"])
            self.assertEqual(ws["workspace_seed"]["mode"], "directory")
            self.assertEqual(ws["workspace_seed"]["source_path"], src)

            r = self.pyro.exec_workspace(wid, command="sh run.sh")
            self.assertEqual(r["exit_code"], 0, r)
            self.assertEqual(r["stdout"], "hello from /workspace\nREADME.md\nrun.sh\n")
            self.assertEqual((r["workspace_id"], r["sequence"], r["cwd"]), (wid, 1, "/workspace"))

            # a .tar.gz pushed into a subdirectory
            archive = os.path.join(self.tmp, "more.tar.gz")
            with tarfile.open(archive, "w:gz") as tf:
                data = b"print('v2')\n"
                ti = tarfile.TarInfo("app.py")
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            pushed = self.pyro.push_workspace_sync(wid, archive, dest="/workspace/src")
            self.assertEqual((pushed["workspace_id"], pushed["dest"], pushed["mode"]), (wid, "/workspace/src", "tar_archive"))
            # a directory with the default dest
            more = tempfile.mkdtemp(prefix="pyro-py-more-", dir=self.tmp)
            with open(os.path.join(more, "notes.txt"), "w") as f:
                f.write("pushed\n")
            pushed = self.pyro.push_workspace_sync(wid, more)
            self.assertEqual((pushed["dest"], pushed["mode"]), ("/workspace", "directory"))

            r = self.pyro.exec_workspace(wid, command=["cat", "src/app.py", "notes.txt", "README.md"])
            self.assertEqual(r["stdout"], "print('v2')\npushed\n# demo\n")

            r = self.pyro.exec_workspace(wid, command="exit 7")
            self.assertEqual(r["exit_code"], 7)  # not an exception
            r = self.pyro.exec_workspace(wid, command="sleep 20", timeout_seconds=1)
            self.assertTrue(r["timed_out"])
            self.assertEqual(r["exit_code"], 124)

            st = self.pyro.status_workspace(wid)
            self.assertEqual(st["command_count"], 4)
            self.assertEqual(st["workspace_seed"]["mode"], "directory")
            logs = self.pyro.logs_workspace(wid)
            # the two pushes have entries of their own (kind "sync") between the commands
            self.assertEqual(logs["count"], 6)
            self.assertEqual([e["kind"] for e in logs["entries"]], ["exec", "sync", "sync", "exec", "exec", "exec"])
            self.assertEqual([e["sequence"] for e in logs["entries"]], [1, 2, 3, 4, 5, 6])
            execs = [e for e in logs["entries"] if e["kind"] == "exec"]
            self.assertEqual(execs[0]["stdout"], "hello from /workspace\nREADME.md\nrun.sh\n")
            self.assertEqual(execs[2]["exit_code"], 7)
            self.assertTrue(execs[3]["timed_out"])
        finally:
            deleted = self.pyro.delete_workspace(wid)
        self.assertEqual(deleted, {"workspace_id": wid, "deleted": True})
        with self.assertRaises(NotFoundError):
            self.pyro.status_workspace(wid)


INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {},
    "clientInfo": {"name": "pyro_mcp-tests", "version": "0"}}}


def _initialize(proc) -> dict:
    """Send MCP initialize on proc's stdin; return the first response line, decoded."""
    proc.stdin.write((json.dumps(INITIALIZE) + "\n").encode())
    proc.stdin.flush()
    deadline = time.monotonic() + 30
    line = b""
    while not line.endswith(b"\n") and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            line += chunk
    return json.loads(line.decode().splitlines()[0])


def _close(proc) -> int:
    proc.stdin.close()
    try:
        rc = proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    proc.stdout.close()
    return rc


class SnapshotTest(GuestTestCase):
    def test_snapshot_reset_fork_disk(self):
        from pyro_mcp import AlreadyExistsError, ConflictError, FailedPreconditionError

        ws = self.pyro.create_workspace(ENV, mem_mib=512, disk_gib=1)
        wid = ws["workspace_id"]
        try:
            self.assertEqual(ws["disk"]["layout"], 2)
            self.assertEqual(ws["snapshot_count"], 1)
            self.pyro.exec_workspace(wid, command="echo one > f.txt")
            s = self.pyro.create_snapshot(wid, "one")
            self.assertEqual((s["workspace_id"], s["name"]), (wid, "one"))
            with self.assertRaises(AlreadyExistsError):
                self.pyro.create_snapshot(wid, "one")
            with self.assertRaises(InvalidArgumentError):
                self.pyro.create_snapshot(wid, "baseline")
            self.pyro.exec_workspace(wid, command="echo two > f.txt")
            r = self.pyro.reset_workspace(wid, snapshot="one")
            self.assertTrue(r["running"])
            self.assertEqual(r["last_reset"]["snapshot"], "one")
            self.assertEqual(self.pyro.exec_workspace(wid, command="cat f.txt")["stdout"], "one\n")
            names = [x["name"] for x in self.pyro.list_snapshots(wid)["snapshots"]]
            self.assertEqual(names, ["baseline", "one"])
            kinds = [e["kind"] for e in self.pyro.logs_workspace(wid)["entries"]]
            self.assertEqual(kinds, ["exec", "snapshot", "exec", "reset", "exec"])

            f = self.pyro.fork_workspace(wid, snapshot="one", name="py-fork")
            fid = f["workspace_id"]
            try:
                self.assertEqual(f["fork_of"]["workspace_id"], wid)
                self.assertEqual(f["name"], "py-fork")
                with self.assertRaises(ConflictError):
                    self.pyro.delete_snapshot(wid, "one")
                self.pyro.exec_workspace(fid, command="printf fork > g.txt")
                with self.assertRaises(FailedPreconditionError):
                    self.pyro.read_workspace_disk(fid, "g.txt")
                self.assertFalse(self.pyro.stop_workspace(fid)["running"])
                listed = [e["path"] for e in self.pyro.list_workspace_disk(fid)["entries"]]
                self.assertEqual(listed, ["/workspace/f.txt", "/workspace/g.txt"])
                rd = self.pyro.read_workspace_disk(fid, "/workspace/g.txt", max_bytes=3)
                self.assertEqual((rd["content"], rd["size"], rd["truncated"]), ("for", 4, True))
                out = os.path.join(self.tmp, "fork.img")
                ex = self.pyro.export_workspace_disk(fid, out)
                self.assertEqual((ex["disk"], ex["output_path"]), ("workspace", out))
                with self.assertRaises(AlreadyExistsError):
                    self.pyro.export_workspace_disk(fid, out)
                self.pyro.export_workspace_disk(fid, out, force=True)
                self.assertTrue(self.pyro.start_workspace(fid)["running"])
                self.assertEqual(self.pyro.exec_workspace(fid, command="cat f.txt g.txt")["stdout"], "one\nfork")
            finally:
                self.pyro.delete_workspace(fid)
            self.assertEqual(self.pyro.delete_snapshot(wid, "one")["deleted"], True)
        finally:
            self.pyro.delete_workspace(wid)


class WorkspaceFilesTest(GuestTestCase):
    def test_files_patch_export_diff_summary(self):
        from pyro_mcp import AlreadyExistsError, ConflictError

        seed = tempfile.mkdtemp(prefix="pyro-py-seed-", dir=self.tmp)
        with open(os.path.join(seed, "calc.sh"), "w") as f:
            f.write("add() { echo $(($1 - $2)); }\n")
        with open(os.path.join(seed, "old.txt"), "w") as f:
            f.write("bye\n")
        ws = self.pyro.create_workspace(ENV, mem_mib=512, disk_gib=1, seed_path=seed)
        wid = ws["workspace_id"]
        try:
            w = self.pyro.write_workspace_file(wid, "src/a.txt", "hello\n")
            self.assertEqual((w["path"], w["bytes"], w["created"], w["mode"]), ("/workspace/src/a.txt", 6, True, "0644"))
            self.pyro.write_workspace_file(wid, "bin.dat", b"\x00\xff", mode=0o600)
            r = self.pyro.read_workspace_file(wid, "src/a.txt")
            self.assertEqual((r["content"], r["encoding"], r["size"], r["truncated"]), ("hello\n", "utf-8", 6, False))
            b = self.pyro.read_workspace_file(wid, "/workspace/bin.dat")
            self.assertEqual((b["encoding"], b["content"]), ("base64", "AP8="))
            names = [e["path"] for e in self.pyro.list_workspace_files(wid, recursive=True)["entries"]]
            self.assertEqual(names, ["/workspace/bin.dat", "/workspace/calc.sh", "/workspace/old.txt", "/workspace/src", "/workspace/src/a.txt"])
            with self.assertRaises(InvalidArgumentError):
                self.pyro.read_workspace_file(wid, "../etc/passwd")

            patch = ("--- a/calc.sh\n+++ b/calc.sh\n@@ -1 +1 @@\n-add() { echo $(($1 - $2)); }\n+add() { echo $(($1 + $2)); }\n"
                     "--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+new\n"
                     "--- a/old.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n")
            p = self.pyro.apply_workspace_patch(wid, patch)
            self.assertEqual([(f["path"], f["status"]) for f in p["files"]], [("calc.sh", "modified"), ("new.txt", "added"), ("old.txt", "deleted")])
            with self.assertRaises(ConflictError) as cm:
                self.pyro.apply_workspace_patch(wid, "--- a/new.txt\n+++ b/new.txt\n@@ -1 +1 @@\n-NEW\n+newer\n")
            self.assertIn("new.txt", cm.exception.message)

            out = os.path.join(self.tmp, "src-out")
            e = self.pyro.export_workspace(wid, "src", out)
            self.assertEqual((e["format"], e["entries"]), ("directory", 1))
            with open(os.path.join(out, "a.txt")) as f:
                self.assertEqual(f.read(), "hello\n")
            with self.assertRaises(AlreadyExistsError):
                self.pyro.export_workspace(wid, "src", out)
            t = self.pyro.export_workspace(wid, ".", os.path.join(self.tmp, "all.tar.gz"))
            with tarfile.open(t["output_path"]) as tf:
                self.assertIn("calc.sh", tf.getnames())

            d = self.pyro.diff_workspace(wid)
            self.assertEqual([(x["path"], x["status"]) for x in d["entries"]],
                             [("bin.dat", "added"), ("calc.sh", "modified"), ("new.txt", "added"), ("old.txt", "deleted"), ("src/a.txt", "added")])
            self.assertIn("+add() { echo $(($1 + $2)); }", d["entries"][1]["patch"])
            st = self.pyro.diff_workspace(wid, stat=True, paths=["calc.sh"])
            self.assertEqual((st["count"], st["insertions"], st["deletions"], st["entries"][0].get("patch")), (1, 1, 1, None))

            s = self.pyro.summarize_workspace(wid)
            self.assertEqual((s["since"]["event"], s["file_writes"], s["patches"], len(s["exports"])), ("create", 2, 1, 2))
            self.assertEqual(s["changes"]["count"], 5)
            kinds = [x["kind"] for x in self.pyro.logs_workspace(wid)["entries"]]
            self.assertEqual(kinds, ["file_write", "file_write", "patch", "patch", "export", "export"])  # an export refused on the host changes nothing and is not logged
        finally:
            self.pyro.delete_workspace(wid)


class MCPServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.bin = pyro_bin()

    def test_mcp_serve_exists(self):
        # A pyro without a working 'mcp serve' is a failure, never a skip.
        probe = subprocess.run([self.bin, "mcp", "serve", "--help"], capture_output=True, text=True,
                               stdin=subprocess.DEVNULL, timeout=60)
        self.assertEqual(probe.returncode, 0, f"'pyro mcp serve --help' failed: {probe.stderr.strip()}")

    def test_create_server_start(self):
        srv = create_server()
        self.assertEqual(srv.command[1:], ["mcp", "serve"])
        if os.environ.get("PYRO_BIN"):
            self.assertEqual(os.path.realpath(srv.command[0]), os.path.realpath(self.bin))
        proc = srv.start(stderr=subprocess.DEVNULL)
        try:
            resp = _initialize(proc)
            self.assertEqual(resp.get("id"), 1, resp)
            self.assertIn("serverInfo", resp["result"])
        finally:
            self.assertEqual(_close(proc), 0)

    def test_create_server_run_serves_stdio(self):
        code = "import sys; from pyro_mcp import create_server; sys.exit(create_server().run())"
        env = dict(os.environ, PYRO_BIN=self.bin, PYTHONPATH=PYTHON_DIR)
        proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=env)
        try:
            resp = _initialize(proc)
            self.assertEqual(resp.get("id"), 1, resp)
            self.assertIn("protocolVersion", resp["result"])
        finally:
            self.assertEqual(_close(proc), 0)

    def test_create_server_profile(self):
        proc = create_server(profile="workspace-core").start(stderr=subprocess.DEVNULL)
        try:
            resp = _initialize(proc)
            self.assertIn("workspace_create", resp["result"]["instructions"])
            proc.stdin.write(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}\n'
                             b'{"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}\n')
            proc.stdin.flush()
            tools = json.loads(proc.stdout.readline())["result"]["tools"]
            names = sorted(t["name"] for t in tools)
            self.assertIn("workspace_exec", names)
            self.assertNotIn("vm_run", names)
            create = next(t for t in tools if t["name"] == "workspace_create")
            self.assertNotIn("network", create["inputSchema"]["properties"])
        finally:
            self.assertEqual(_close(proc), 0)


if __name__ == "__main__":
    unittest.main()
