"""A minimal, standard-library-only PEP 517/660 build backend for pyro-mcp.

It exists so that ``pip install ./python`` works on machines with no access
to a package index: pip needs nothing but this file to build the wheel.
The package is pure Python: the wheel holds ``pyro_mcp/`` and its
``.dist-info``; the sdist holds this directory's sources.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tarfile
import zipfile

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PACKAGE = "pyro_mcp"
_TAG = "py3-none-any"


def _project():
    """Read name, version, description and requires-python from pyproject.toml."""
    with open(os.path.join(_ROOT, "pyproject.toml"), encoding="utf-8") as f:
        text = f.read()
    try:
        import tomllib  # Python 3.11+

        project = tomllib.loads(text)["project"]
        return {k: project.get(k, "") for k in ("name", "version", "description", "requires-python")}
    except ImportError:
        section = text.split("[project]", 1)[1].split("\n[", 1)[0]
        out = {}
        for key in ("name", "version", "description", "requires-python"):
            m = re.search(r'^%s\s*=\s*"([^"]*)"' % re.escape(key), section, re.M)
            out[key] = m.group(1) if m else ""
        return out


def _dist_name(p):
    return re.sub(r"[-_.]+", "_", p["name"]).lower() + "-" + p["version"]


def _metadata(p):
    lines = [
        "Metadata-Version: 2.1",
        "Name: %s" % p["name"],
        "Version: %s" % p["version"],
        "Summary: %s" % p["description"],
        "License: Apache-2.0",
    ]
    if p.get("requires-python"):
        lines.append("Requires-Python: %s" % p["requires-python"])
    readme = os.path.join(_ROOT, "README.md")
    body = ""
    if os.path.exists(readme):
        lines.append("Description-Content-Type: text/markdown")
        with open(readme, encoding="utf-8") as f:
            body = f.read()
    return "\n".join(lines) + "\n\n" + body


def _wheel_file():
    return "Wheel-Version: 1.0\nGenerator: pyro_mcp_build\nRoot-Is-Purelib: true\nTag: %s\n" % _TAG


def _package_files():
    base = os.path.join(_ROOT, _PACKAGE)
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith((".pyc", ".pyo")):
                continue
            full = os.path.join(dirpath, name)
            yield full, os.path.relpath(full, _ROOT).replace(os.sep, "/")


def _write_wheel(wheel_directory, files):
    """files: list of (archive name, bytes). Adds dist-info and RECORD."""
    p = _project()
    dist = _dist_name(p)
    info = dist + ".dist-info"
    files = list(files) + [
        (info + "/METADATA", _metadata(p).encode("utf-8")),
        (info + "/WHEEL", _wheel_file().encode("utf-8")),
        (info + "/top_level.txt", (_PACKAGE + "\n").encode("utf-8")),
    ]
    record = []
    for name, data in files:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")
        record.append("%s,sha256=%s,%d" % (name, digest, len(data)))
    record.append(info + "/RECORD,,")
    files.append((info + "/RECORD", ("\n".join(record) + "\n").encode("utf-8")))
    filename = "%s-%s.whl" % (dist, _TAG)
    os.makedirs(wheel_directory, exist_ok=True)
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            zi = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(zi, data)
    return filename


def _read(path):
    with open(path, "rb") as f:
        return f.read()


# -- PEP 517 -------------------------------------------------------------


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _write_wheel(wheel_directory, [(arc, _read(full)) for full, arc in _package_files()])


def build_sdist(sdist_directory, config_settings=None):
    p = _project()
    base = _dist_name(p)
    filename = base + ".tar.gz"
    os.makedirs(sdist_directory, exist_ok=True)
    members = [(full, arc) for full, arc in _package_files()]
    for extra in ("pyproject.toml", "README.md", "_build/pyro_mcp_build.py"):
        full = os.path.join(_ROOT, extra)
        if os.path.exists(full):
            members.append((full, extra))
    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz", format=tarfile.PAX_FORMAT) as tf:
        for full, arc in members:
            data = _read(full)
            ti = tarfile.TarInfo(base + "/" + arc)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1577836800
            tf.addfile(ti, io.BytesIO(data))
        pkg_info = _metadata(p).encode("utf-8")
        ti = tarfile.TarInfo(base + "/PKG-INFO")
        ti.size, ti.mode, ti.mtime = len(pkg_info), 0o644, 1577836800
        tf.addfile(ti, io.BytesIO(pkg_info))
    return filename


# -- PEP 660 (pip install -e ./python) ---------------------------------------


def get_requires_for_build_editable(config_settings=None):
    return []


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    pth = (_ROOT + "\n").encode("utf-8")
    return _write_wheel(wheel_directory, [("__editable__.pyro_mcp.pth", pth)])
