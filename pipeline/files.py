"""Writing a file so that a reader sees the old one or the new one, never half of one.

The lake's manifests, the warehouse's state and catalog, gate reports, the report page and
the notify ledger are all written this way: into a temporary name beside the target,
flushed to disk, renamed over the target (atomic on one file system), and the folder
flushed so that the rename survives a crash. On an object store (``pipeline/storage.py``)
one object write gives the same guarantee.
"""

from __future__ import annotations

import os
import uuid
from contextlib import suppress
from pathlib import Path

from pipeline.storage import RemotePath


def fsync(path: Path) -> None:
    """Flush a file (or a folder's entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename); file systems that refuse it are left be."""
    with suppress(OSError):
        fsync(folder)


def atomic_write(path: Path | RemotePath, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` (text as UTF-8) in one step."""
    if isinstance(path, RemotePath):  # one object write is atomic on an object store
        path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        return
    path = Path(path)
    tmp = path.with_name(f".tmp-{os.getpid()}-{uuid.uuid4().hex}-{path.name}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
