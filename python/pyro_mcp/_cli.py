"""Running the ``pyro`` binary with ``--json`` and decoding what it prints."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .errors import BinaryNotFoundError, InternalError, PyroTimeoutError, error_from_json

# How long pyro gets to clean up (stop and delete VMs) after SIGTERM before
# it is killed.
TERMINATE_GRACE_SECONDS = 30.0

# How much of pyro's stderr is kept in error messages.
_STDERR_TAIL = 2000


def find_binary(explicit: Optional[str] = None, env: Optional[Mapping[str, str]] = None) -> str:
    """Return the pyro binary to run: ``explicit``, else ``$PYRO_BIN``, else ``pyro`` on PATH."""
    environ = os.environ if env is None else env
    candidate = explicit or environ.get("PYRO_BIN") or ""
    if candidate:
        if os.sep in candidate:
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return os.path.abspath(candidate)
            raise BinaryNotFoundError(
                f"pyro binary {candidate!r} does not exist or is not executable",
                hint="set PYRO_BIN to the path of a built pyro binary (go build -o pyro ./cmd/pyro)",
            )
        found = shutil.which(candidate, path=environ.get("PATH"))
        if found:
            return found
        raise BinaryNotFoundError(
            f"pyro binary {candidate!r} is not on PATH",
            hint="set PYRO_BIN to the path of a built pyro binary",
        )
    found = shutil.which("pyro", path=environ.get("PATH"))
    if found:
        return found
    raise BinaryNotFoundError(
        "cannot find the pyro binary: PYRO_BIN is not set and there is no pyro on PATH",
        hint="set PYRO_BIN to the path of a built pyro binary (go build -o pyro ./cmd/pyro) or put pyro on PATH",
    )


def _tail(text: str) -> str:
    text = text.strip()
    if len(text) > _STDERR_TAIL:
        return "..." + text[-_STDERR_TAIL:]
    return text


def _terminate(proc: "subprocess.Popen[bytes]") -> None:
    """Ask pyro to stop (SIGTERM: it cleans up its VMs), then kill it."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=TERMINATE_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
    except ProcessLookupError:
        pass


def run_json(
    binary: str,
    args: Sequence[str],
    *,
    env: Optional[Dict[str, str]],
    timeout: Optional[float],
    allow_nonzero_result: bool = False,
    pass_fds: Sequence[int] = (),
) -> Dict[str, Any]:
    """Run ``binary --json ARGS...`` and return its decoded JSON object.

    pyro's ``{"error": ...}`` objects become :class:`PyroError` subclasses.
    ``allow_nonzero_result`` is for commands that run a guest command (run,
    vm exec, workspace exec): they exit with the guest's status and still
    print a result, which is returned as is. ``pass_fds`` are inherited by
    pyro (the read ends of pipes carrying secret values).
    """
    argv: List[str] = [binary, "--json", *args]
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            close_fds=True,
            pass_fds=tuple(pass_fds),
        )
    except OSError as exc:
        raise BinaryNotFoundError(
            f"cannot execute pyro binary {binary!r}: {exc.strerror or exc}",
            hint="set PYRO_BIN to the path of a built pyro binary",
        ) from exc
    try:
        out_b, err_b = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _terminate(proc)
        raise PyroTimeoutError(
            f"pyro {' '.join(args[:2])} did not finish within {timeout:g} s; it was stopped",
            hint="raise timeout_seconds, or the Pyro(call_timeout_seconds=...) allowance for boots and pulls",
        ) from None
    except BaseException:
        # KeyboardInterrupt and friends: let pyro clean up its VMs first.
        _terminate(proc)
        raise
    rc = proc.returncode
    stdout = out_b.decode("utf-8", errors="replace")
    stderr = err_b.decode("utf-8", errors="replace")
    try:
        data = json.loads(stdout) if stdout.strip() else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise InternalError(
            f"pyro {' '.join(args[:2])} exited with status {rc} without a JSON result"
            + (f": {_tail(stderr)}" if stderr.strip() else ""),
            returncode=rc,
            stderr=stderr,
        )
    err = data.get("error")
    if isinstance(err, dict) and set(data) == {"error"}:
        raise error_from_json(err, returncode=rc, stderr=stderr)
    if rc != 0 and not allow_nonzero_result:
        raise InternalError(
            f"pyro {' '.join(args[:2])} exited with status {rc}"
            + (f": {_tail(stderr)}" if stderr.strip() else ""),
            returncode=rc,
            stderr=stderr,
        )
    return data
