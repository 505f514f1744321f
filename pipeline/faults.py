"""Faults of the machine, told as messages: a full disk, a read-only or forbidden folder.

A step that fails on a write gets an ``OSError`` from Python, pyarrow or DuckDB (DuckDB's
``IOException`` carries the system's words, not an errno). ``storage_fault`` recognises
them and says which file could not be written, why, which setting names its folder and
what to do; the writers themselves (``files.atomic_write``, the lake's and the warehouse's
temporary files) never leave half a file behind, so the message can say the data is as
it was.
"""

from __future__ import annotations

import errno
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import DiskFullError, MemoryLimitError, StorageError

if TYPE_CHECKING:
    from pipeline.config import Config


# errno -> (the cause in words, what to do about it)
_CAUSES = {
    errno.ENOSPC: ("no space is left on the device", "free space there"),
    errno.EDQUOT: ("the disk quota is exhausted", "free space there or raise the quota"),
    errno.EROFS: ("the file system is read-only", "remount it read-write"),
    errno.EACCES: ("permission denied", "give the user running tiers write access to it"),
    errno.EPERM: ("operation not permitted", "give the user running tiers write access to it"),
}
# DuckDB reports the system's message, not the errno
_WORDS = {
    "no space left on device": errno.ENOSPC,
    "disk quota exceeded": errno.EDQUOT,
    "read-only file system": errno.EROFS,
    "permission denied": errno.EACCES,
}
_QUOTED_PATH = re.compile(r"""["'](/[^"']+)["']""")
_BARE_PATH = re.compile(r"(/[^\s\"':;,]+)")


def _errno_of(exc: BaseException) -> int | None:
    code = getattr(exc, "errno", None)
    if code in _CAUSES:
        return code
    text = str(exc).lower()
    return next((code for words, code in _WORDS.items() if words in text), None)


def _path_of(exc: BaseException) -> Path | None:
    name = getattr(exc, "filename", None)
    if name:
        return Path(name)
    text = str(exc)
    match = _QUOTED_PATH.search(text) or _BARE_PATH.search(text)
    return Path(match.group(1)) if match else None


def _setting_of(path: Path, cfg: Config | None) -> str | None:
    """The configuration key that names the folder ``path`` lies in."""
    if cfg is None:
        return None
    folders = [("[lake] root", Path(cfg.lake.root)), ("[runs] root", Path(cfg.runs.root))]
    if cfg.warehouse.url.startswith("duckdb:///"):
        catalog = Path(cfg.warehouse.url.removeprefix("duckdb:///"))
        folders.append(("[warehouse] url", catalog.parent))
    resolved = path.resolve()
    for setting, folder in sorted(folders, key=lambda f: -len(str(f[1].resolve()))):
        if resolved.is_relative_to(folder.resolve()):
            return setting
    return None


def _space(path: Path) -> str:
    folder = next((p for p in (path, *path.parents) if p.exists()), None)
    if folder is None:
        return ""
    usage = shutil.disk_usage(folder)
    return f" ({usage.free / 2**20:.1f} MiB free of {usage.total / 2**20:.1f} MiB)"


def storage_fault(
    exc: BaseException, cfg: Config | None = None, where: Path | None = None
) -> StorageError | None:
    """``exc`` told as a StorageError if it is a full, read-only or forbidden disk, else None.

    ``where`` is the file or folder the failing step was writing, for errors that do not
    name their path (pyarrow's do not)."""
    if isinstance(exc, StorageError):
        return exc
    if not isinstance(exc, OSError) and not _looks_like_io(exc):
        return None
    code = _errno_of(exc)
    if code is None:
        return None
    cause, remedy = _CAUSES[code]
    path = _path_of(exc) or where
    shown = str(path) if path else "a file"
    setting = _setting_of(path, cfg) if path else None
    full = code in (errno.ENOSPC, errno.EDQUOT)  # space can come back; the others need someone
    space = _space(path) if path and full else ""
    elsewhere = f", or point {setting} at another folder" if setting else ""
    return (DiskFullError if full else StorageError)(
        f"cannot write {shown}: {cause}{space}. Nothing half-written was kept: what was "
        f"there before is as it was. To go on, {remedy}{elsewhere}, then run the command "
        "again."
    )


def _looks_like_io(exc: BaseException) -> bool:
    """DuckDB's IOException and friends (they are not OSErrors)."""
    return type(exc).__name__ in {"IOException", "IOError", "PermissionException"}


def memory_fault(exc: BaseException, cfg: Config) -> MemoryLimitError | None:
    """A DuckDB out-of-memory error told with the setting that bounds it."""
    import duckdb

    if not isinstance(exc, duckdb.OutOfMemoryException):
        return None
    return MemoryLimitError(
        f"DuckDB needed more memory than [lake] memory_limit ({cfg.lake.memory_limit}) "
        "allows, for work it cannot spill to disk; nothing of this month was loaded. Raise "
        "it where the machine has the memory ([lake] memory_limit, or "
        "TIERS__LAKE__MEMORY_LIMIT=4GB) and run the month again. "
        f"DuckDB said: {str(exc).splitlines()[0]}"
    )
