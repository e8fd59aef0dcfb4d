"""Shells, services, secrets, names and labels through the facade, on a real guest."""

from __future__ import annotations

import os
import re
import time

from helpers import GuestTestCase

from pyro_mcp import AlreadyExistsError, InvalidArgumentError, NotFoundError, PyroTimeoutError

ENV = "debian:12-build"  # has python3
SECRET = "py-s3cret-Value-5150"


class LivingTest(GuestTestCase):
    def read_until(self, ws, shell, cursor, pattern):
        got = ""
        deadline = time.time() + 90
        while time.time() < deadline:
            r = self.pyro.read_shell(ws, shell, cursor=cursor, plain=True, wait_for_idle_ms=300)
            got += r["output"]
            cursor = r["next_cursor"]
            if re.search(pattern, got, re.M):
                return got, cursor
        self.fail(f"no {pattern!r} in {got!r}")

    def test_living(self):
        p = self.pyro
        ws = p.create_workspace(ENV, mem_mib=512, name="py-living", labels={"suite": "py"},
                                secrets=[{"name": "TOKEN", "value": SECRET}])
        wid = ws["workspace_id"]
        try:
            self.assertEqual(ws["name"], "py-living")
            self.assertEqual(ws["secrets"], [{"name": "TOKEN", "source_kind": "value"}])
            self.assertEqual(p.list_workspaces(labels={"suite": "py"})["count"], 1)
            self.assertEqual(p.list_workspaces(labels={"suite": "other"})["count"], 0)

            # A Python REPL through a shell: write 1+1, read 2.
            sh = p.open_shell("py-living", secret_env={"TOKEN": "T"})
            shell = sh["shell_id"]
            p.write_shell(wid, shell, "python3 -q")
            _, cur = self.read_until(wid, shell, 0, r">>> $")
            p.write_shell(wid, shell, "1+1")
            _, cur = self.read_until(wid, shell, cur, r"^2$")
            p.write_shell(wid, shell, "import os; os.environ['T']")
            out, cur = self.read_until(wid, shell, cur, r"REDACTED")
            self.assertNotIn(SECRET, out)
            p.signal_shell(wid, shell)
            self.assertEqual(p.list_shells(wid)["count"], 1)
            with self.assertRaises(InvalidArgumentError):
                p.signal_shell(wid, shell, "USR1")
            with self.assertRaises(NotFoundError):
                p.read_shell(wid, "nosuchshell")

            # Services.
            web = p.start_service(wid, "web", "python3 -m http.server 8000",
                                  readiness={"type": "http", "url": "http://127.0.0.1:8000/"})
            self.assertEqual(web["state"], "ready")
            self.assertEqual(web["published_ports"], [])
            with self.assertRaises(PyroTimeoutError) as cm:
                p.start_service(wid, "never", "echo warming; sleep 100", readiness={"type": "file", "path": "never"},
                                ready_timeout_seconds=2)
            self.assertIn("warming", cm.exception.message)
            with self.assertRaises(AlreadyExistsError):
                p.start_service(wid, "web", "true")
            with self.assertRaises(InvalidArgumentError):
                p.start_service(wid, "x", "true", readiness={"type": "http", "url": "ftp://127.0.0.1/"})
            self.assertIn("GET / HTTP", p.logs_service(wid, "web", all=True)["output"])
            self.assertEqual(p.status_service(wid, "never")["state"], "failed")
            self.assertEqual(p.stop_service(wid, "web")["state"], "stopped")
            self.assertEqual(p.list_services(wid)["count"], 2)

            r = p.exec_workspace(wid, command='echo "x=$TOKEN"', secret_env={"TOKEN": ""})
            self.assertEqual(r["stdout"], "x=[REDACTED]\n")
            up = p.update_workspace(wid, name="py-renamed", labels={"extra": "1"}, clear_labels=["suite"], ttl_seconds=900)
            self.assertEqual((up["name"], up["labels"], up["ttl_seconds"]), ("py-renamed", {"extra": "1"}, 900))
            self.assertEqual(p.close_shell("py-renamed", shell)["state"], "closed")
            logs = p.logs_workspace(wid)
            self.assertNotIn(SECRET, str(logs))
            self.assertNotIn(SECRET, str(p.status_workspace(wid)))
        finally:
            p.delete_workspace(wid)

    def test_secret_file(self):
        path = os.path.join(self.tmp, "tok.txt")
        with open(path, "w") as f:
            f.write("from-a-file-0007\n")
        ws = self.pyro.create_workspace("debian:12", mem_mib=512, secrets=[{"name": "F", "file_path": path}])
        try:
            self.assertEqual(ws["secrets"], [{"name": "F", "source_kind": "file"}])
            r = self.pyro.exec_workspace(ws["workspace_id"], command="cat /run/pyro-secrets/F; echo; echo $F", secret_env=["F"])
            self.assertEqual(r["stdout"], "[REDACTED]\n[REDACTED]\n")
        finally:
            self.pyro.delete_workspace(ws["workspace_id"])
