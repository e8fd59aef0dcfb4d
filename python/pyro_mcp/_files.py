"""Files in and out of a running workspace: the file methods of :class:`Pyro`.

Each method runs one ``pyro workspace ...`` command with ``--json`` and
returns its JSON result; every path is confined to ``/workspace`` in the
guest (relative paths are under it), and a stopped workspace is booted
first.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Union

from .errors import InvalidArgumentError

DEFAULT_FILE_READ_BYTES = 65536
_WORKSPACE = "/workspace"


def _text(kind: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{kind} must be a str, got {value!r}")
    return value


def _id(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or value.startswith("-"):
        raise InvalidArgumentError(f"workspace_id must be a non-empty string not starting with '-', got {value!r}")
    return value


def _wspath(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(f"{kind} must be a non-empty string, got {value!r}")
    # A guest path starting with '-' would read as a flag: anchor it.
    return "./" + value if value.startswith("-") else value


class WorkspaceFilesMixin:
    """The file methods of :class:`Pyro` (``pyro workspace file|patch|export|diff|summary``)."""

    def _call(self, args: List[str], **kw: Any) -> Dict[str, Any]:  # provided by Pyro
        raise NotImplementedError

    def list_workspace_files(self, workspace_id: str, path: str = _WORKSPACE, recursive: bool = False) -> Dict[str, Any]:
        """List a directory of a workspace (``pyro workspace file list``):
        ``{"workspace_id", "path", "recursive", "entries": [{"path", "type", "size", "mode", "mtime", "link_target"?}], "count"}``."""
        if not isinstance(recursive, bool):
            raise InvalidArgumentError(f"recursive must be a bool, got {recursive!r}")
        args = ["workspace", "file", "list", _id(workspace_id), _wspath("path", path)]
        if recursive:
            args.append("--recursive")
        return self._call(args)

    def read_workspace_file(self, workspace_id: str, path: str, max_bytes: int = DEFAULT_FILE_READ_BYTES) -> Dict[str, Any]:
        """Read at most ``max_bytes`` of a file of a workspace (``pyro workspace file read``):
        ``{"path", "size", "content", "encoding", "truncated", "sha256"}``; ``encoding`` is
        ``"utf-8"`` or ``"base64"`` (content that is not UTF-8)."""
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise InvalidArgumentError(f"max_bytes must be a positive int, got {max_bytes!r}")
        args = ["workspace", "file", "read", _id(workspace_id), _wspath("path", path), f"--max-bytes={max_bytes}"]
        return self._call(args)

    def write_workspace_file(self, workspace_id: str, path: str, text: Union[str, bytes], *, mode: Optional[int] = None) -> Dict[str, Any]:
        """Replace or create a file of a workspace with ``text`` (str, or bytes for binary
        content), atomically, creating its parent directories (``pyro workspace file write``):
        ``{"path", "bytes", "sha256", "mode", "created"}``. ``mode`` (e.g. ``0o755``) sets its
        permission bits; by default an existing file keeps its own."""
        if isinstance(text, str):
            data = text.encode("utf-8")
        elif isinstance(text, (bytes, bytearray)):
            data = bytes(text)
        else:
            raise InvalidArgumentError(f"text must be str or bytes, got {type(text).__name__}")
        args = ["workspace", "file", "write", _id(workspace_id), _wspath("path", path), "--stdin"]
        if mode is not None:
            if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777:
                raise InvalidArgumentError(f"mode must be permission bits such as 0o644, got {mode!r}")
            args.append(f"--mode={mode:o}")
        return self._call(args, stdin=data)

    def apply_workspace_patch(self, workspace_id: str, patch: str) -> Dict[str, Any]:
        """Apply a unified diff under ``/workspace``, all or nothing (``pyro workspace patch apply``):
        ``{"files": [{"path", "status", "insertions", "deletions"}], "count", ...}``. A hunk that does
        not apply raises :class:`ConflictError` naming the file, the hunk and the lines; nothing changed."""
        if not isinstance(patch, str) or not patch.strip():
            raise InvalidArgumentError("patch must be a non-empty unified diff")
        args = ["workspace", "patch", "apply", _id(workspace_id), "--patch-file=-"]
        return self._call(args, stdin=patch.encode("utf-8"))

    def export_workspace(self, workspace_id: str, path: str, output_path: Union[str, "os.PathLike[str]"], *, force: bool = False) -> Dict[str, Any]:
        """Copy a file or directory out of ``/workspace`` to ``output_path`` on the host, as itself
        or as a ``.tar``/``.tar.gz``/``.tgz`` when its name says so (``pyro workspace export``):
        ``{"path", "output_path", "format", "entries", "bytes", "skipped"}``. An existing output is
        replaced only with ``force=True``."""
        try:
            out = os.fspath(output_path)
        except TypeError:
            raise InvalidArgumentError(f"output_path must be a path, got {output_path!r}") from None
        if not isinstance(out, str) or not out:
            raise InvalidArgumentError(f"output_path must be a non-empty path, got {output_path!r}")
        if not isinstance(force, bool):
            raise InvalidArgumentError(f"force must be a bool, got {force!r}")
        args = ["workspace", "export", _id(workspace_id), _wspath("path", path), f"--output={os.path.abspath(out)}"]
        if force:
            args.append("--force")
        return self._call(args)

    def diff_workspace(self, workspace_id: str, *, paths: Optional[Sequence[str]] = None, stat: bool = False, name_only: bool = False) -> Dict[str, Any]:
        """What changed in ``/workspace`` since the workspace's baseline (``pyro workspace diff``):
        ``{"entries": [{"path", "status", "binary", "insertions", "deletions", "patch"}], "count", ...}``;
        ``stat`` or ``name_only`` leave out the patch text."""
        if not isinstance(stat, bool) or not isinstance(name_only, bool):
            raise InvalidArgumentError("stat and name_only must be bools")
        if stat and name_only:
            raise InvalidArgumentError("give at most one of stat and name_only")
        args = ["workspace", "diff", _id(workspace_id)]
        if stat:
            args.append("--stat")
        if name_only:
            args.append("--name-only")
        if paths is not None:
            if isinstance(paths, str) or not all(isinstance(p, str) and p for p in paths):
                raise InvalidArgumentError(f"paths must be a list of non-empty strings, got {paths!r}")
            args += ["--", *paths]
        return self._call(args)

    def summarize_workspace(self, workspace_id: str) -> Dict[str, Any]:
        """A review card since create or the last reset (``pyro workspace summary``): commands with
        exit codes, file writes, patches, syncs, exports, and the files changed since the baseline."""
        return self._call(["workspace", "summary", _id(workspace_id)])
