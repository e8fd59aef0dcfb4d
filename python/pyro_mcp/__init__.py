"""pyro_mcp: run commands for coding agents inside real microVMs, from Python.

A thin, standard-library-only facade over the Go ``pyro`` binary (found via
``$PYRO_BIN``, else ``pyro`` on PATH), driven through its ``--json`` interface::

    from pyro_mcp import Pyro

    pyro = Pyro()
    result = pyro.run_in_vm("debian:12", "git --version")
    print(result["exit_code"], result["stdout"])

``create_server()`` gives pyro's MCP server (``pyro mcp serve`` over stdio).
"""

from __future__ import annotations

from typing import Optional

from .errors import (
    AlreadyExistsError,
    BinaryNotFoundError,
    ConflictError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PyroError,
    PyroTimeoutError,
    UnavailableError,
)
from .sdk import (
    BASELINE_SNAPSHOT,
    DEFAULT_DISK_GIB,
    DEFAULT_DISK_READ_BYTES,
    DEFAULT_MEM_MIB,
    DEFAULT_TIMEOUT_SECONDS,
    DEFAULT_VCPU_COUNT,
    DEFAULT_VM_TTL_SECONDS,
    DEFAULT_WORKSPACE_PATH,
    DEFAULT_WORKSPACE_TTL_SECONDS,
    MCP_PROFILES,
    Pyro,
)
from .server import PyroMCPServer

__version__ = "2.4.0"

__all__ = [
    "Pyro",
    "create_server",
    "PyroMCPServer",
    "PyroError",
    "InvalidArgumentError",
    "NotFoundError",
    "AlreadyExistsError",
    "ConflictError",
    "FailedPreconditionError",
    "UnavailableError",
    "PyroTimeoutError",
    "InternalError",
    "BinaryNotFoundError",
    "DEFAULT_VCPU_COUNT",
    "DEFAULT_MEM_MIB",
    "DEFAULT_TIMEOUT_SECONDS",
    "DEFAULT_VM_TTL_SECONDS",
    "DEFAULT_WORKSPACE_TTL_SECONDS",
    "DEFAULT_WORKSPACE_PATH",
    "MCP_PROFILES",
    "DEFAULT_DISK_GIB",
    "DEFAULT_DISK_READ_BYTES",
    "BASELINE_SNAPSHOT",
    "__version__",
]


def create_server(profile: Optional[str] = None) -> PyroMCPServer:
    """pyro's MCP server (``pyro mcp serve`` over stdio), not yet started.

    ``create_server().run()`` serves MCP on this process's stdin/stdout;
    ``create_server().start()`` returns a ``subprocess.Popen`` with piped stdio.
    ``profile`` is ``"workspace-core"``, ``"vm-run"`` or ``"workspace-full"``
    (``None``: the bare command, every tool). Same as
    ``Pyro().create_server(profile)``.
    """
    return Pyro().create_server(profile)
