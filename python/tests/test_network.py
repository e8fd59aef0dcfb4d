"""Network policies and published ports through the facade, on a real guest."""

from __future__ import annotations

import urllib.request

from helpers import GuestTestCase

from pyro_mcp import FailedPreconditionError, InvalidArgumentError

ENV = "debian:12-build"  # has python3


class NetworkTest(GuestTestCase):
    def test_policy_and_publish(self):
        p = self.pyro
        with self.assertRaises(InvalidArgumentError) as cm:
            p.create_workspace(ENV, network_policy="everything")
        self.assertIn("unknown network policy", cm.exception.message)
        self.assertEqual(p.list_workspaces()["count"], 0)

        ws = p.create_workspace(ENV, mem_mib=512, network_policy="published-ports")
        wid = ws["workspace_id"]
        try:
            self.assertEqual(ws["network_policy"], "published-ports")
            svc = p.start_service(wid, "web", "python3 -m http.server 8000", readiness={"type": "tcp", "port": 8000},
                                  published_ports=[{"guest_port": 8000}])
            port = svc["published_ports"][0]["host_port"]
            self.assertEqual(svc["published_ports"][0]["host_address"], "127.0.0.1")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=20) as r:
                self.assertEqual(r.status, 200)
            net = p.network_workspace(wid)
            self.assertEqual(net["policy"], "published-ports")
            self.assertEqual([(x["service"], x["host_port"]) for x in net["published_ports"]], [("web", port)])
            self.assertTrue(any(c["direction"] == "in" for c in net["connections"]))

            # The policy round trip: egress forbids publishing, live.
            self.assertEqual(p.update_workspace(wid, network_policy="egress")["network_policy"], "egress")
            self.assertEqual(p.network_workspace(wid)["published_ports"], [])
            with self.assertRaises(FailedPreconditionError):
                p.start_service(wid, "web2", "python3 -m http.server 8001", published_ports=[{"guest_port": 8001}])
        finally:
            p.delete_workspace(wid)
