"""Exceptions raised by the pyro_mcp facade.

Every failure of pyro itself is a :class:`PyroError` carrying the ``code``,
``message`` and ``hint`` of pyro's JSON error object
(``{"error": {"code", "message", "hint"}}``). A guest command that exits
non-zero is *not* an error: its status is in the result's ``exit_code``.
"""

from __future__ import annotations

import builtins
from typing import Dict, Optional, Type

__all__ = [
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
    "error_from_json",
]


class PyroError(Exception):
    """A pyro operation failed.

    Attributes:
        code: pyro's stable error class (``"not_found"``, ``"invalid_argument"``, ...).
        message: pyro's message, as the CLI printed it.
        hint: what to do about it (may be ``""``).
        returncode: the exit status of the ``pyro`` process, or ``None``.
        stderr: what the ``pyro`` process wrote on stderr (logs, progress), or ``""``.
    """

    default_code = "internal"

    def __init__(
        self,
        message: str,
        *,
        code: Optional[str] = None,
        hint: str = "",
        returncode: Optional[int] = None,
        stderr: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        self.message = message
        self.hint = hint or ""
        self.returncode = returncode
        self.stderr = stderr or ""

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} (hint: {self.hint})"
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, hint={self.hint!r})"


class InvalidArgumentError(PyroError, ValueError):
    """The request was malformed (bad environment name, out-of-range value...)."""

    default_code = "invalid_argument"


class NotFoundError(PyroError, LookupError):
    """An environment, VM, workspace or path does not exist."""

    default_code = "not_found"


class AlreadyExistsError(PyroError):
    """The thing being created already exists."""

    default_code = "already_exists"


class ConflictError(PyroError):
    """An id prefix matches several objects, or a lock is held."""

    default_code = "conflict"


class FailedPreconditionError(PyroError):
    """The request is valid but the current state forbids it."""

    default_code = "failed_precondition"


class UnavailableError(PyroError):
    """No guest can be booted or reached on this host."""

    default_code = "unavailable"


class PyroTimeoutError(PyroError, builtins.TimeoutError):
    """A deadline passed: boot, pull, or the facade's own wall-clock guard.

    A guest command that runs past ``timeout_seconds`` is not this error:
    its result has ``timed_out=True`` (and ``exit_code`` 124).
    """

    default_code = "timeout"


class InternalError(PyroError):
    """A bug or an unexpected host failure in pyro (or unreadable output)."""

    default_code = "internal"


class BinaryNotFoundError(PyroError, FileNotFoundError):
    """The ``pyro`` binary could not be found or executed."""

    default_code = "binary_not_found"


_BY_CODE: Dict[str, Type[PyroError]] = {
    cls.default_code: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        AlreadyExistsError,
        ConflictError,
        FailedPreconditionError,
        UnavailableError,
        PyroTimeoutError,
        InternalError,
    )
}


def error_from_json(
    body: dict, *, returncode: Optional[int] = None, stderr: str = ""
) -> PyroError:
    """Build the exception for pyro's ``{"error": {...}}`` body (the inner object)."""
    code = str(body.get("code") or "internal")
    message = str(body.get("message") or "pyro failed")
    hint = str(body.get("hint") or "")
    cls = _BY_CODE.get(code, PyroError)
    return cls(message, code=code, hint=hint, returncode=returncode, stderr=stderr)
