"""The :class:`Pyro` facade: pyro's public Python SDK.

Every method runs the Go ``pyro`` binary with ``--json`` (no shell) and
returns its JSON result as a plain ``dict``.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from . import _cli
from ._living import LivingMixin, secret_env_flags, secret_flags
from .errors import InvalidArgumentError
from .server import PyroMCPServer

__all__ = [
    "Pyro",
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
]

DEFAULT_VCPU_COUNT = 1
DEFAULT_MEM_MIB = 1024
DEFAULT_TIMEOUT_SECONDS = 30
DEFAULT_VM_TTL_SECONDS = 600
DEFAULT_WORKSPACE_TTL_SECONDS = 3600
DEFAULT_WORKSPACE_PATH = "/workspace"
DEFAULT_DISK_GIB = 10
DEFAULT_DISK_READ_BYTES = 65536
BASELINE_SNAPSHOT = "baseline"

# The tool sets of ``pyro mcp serve --profile``: only vm_run; the workspace
# loop for chat hosts; every tool (what the bare command serves).
MCP_PROFILES = ("vm-run", "workspace-core", "workspace-full")

# Extra wall-clock time each pyro invocation gets beyond the guest command's
# timeout_seconds: booting, pulling or building an environment, cleaning up.
DEFAULT_CALL_TIMEOUT_SECONDS = 900.0

Command = Union[str, Sequence[str]]
PathLike = Union[str, "os.PathLike[str]"]


def _name(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgumentError(f"{kind} must be a non-empty string, got {value!r}")
    if value.startswith("-"):
        raise InvalidArgumentError(f"{kind} {value!r} must not start with '-'")
    return value


def _int(kind: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{kind} must be an int, got {value!r}")
    return value


def _bool(kind: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"{kind} must be a bool, got {value!r}")
    return value


def _path(kind: str, value: Any) -> str:
    try:
        p = os.fspath(value)
    except TypeError:
        raise InvalidArgumentError(f"{kind} must be a path, got {value!r}") from None
    if not isinstance(p, str) or not p:
        raise InvalidArgumentError(f"{kind} must be a non-empty str path, got {value!r}")
    return os.path.abspath(p)


def _argv(command: Any) -> List[str]:
    """A string runs with /bin/sh -c in the guest; a list of strings is an argv."""
    if isinstance(command, str):
        if not command.strip():
            raise InvalidArgumentError("command must not be empty")
        return ["sh", "-c", command]
    if isinstance(command, (list, tuple)) and command and all(isinstance(a, str) for a in command):
        if not command[0]:
            raise InvalidArgumentError("command[0] must not be empty")
        return list(command)
    raise InvalidArgumentError(
        f"command must be a shell string or a non-empty list of strings, got {command!r}"
    )


def _shape_flags(vcpu_count: Any, mem_mib: Any, ttl_seconds: Any, network: Any, allow_host_compat: Any) -> List[str]:
    flags = [
        f"--vcpu-count={_int('vcpu_count', vcpu_count)}",
        f"--mem-mib={_int('mem_mib', mem_mib)}",
        f"--ttl-seconds={_int('ttl_seconds', ttl_seconds)}",
    ]
    if _bool("network", network):
        flags.append("--network")
    if _bool("allow_host_compat", allow_host_compat):
        flags.append("--allow-host-compat")
    return flags


class Pyro(LivingMixin):
    """Run commands in real microVMs through the ``pyro`` binary.

    Args:
        pyro_bin: the pyro binary (a path, or a name looked up on PATH);
            default ``$PYRO_BIN``, else ``pyro`` on PATH.
        env: extra environment variables for every pyro process (e.g.
            ``{"PYRO_STATE_DIR": ...}``), on top of ``os.environ``.
        call_timeout_seconds: wall-clock allowance of each pyro invocation on
            top of the command's ``timeout_seconds`` (booting, pulling or
            building an environment, cleaning up). When it runs out, pyro is
            sent SIGTERM (it cleans up), then killed, and
            :class:`~pyro_mcp.PyroTimeoutError` is raised. ``None``: no limit.
            ``pull_environment`` is never limited.

    The binary is looked up when first needed, so constructing ``Pyro()``
    never fails. Instances hold no other state and may be shared between
    threads.
    """

    def __init__(
        self,
        pyro_bin: Optional[str] = None,
        *,
        env: Optional[Mapping[str, str]] = None,
        call_timeout_seconds: Optional[float] = DEFAULT_CALL_TIMEOUT_SECONDS,
    ) -> None:
        self._pyro_bin = pyro_bin
        self._extra_env = dict(env or {})
        self.call_timeout_seconds = call_timeout_seconds

    def __repr__(self) -> str:
        return f"Pyro(pyro_bin={self._pyro_bin!r})"

    # -- plumbing --------------------------------------------------------

    def _environ(self) -> Dict[str, str]:
        environ = dict(os.environ)
        environ.update(self._extra_env)
        return environ

    @property
    def binary(self) -> str:
        """The absolute path of the pyro binary this instance runs."""
        return _cli.find_binary(self._pyro_bin, self._environ())

    def _call(
        self, args: List[str], *, command_timeout: int = 0, limit: bool = True, exec_result: bool = False, pass_fds: Sequence[int] = ()
    ) -> Dict[str, Any]:
        environ = self._environ()
        binary = _cli.find_binary(self._pyro_bin, environ)
        timeout = None
        if limit and self.call_timeout_seconds is not None:
            timeout = float(self.call_timeout_seconds) + command_timeout
        return _cli.run_json(binary, args, env=environ, timeout=timeout, allow_nonzero_result=exec_result, pass_fds=pass_fds)

    # -- MCP ---------------------------------------------------------------

    def create_server(self, profile: Optional[str] = None) -> PyroMCPServer:
        """pyro's MCP server (``pyro mcp serve`` over stdio), not yet started.

        ``profile`` picks its tools: ``"workspace-core"`` (the workspace loop,
        recommended for chat hosts), ``"vm-run"`` (only ``vm_run``) or
        ``"workspace-full"``; ``None`` is the bare command, every tool. The
        server runs in this process's working directory: inside a git
        checkout it seeds ``workspace_create`` calls without ``seed_path``
        from that checkout.
        """
        args = ["mcp", "serve"]
        if profile is not None:
            if profile not in MCP_PROFILES:
                raise InvalidArgumentError(
                    f"unknown MCP profile {profile!r}", hint="use one of " + ", ".join(MCP_PROFILES)
                )
            args += ["--profile", profile]
        environ = self._environ()
        binary = _cli.find_binary(self._pyro_bin, environ)
        return PyroMCPServer([binary, *args], env=environ)

    # -- environments ----------------------------------------------------

    def list_environments(self) -> Dict[str, Any]:
        """The catalog and what is installed (``pyro env list``).

        Returns ``{"catalog_version", "environments": [{"name", "version",
        "description", "default", "installed", ...}]}``.
        """
        return self._call(["env", "list"])

    def pull_environment(self, environment: str) -> Dict[str, Any]:
        """Install an environment from the cache, a registry or a local build (``pyro env pull``)."""
        return self._call(["env", "pull", _name("environment", environment)], limit=False)

    def inspect_environment(self, environment: str) -> Dict[str, Any]:
        """Describe an environment: version, installed, manifest, paths (``pyro env inspect``)."""
        return self._call(["env", "inspect", _name("environment", environment)])

    def prune_environments(self) -> Dict[str, Any]:
        """Remove stale environments and unreferenced blobs (``pyro env prune``)."""
        return self._call(["env", "prune"])

    # -- one-shot ----------------------------------------------------------

    def run_in_vm(
        self,
        environment: str,
        command: Command,
        vcpu_count: int = DEFAULT_VCPU_COUNT,
        mem_mib: int = DEFAULT_MEM_MIB,
        timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS,
        ttl_seconds: int = DEFAULT_VM_TTL_SECONDS,
        network: bool = False,
        allow_host_compat: bool = False,
    ) -> Dict[str, Any]:
        """Boot a fresh VM, run ``command`` in it, delete the VM (``pyro run``).

        ``command`` is a shell string (run with ``/bin/sh -c``) or an argv list.
        A non-zero exit is not an error: read ``exit_code`` and ``timed_out``.
        """
        args = ["run", _name("environment", environment)]
        args += _shape_flags(vcpu_count, mem_mib, ttl_seconds, network, allow_host_compat)
        timeout = _int("timeout_seconds", timeout_seconds)
        args += [f"--timeout-seconds={timeout}", "--", *_argv(command)]
        return self._call(args, command_timeout=max(timeout, 0), exec_result=True)

    # -- advanced VM lifecycle ----------------------------------------------

    def create_vm(
        self,
        environment: str,
        vcpu_count: int = DEFAULT_VCPU_COUNT,
        mem_mib: int = DEFAULT_MEM_MIB,
        ttl_seconds: int = DEFAULT_VM_TTL_SECONDS,
        network: bool = False,
        allow_host_compat: bool = False,
    ) -> Dict[str, Any]:
        """Create a VM (pulling its environment if needed) without booting it (``pyro vm create``)."""
        args = ["vm", "create", _name("environment", environment)]
        args += _shape_flags(vcpu_count, mem_mib, ttl_seconds, network, allow_host_compat)
        return self._call(args)

    def start_vm(self, vm_id: str) -> Dict[str, Any]:
        """Boot a created or stopped VM (``pyro vm start``)."""
        return self._call(["vm", "start", _name("vm_id", vm_id)])

    def exec_vm(self, vm_id: str, *, command: Command, timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS) -> Dict[str, Any]:
        """Run one command in a started VM, then delete the VM (``pyro vm exec``: auto-cleans)."""
        timeout = _int("timeout_seconds", timeout_seconds)
        args = ["vm", "exec", _name("vm_id", vm_id), f"--timeout-seconds={timeout}", "--", *_argv(command)]
        return self._call(args, command_timeout=max(timeout, 0), exec_result=True)

    def stop_vm(self, vm_id: str) -> Dict[str, Any]:
        """Power a VM off; its disk stays until delete (``pyro vm stop``)."""
        return self._call(["vm", "stop", _name("vm_id", vm_id)])

    def delete_vm(self, vm_id: str) -> Dict[str, Any]:
        """Stop a VM and remove its disk and state (``pyro vm delete``)."""
        return self._call(["vm", "delete", _name("vm_id", vm_id)])

    def status_vm(self, vm_id: str) -> Dict[str, Any]:
        """A VM's state and whether its process is alive (``pyro vm status``)."""
        return self._call(["vm", "status", _name("vm_id", vm_id)])

    def network_info_vm(self, vm_id: str) -> Dict[str, Any]:
        """A VM's network configuration (``pyro vm network-info``)."""
        return self._call(["vm", "network-info", _name("vm_id", vm_id)])

    def reap_expired(self) -> Dict[str, Any]:
        """Stop and delete every VM past its TTL (``pyro vm reap``): ``{"reaped": [...], "count"}``."""
        return self._call(["vm", "reap"])

    # -- workspaces --------------------------------------------------------

    def create_workspace(
        self,
        environment: str,
        vcpu_count: int = DEFAULT_VCPU_COUNT,
        mem_mib: int = DEFAULT_MEM_MIB,
        ttl_seconds: int = DEFAULT_WORKSPACE_TTL_SECONDS,
        network: bool = False,
        allow_host_compat: bool = False,
        seed_path: Optional[PathLike] = None,
        disk_gib: int = DEFAULT_DISK_GIB,
        name: Optional[str] = None,
        labels: Optional[Mapping[str, str]] = None,
        secrets: Optional[Sequence[Mapping[str, Any]]] = None,
    ) -> Dict[str, Any]:
        """Create and start a persistent workspace (``pyro workspace create``).

        ``seed_path`` (a host directory or a local ``.tar``/``.tar.gz``/``.tgz``)
        fills ``/workspace`` before the workspace is returned; ``disk_gib``
        bounds ``/workspace``'s own disk (sparse: it costs what is written).
        ``name`` (unique) works wherever its id does; ``labels`` are
        ``{key: value}`` to find it by; ``secrets`` is a list of
        ``{"name", "value"}`` or ``{"name", "file_path"}``: files under
        ``/run/pyro-secrets`` in the guest, exposed with ``secret_env``, and
        ``[REDACTED]`` in every output.
        """
        args = ["workspace", "create", _name("environment", environment)]
        args += _shape_flags(vcpu_count, mem_mib, ttl_seconds, network, allow_host_compat)
        args.append(f"--disk-gib={_int('disk_gib', disk_gib)}")
        if seed_path is not None:
            args.append(f"--seed-path={_path('seed_path', seed_path)}")
        if name is not None:
            args.append(f"--name={_name('name', name)}")
        if labels is not None:
            from ._living import _label_flags

            args += _label_flags("--label", labels)
        flags, fds = secret_flags(secrets)
        try:
            return self._call(args + flags, pass_fds=fds)
        finally:
            for fd in fds:
                os.close(fd)

    def push_workspace_sync(self, workspace_id: str, source_path: PathLike, *, dest: str = DEFAULT_WORKSPACE_PATH) -> Dict[str, Any]:
        """Import a host directory or archive into a started workspace (``pyro workspace sync push``)."""
        if not isinstance(dest, str) or not dest:
            raise InvalidArgumentError(f"dest must be a non-empty string, got {dest!r}")
        args = ["workspace", "sync", "push", _name("workspace_id", workspace_id), _path("source_path", source_path), f"--dest={dest}"]
        return self._call(args)

    def exec_workspace(
        self,
        workspace_id: str,
        *,
        command: Command,
        timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS,
        secret_env: Optional[Mapping[str, str]] = None,
    ) -> Dict[str, Any]:
        """Run one command in ``/workspace``; the workspace stays alive (``pyro workspace exec``).

        ``secret_env`` exposes secrets as environment variables: ``{"SECRET": "VAR"}``
        (``""`` keeps the secret's name).
        """
        timeout = _int("timeout_seconds", timeout_seconds)
        args = ["workspace", "exec", _name("workspace_id", workspace_id), f"--timeout-seconds={timeout}"]
        args += secret_env_flags(secret_env) + ["--", *_argv(command)]
        return self._call(args, command_timeout=max(timeout, 0), exec_result=True)

    def status_workspace(self, workspace_id: str) -> Dict[str, Any]:
        """A workspace's state, resources, seed and command count (``pyro workspace status``)."""
        return self._call(["workspace", "status", _name("workspace_id", workspace_id)])

    def logs_workspace(self, workspace_id: str) -> Dict[str, Any]:
        """The workspace's persisted command history (``pyro workspace logs``): ``{"workspace_id", "entries", "count"}``."""
        return self._call(["workspace", "logs", _name("workspace_id", workspace_id)])

    def delete_workspace(self, workspace_id: str) -> Dict[str, Any]:
        """Stop the workspace's VM and remove its disk, logs and state (``pyro workspace delete``)."""
        return self._call(["workspace", "delete", _name("workspace_id", workspace_id)])

    def start_workspace(self, workspace_id: str) -> Dict[str, Any]:
        """Boot a stopped workspace from its disk (``pyro workspace start``)."""
        return self._call(["workspace", "start", _name("workspace_id", workspace_id)])

    def stop_workspace(self, workspace_id: str) -> Dict[str, Any]:
        """Power a workspace's VM off; its files stay on its disk (``pyro workspace stop``)."""
        return self._call(["workspace", "stop", _name("workspace_id", workspace_id)])

    # -- snapshots, reset, fork -------------------------------------------

    def create_snapshot(self, workspace_id: str, name: str) -> Dict[str, Any]:
        """Take a consistent snapshot of the whole workspace (``pyro workspace snapshot create``).

        Returns ``{"workspace_id", "name", "created_at", "sequence", "size_bytes"}``.
        """
        return self._call(["workspace", "snapshot", "create", _name("workspace_id", workspace_id), _name("name", name)])

    def list_snapshots(self, workspace_id: str) -> Dict[str, Any]:
        """A workspace's snapshots, the baseline first (``pyro workspace snapshot list``):
        ``{"workspace_id", "snapshots": [...], "count"}``."""
        return self._call(["workspace", "snapshot", "list", _name("workspace_id", workspace_id)])

    def delete_snapshot(self, workspace_id: str, name: str) -> Dict[str, Any]:
        """Delete a snapshot (``pyro workspace snapshot delete``); not the baseline, nor one a fork came from."""
        return self._call(["workspace", "snapshot", "delete", _name("workspace_id", workspace_id), _name("name", name)])

    def reset_workspace(self, workspace_id: str, snapshot: str = BASELINE_SNAPSHOT) -> Dict[str, Any]:
        """Bring the whole workspace back to a snapshot and boot it (``pyro workspace reset``)."""
        args = ["workspace", "reset", _name("workspace_id", workspace_id), f"--snapshot={_name('snapshot', snapshot)}"]
        return self._call(args)

    def fork_workspace(self, workspace_id: str, *, snapshot: Optional[str] = None, name: Optional[str] = None) -> Dict[str, Any]:
        """Make and boot a new workspace that starts as a snapshot of this one (``pyro workspace fork``).

        ``snapshot`` defaults to one taken now; ``name`` names the new workspace.
        """
        args = ["workspace", "fork", _name("workspace_id", workspace_id)]
        if snapshot is not None:
            args.append(f"--snapshot={_name('snapshot', snapshot)}")
        if name is not None:
            args.append(f"--name={_name('name', name)}")
        return self._call(args)

    # -- a stopped workspace's disks, read offline --------------------------

    def list_workspace_disk(self, workspace_id: str, path: str = DEFAULT_WORKSPACE_PATH, recursive: bool = False) -> Dict[str, Any]:
        """List a path of a stopped workspace's disk without booting it (``pyro workspace disk list``)."""
        args = ["workspace", "disk", "list", _name("workspace_id", workspace_id), _name("path", path)]
        if _bool("recursive", recursive):
            args.append("--recursive")
        return self._call(args)

    def read_workspace_disk(self, workspace_id: str, path: str, max_bytes: int = DEFAULT_DISK_READ_BYTES) -> Dict[str, Any]:
        """Read a file of a stopped workspace's disk (``pyro workspace disk read``):
        ``{"path", "size", "content", "encoding", "truncated", "sha256"}``."""
        args = ["workspace", "disk", "read", _name("workspace_id", workspace_id), _name("path", path),
                f"--max-bytes={_int('max_bytes', max_bytes)}"]
        return self._call(args)

    def export_workspace_disk(self, workspace_id: str, output_path: PathLike, *, disk: Optional[str] = None, force: bool = False) -> Dict[str, Any]:
        """Write a stopped workspace's disk to a host file as a raw ext4 image (``pyro workspace disk export``).

        ``disk`` is ``"workspace"`` (the default) or ``"root"``; an existing
        file is replaced only with ``force=True``.
        """
        args = ["workspace", "disk", "export", _name("workspace_id", workspace_id), f"--output={_path('output_path', output_path)}"]
        if disk is not None:
            args.append(f"--disk={_name('disk', disk)}")
        if _bool("force", force):
            args.append("--force")
        return self._call(args)
