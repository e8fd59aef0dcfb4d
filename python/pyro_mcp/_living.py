"""Living in a workspace: shells, services, secrets, names and labels.

:class:`LivingMixin` holds the :class:`~pyro_mcp.Pyro` methods for them; each
runs ``pyro workspace shell|service|update|list ... --json``. Secret values
never appear on pyro's command line: each travels through a pipe that pyro
reads (``--secret-file NAME=/dev/fd/N``).
"""

from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .errors import InvalidArgumentError

DEFAULT_SHELL_COLS = 120
DEFAULT_SHELL_ROWS = 30
DEFAULT_SHELL_MAX_CHARS = 65536
DEFAULT_READY_TIMEOUT_SECONDS = 30
DEFAULT_READY_INTERVAL_MS = 500
DEFAULT_SERVICE_TAIL_LINES = 200
SIGNALS = ("INT", "TERM", "KILL", "HUP", "QUIT")
READINESS_TYPES = {"file": "path", "tcp": "port", "http": "url", "command": "command"}

_SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# A pipe holds 64 KiB before a writer blocks; a secret is at most that.
_MAX_SECRET_BYTES = 64 * 1024


def _str(kind: str, value: Any, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value):
        raise InvalidArgumentError(f"{kind} must be a{'' if empty else ' non-empty'} string, got {value!r}")
    if value.startswith("-") and not empty:
        raise InvalidArgumentError(f"{kind} {value!r} must not start with '-'")
    return value


def _int(kind: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{kind} must be an int, got {value!r}")
    return value


def _mapping(kind: str, value: Any) -> Dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidArgumentError(f"{kind} must be a dict of str to str, got {value!r}")
    return dict(value)


def _label_flags(flag: str, labels: Any) -> List[str]:
    out = []
    for k, v in _mapping("labels", labels).items():
        if not k or "=" in k:
            raise InvalidArgumentError(f"label key {k!r} must be non-empty and have no '='")
        out.append(f"{flag}={k}={v}")
    return out


def secret_env_flags(secret_env: Any) -> List[str]:
    """``{"SECRET": "VAR"}`` (or ``{"SECRET": ""}``, or a list of names) as --secret-env flags."""
    if secret_env is None:
        return []
    if isinstance(secret_env, (list, tuple)):
        secret_env = {name: "" for name in secret_env}
    out = []
    for name, var in _mapping("secret_env", secret_env).items():
        if not name or "=" in name:
            raise InvalidArgumentError(f"secret_env names a secret {name!r}, which is not a secret name")
        out.append(f"--secret-env={name}={var}" if var else f"--secret-env={name}")
    return out


def secret_flags(secrets: Any) -> Tuple[List[str], List[int]]:
    """--secret-file flags for ``[{"name", "value"} | {"name", "file_path"}]``.

    Each value goes into a pipe whose read end pyro inherits: it is never
    on a command line or in a file. Returns the flags and the fds to pass
    (the caller closes them).
    """
    if secrets is None:
        return [], []
    if isinstance(secrets, Mapping):
        secrets = [{"name": k, "value": v} for k, v in secrets.items()]
    if not isinstance(secrets, (list, tuple)):
        raise InvalidArgumentError(f"secrets must be a list of {{name, value}} or {{name, file_path}}, got {type(secrets).__name__}")
    flags: List[str] = []
    fds: List[int] = []
    try:
        for s in secrets:
            if not isinstance(s, Mapping) or set(s) - {"name", "value", "file_path"} or "name" not in s:
                raise InvalidArgumentError(f"a secret is {{name, value}} or {{name, file_path}}, got {s!r}")
            name = s["name"]
            if not isinstance(name, str) or not _SECRET_NAME.match(name):
                raise InvalidArgumentError(
                    f"invalid secret name {name!r}",
                    hint="name a secret with letters, digits and _, not starting with a digit (at most 64), e.g. API_TOKEN",
                )
            if ("value" in s) == ("file_path" in s):
                raise InvalidArgumentError(f"secret {name}: give its value or its file_path, not both or neither")
            if "file_path" in s:
                path = os.fspath(s["file_path"])
                if not isinstance(path, str) or not path:
                    raise InvalidArgumentError(f"secret {name}: file_path must be a non-empty path")
                flags.append(f"--secret-file={name}={os.path.abspath(path)}")
                continue
            value = s["value"]
            data = value.encode("utf-8") if isinstance(value, str) else value
            if not isinstance(data, bytes) or not data:
                raise InvalidArgumentError(f"secret {name}: value must be a non-empty str")
            if len(data) > _MAX_SECRET_BYTES:
                raise InvalidArgumentError(f"secret {name}: a secret holds at most {_MAX_SECRET_BYTES} bytes")
            r, w = os.pipe()
            fds.append(r)
            try:
                os.write(w, data)
            finally:
                os.close(w)
            flags.append(f"--secret-file={name}=/dev/fd/{r}")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return flags, fds


class LivingMixin:
    """Shells, services, names and labels of workspaces (methods of :class:`Pyro`)."""

    def _call(self, args: List[str], **kw: Any) -> Dict[str, Any]:  # provided by Pyro
        raise NotImplementedError

    # -- names, labels, discovery -----------------------------------------

    def update_workspace(
        self,
        workspace_id: str,
        *,
        name: Optional[str] = None,
        labels: Optional[Mapping[str, str]] = None,
        clear_labels: Optional[Sequence[str]] = None,
        ttl_seconds: Optional[int] = None,
    ) -> Dict[str, Any]:
        """Rename a workspace, set or clear labels, or make it expire ``ttl_seconds`` from now (``pyro workspace update``)."""
        args = ["workspace", "update", _str("workspace_id", workspace_id)]
        if name is not None:
            args.append(f"--name={_str('name', name)}")
        if labels is not None:
            args += _label_flags("--label", labels)
        for k in clear_labels or ():
            args.append(f"--clear-label={_str('clear_labels', k)}")
        if ttl_seconds is not None:
            args.append(f"--ttl-seconds={_int('ttl_seconds', ttl_seconds)}")
        return self._call(args)

    def list_workspaces(self, labels: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
        """Every workspace, the most recently active first (``pyro workspace list``).

        ``labels`` keeps those that have all of them. Returns ``{"count",
        "workspaces": [...]}``; each has ``name``, ``labels``, ``shell_count``,
        ``service_count``, ``last_activity_at`` and ``expires_at``.
        """
        args = ["workspace", "list"]
        if labels is not None:
            args += _label_flags("--label", labels)
        return self._call(args)

    # -- shells -------------------------------------------------------------

    def open_shell(
        self,
        workspace_id: str,
        cwd: str = "/workspace",
        cols: int = DEFAULT_SHELL_COLS,
        rows: int = DEFAULT_SHELL_ROWS,
        secret_env: Optional[Mapping[str, str]] = None,
    ) -> Dict[str, Any]:
        """Open a shell in the workspace, booting it if needed (``pyro workspace shell open``).

        The shell lives in the guest until :meth:`close_shell`, its own exit,
        or the workspace's stop or delete. Returns ``{"shell_id", "state",
        "cursor", ...}``.
        """
        args = ["workspace", "shell", "open", _str("workspace_id", workspace_id), f"--cwd={_str('cwd', cwd)}",
                f"--cols={_int('cols', cols)}", f"--rows={_int('rows', rows)}"]
        return self._call(args + secret_env_flags(secret_env))

    def read_shell(
        self,
        workspace_id: str,
        shell_id: str,
        cursor: int = 0,
        max_chars: int = DEFAULT_SHELL_MAX_CHARS,
        plain: bool = False,
        wait_for_idle_ms: Optional[int] = None,
    ) -> Dict[str, Any]:
        """A shell's output from ``cursor`` (``pyro workspace shell read``).

        Returns ``{"output", "cursor", "next_cursor", "dropped", "more",
        "state", "exit_code"?}``: read from ``next_cursor`` next time.
        """
        if not isinstance(plain, bool):
            raise InvalidArgumentError(f"plain must be a bool, got {plain!r}")
        args = ["workspace", "shell", "read", _str("workspace_id", workspace_id), _str("shell_id", shell_id),
                f"--cursor={_int('cursor', cursor)}", f"--max-chars={_int('max_chars', max_chars)}"]
        if plain:
            args.append("--plain")
        if wait_for_idle_ms is not None:
            args.append(f"--wait-for-idle-ms={_int('wait_for_idle_ms', wait_for_idle_ms)}")
        return self._call(args, command_timeout=30)

    def write_shell(self, workspace_id: str, shell_id: str, input: str, append_newline: bool = True) -> Dict[str, Any]:  # noqa: A002 (pyro-mcp's name)
        """Type ``input`` into a shell, then Enter unless ``append_newline`` is False (``pyro workspace shell write``)."""
        if not isinstance(append_newline, bool):
            raise InvalidArgumentError(f"append_newline must be a bool, got {append_newline!r}")
        args = ["workspace", "shell", "write", _str("workspace_id", workspace_id), _str("shell_id", shell_id),
                f"--input={_str('input', input, empty=True)}"]
        if not append_newline:
            args.append("--no-newline")
        return self._call(args)

    def signal_shell(self, workspace_id: str, shell_id: str, signal_name: str = "INT") -> Dict[str, Any]:
        """Send INT, TERM, KILL, HUP or QUIT to what runs in a shell's foreground (``pyro workspace shell signal``)."""
        args = ["workspace", "shell", "signal", _str("workspace_id", workspace_id), _str("shell_id", shell_id),
                f"--signal={_str('signal_name', signal_name)}"]
        return self._call(args)

    def close_shell(self, workspace_id: str, shell_id: str) -> Dict[str, Any]:
        """Hang a shell up and forget it (``pyro workspace shell close``)."""
        return self._call(["workspace", "shell", "close", _str("workspace_id", workspace_id), _str("shell_id", shell_id)])

    def list_shells(self, workspace_id: str) -> Dict[str, Any]:
        """A workspace's shells (``pyro workspace shell list``): ``{"shells", "count"}``."""
        return self._call(["workspace", "shell", "list", _str("workspace_id", workspace_id)])

    # -- services -----------------------------------------------------------

    def start_service(
        self,
        workspace_id: str,
        name: str,
        command: Any,
        cwd: str = "/workspace",
        readiness: Optional[Mapping[str, Any]] = None,
        ready_timeout_seconds: int = DEFAULT_READY_TIMEOUT_SECONDS,
        ready_interval_ms: int = DEFAULT_READY_INTERVAL_MS,
        restart: str = "no",
        secret_env: Optional[Mapping[str, str]] = None,
    ) -> Dict[str, Any]:
        """Start a named service and wait until it is ready (``pyro workspace service start``).

        ``command`` is a shell string or an argv list; ``readiness`` is
        ``{"type": "file", "path": ...}``, ``{"type": "tcp", "port": ...}``,
        ``{"type": "http", "url": ...}`` or ``{"type": "command", "command": ...}``.
        Not ready in time (or exited) raises, with the end of its log.
        """
        from .sdk import _argv  # one rule for commands

        args = ["workspace", "service", "start", _str("workspace_id", workspace_id), _str("name", name),
                f"--cwd={_str('cwd', cwd)}", f"--ready-timeout-seconds={_int('ready_timeout_seconds', ready_timeout_seconds)}",
                f"--ready-interval-ms={_int('ready_interval_ms', ready_interval_ms)}", f"--restart={_str('restart', restart)}"]
        if readiness is not None:
            if not isinstance(readiness, Mapping) or readiness.get("type") not in READINESS_TYPES:
                raise InvalidArgumentError(
                    f"readiness must be {{type: file|tcp|http|command, ...}}, got {readiness!r}",
                    hint="e.g. {'type': 'http', 'url': 'http://127.0.0.1:8000/'}",
                )
            key = READINESS_TYPES[readiness["type"]]
            if key not in readiness or set(readiness) - {"type", key}:
                raise InvalidArgumentError(f"readiness of type {readiness['type']} takes exactly {key!r}, got {readiness!r}")
            args.append(f"--ready-{readiness['type']}={readiness[key]}")
        timeout = max(_int("ready_timeout_seconds", ready_timeout_seconds), 0)
        return self._call(args + secret_env_flags(secret_env) + ["--", *_argv(command)], command_timeout=timeout)

    def list_services(self, workspace_id: str) -> Dict[str, Any]:
        """A workspace's services (``pyro workspace service list``): ``{"services", "count", "note"?}``."""
        return self._call(["workspace", "service", "list", _str("workspace_id", workspace_id)])

    def status_service(self, workspace_id: str, name: str) -> Dict[str, Any]:
        """One service: state, pid, times, exit code, restarts (``pyro workspace service status``)."""
        return self._call(["workspace", "service", "status", _str("workspace_id", workspace_id), _str("name", name)])

    def logs_service(
        self, workspace_id: str, name: str, tail_lines: int = DEFAULT_SERVICE_TAIL_LINES, all: bool = False  # noqa: A002 (pyro-mcp's name)
    ) -> Dict[str, Any]:
        """A service's log, stdout and stderr together (``pyro workspace service logs``): ``{"output", "truncated", ...}``."""
        if not isinstance(all, bool):
            raise InvalidArgumentError(f"all must be a bool, got {all!r}")
        args = ["workspace", "service", "logs", _str("workspace_id", workspace_id), _str("name", name)]
        args.append("--all" if all else f"--tail-lines={_int('tail_lines', tail_lines)}")
        return self._call(args)

    def stop_service(self, workspace_id: str, name: str) -> Dict[str, Any]:
        """Stop a service: TERM, then KILL after 5 s (``pyro workspace service stop``)."""
        return self._call(["workspace", "service", "stop", _str("workspace_id", workspace_id), _str("name", name)])
