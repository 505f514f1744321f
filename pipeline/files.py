"""Writing a file so that a reader sees the old one or the new one, never half of one.

The lake's manifests, the warehouse's state and catalog, gate reports, the report page and
the notify ledger are all written this way: into a temporary name beside the target,
flushed to disk, renamed over the target (atomic on one file system), and the folder
flushed so that the rename survives a crash. On an object store (``pipeline/storage.py``)
one object write gives the same guarantee.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
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


@contextmanager
def exclusive_lock(
    path: Path,
    *,
    timeout: float,
    busy: Callable[[str], Exception],
    holder: str = "",
    waiting: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold an ``fcntl`` lock on ``path`` (a local file, created if missing) while the block
    runs. A process that finds it held waits at most ``timeout`` seconds, calling
    ``waiting`` once with the holder's description; then it raises ``busy(description)``.
    The holder writes who it is (``holder``, its pid, host and since when) into the file,
    for the message of the next one that waits. The lock ends with the process, whatever
    kills it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as lock:
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                described = _holder_of(path)
                if time.monotonic() >= deadline:
                    raise busy(described) from None
                if waiting is not None and not told:
                    waiting(described)
                    told = True
                time.sleep(0.05)
        try:
            lock.seek(0)
            lock.truncate()
            since = datetime.now(UTC).isoformat(timespec="seconds")
            lock.write(f"{holder}pid {os.getpid()} on {socket.gethostname()} since {since}\n")
            lock.flush()
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _holder_of(path: Path) -> str:
    try:
        return path.read_text().strip() or "a process that did not say who it is"
    except OSError:
        return "a process that did not say who it is"
