"""pyro's MCP server (``pyro mcp serve``, MCP over stdio) as a Python object."""

from __future__ import annotations

import signal
import subprocess
import threading
from typing import Any, Dict, List, Optional

__all__ = ["PyroMCPServer"]


class PyroMCPServer:
    """pyro's MCP server: the ``pyro mcp serve`` process, speaking MCP over stdio.

    Returned by :func:`pyro_mcp.create_server` and :meth:`pyro_mcp.Pyro.create_server`;
    creating it starts nothing.

    Attributes:
        command: the argv that runs the server, e.g. ``["/usr/local/bin/pyro", "mcp", "serve"]``
            (give it to an MCP client's "command"/"args" configuration).
        env: the environment the server runs with (``None``: this process's environment).
    """

    def __init__(self, command: List[str], env: Optional[Dict[str, str]] = None) -> None:
        self.command = list(command)
        self.env = None if env is None else dict(env)

    def __repr__(self) -> str:
        return f"PyroMCPServer(command={self.command!r})"

    def start(self, **popen_kwargs: Any) -> "subprocess.Popen[bytes]":
        """Start the server and return its :class:`subprocess.Popen`.

        By default its stdin and stdout are pipes (write JSON-RPC requests to
        ``proc.stdin``, one per line; read responses from ``proc.stdout``) and
        its stderr (logs) is inherited. Any keyword is passed to ``Popen``
        (``stderr=subprocess.DEVNULL``, ``text=True``...). Close stdin to ask
        the server to exit; then ``wait()`` for it.
        """
        kwargs: Dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "env": self.env}
        kwargs.update(popen_kwargs)
        return subprocess.Popen(self.command, **kwargs)

    def run(self) -> int:
        """Serve MCP on this process's stdin/stdout until the client goes away.

        Blocks, inheriting stdin, stdout and stderr, and returns the server's
        exit status. SIGTERM sent to this process is forwarded to the server;
        Ctrl-C (SIGINT) reaches it through the terminal. This is what
        ``python -c "from pyro_mcp import create_server; create_server().run()"``
        runs.
        """
        proc = subprocess.Popen(self.command, env=self.env)
        previous = None
        main_thread = threading.current_thread() is threading.main_thread()
        if main_thread:
            def forward(signum: int, _frame: Any) -> None:
                if proc.poll() is None:
                    proc.send_signal(signum)

            previous = signal.signal(signal.SIGTERM, forward)
        try:
            while True:
                try:
                    return proc.wait()
                except KeyboardInterrupt:
                    # The server got the same SIGINT from the terminal; give it
                    # time to shut down, then make sure it is gone.
                    try:
                        return proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        return proc.wait()
        finally:
            if main_thread and previous is not None:
                signal.signal(signal.SIGTERM, previous)
