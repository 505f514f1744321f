"""Publishing a lake partition atomically, on a local disk or on an object store.

A partition is published by atomically replacing its manifest; readers only ever open the
files the manifest names (``pipeline/lake/partition.py``). The files the replaced manifest
named stay for ``lake.orphan_grace_seconds`` (the manifest's ``superseded``), for a run
still reading them; a month's writers take turns (a lock per partition folder).

On an object store (``lake.root = "s3://..."``, ``pipeline/storage.py``) the same holds
without a rename: the content-addressed files are uploaded first (each visible whole or not
at all), then the manifest is written as one object; files replaced (or never named) are removed
once replaced (or written) longer ago than ``lake.orphan_grace_seconds``, so that a
concurrent reader or writer of the month still finds the files of the manifest it read.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.errors import MonthBusyError
from pipeline.files import atomic_write, exclusive_lock, fsync_dir
from pipeline.lake.partition import Manifest, content_hash, named_files, stat_key


def publish_partition(
    folder: Path,
    good: pa.Table,
    derived: dict[str, pa.Table],
    manifest: Manifest,
    *,
    orphan_grace_seconds: int = 0,
    lock_timeout: float = 3600.0,
) -> None:
    if storage.is_remote(folder):
        _publish_remote_partition(folder, good, derived, manifest, orphan_grace_seconds)
        return
    folder.mkdir(parents=True, exist_ok=True)
    with _publishing(folder, lock_timeout):  # one writer of the month's folder at a time
        before = {child.name for child in folder.iterdir()}
        try:
            data_name = _publish_file(folder, "part", good)
            manifest.data_files = [data_name]
            for table, rows in derived.items():
                setattr(manifest, f"{table}_file", _publish_file(folder, table, rows))
            now = datetime.now(UTC)
            manifest.superseded = _superseded(folder, manifest, now, orphan_grace_seconds)
            manifest.extracted_at = now.isoformat(timespec="seconds")
            atomic_write(folder / "manifest.json", json.dumps(asdict(manifest), indent=2) + "\n")
        except BaseException:  # a full disk: the old manifest and its files stay, nothing new
            for child in folder.iterdir():
                if child.name not in before:
                    child.unlink(missing_ok=True)
            raise
        keep = {*named_files(manifest), *manifest.superseded, "manifest.json"}
        for child in folder.iterdir():  # under the lock, no other writer's file is in flight
            if child.name not in keep and child.is_file():
                child.unlink(missing_ok=True)


@contextmanager
def _publishing(folder: Path, timeout: float) -> Iterator[None]:
    """The lock of a local partition folder's writers (its files and manifest are replaced
    together); a writer waits for the one before it, whose publish takes seconds."""
    lock = folder.parent / ".locks" / f"{folder.name}.lock"
    with exclusive_lock(
        lock,
        timeout=timeout,
        busy=lambda holder: MonthBusyError(
            f"{folder}: another extract of the month still held {lock} after "
            f"{timeout:g} s (held by {holder}). If that process hangs, stop it (the "
            "partition stays as it was), then extract the month again."
        ),
    ):
        yield


def _superseded(folder: Path, manifest: Manifest, now: datetime, grace: int) -> dict[str, str]:
    """The files the month's current manifest names or kept that ``manifest`` does not name,
    each with when it stopped being named; those superseded longer than ``grace`` seconds
    ago are left out (removed after the publish)."""
    try:
        current = Manifest(**json.loads((folder / "manifest.json").read_text()))
    except (OSError, ValueError, TypeError):  # a first extract, or an unreadable manifest
        return {}
    named = named_files(manifest)
    cutoff = now - timedelta(seconds=grace)
    kept = {
        name: since
        for name, since in current.superseded.items()
        if name not in named and datetime.fromisoformat(since) > cutoff
    }
    if grace > 0:
        stamp = now.isoformat(timespec="seconds")
        kept |= {name: stamp for name in sorted(named_files(current) - named)}
    return dict(sorted(kept.items()))


def publish_table(folder: Path, stem: str, table: pa.Table) -> None:
    """Replace ``folder/<stem>.parquet`` atomically; remove it when the table is empty."""
    target = folder / f"{stem}.parquet"
    if table.num_rows == 0:
        target.unlink(missing_ok=True)
        return
    if storage.is_remote(folder):
        with _staging(folder) as staging:
            storage.upload(_write_tmp_parquet(staging, table), target)
        return
    folder.mkdir(parents=True, exist_ok=True)
    tmp = _write_tmp_parquet(folder, table)
    try:
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(folder)


def _publish_file(folder: Path, stem: str, table: pa.Table) -> str:
    """Write a content-addressed Parquet file; return its name."""
    tmp = _write_tmp_parquet(folder, table)
    try:
        digest = content_hash(str(tmp), *stat_key(tmp))
        name = f"{stem}-{digest}.parquet"
        os.replace(tmp, folder / name)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(folder)
    return name


def _write_tmp_parquet(folder: Path, table: pa.Table) -> Path:
    tmp = folder / f".tmp-{uuid.uuid4().hex}.parquet"
    try:
        pq.write_table(table, tmp, compression="zstd")
        written = pq.ParquetFile(tmp).metadata.num_rows
        if written != table.num_rows:  # read back before publishing
            raise RuntimeError(f"{tmp}: wrote {written} rows for {table.num_rows}")
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
    except BaseException:  # a full disk leaves no half-written file behind
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _publish_remote_partition(
    folder: storage.RemotePath,
    good: pa.Table,
    derived: dict[str, pa.Table],
    manifest: Manifest,
    orphan_grace_seconds: int,
) -> None:
    """The object-store publish: upload the content-addressed files (each visible whole or
    not at all), then write the manifest as one object, the step that publishes; then remove
    the files no manifest names that are older than the grace period."""
    names = {}
    with _staging(folder) as staging:
        for stem, table in {"part": good, **derived}.items():
            tmp = _write_tmp_parquet(staging, table)
            names[stem] = f"{stem}-{content_hash(str(tmp), *stat_key(tmp))}.parquet"
            target = folder / names[stem]
            if not target.exists():  # content-addressed: an object of this name has this content
                storage.upload(tmp, target)
            storage.keep_copy(tmp, target)  # this process's next step reads it without a download
    manifest.data_files = [names["part"]]
    for table in derived:
        setattr(manifest, f"{table}_file", names[table])
    now = datetime.now(UTC)
    manifest.superseded = _superseded(folder, manifest, now, orphan_grace_seconds)
    manifest.extracted_at = now.isoformat(timespec="seconds")
    (folder / "manifest.json").write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    # a file neither named nor kept is a concurrent writer's (its manifest lost the race, or
    # is not written yet): its age is at least as long as it has been unnamed
    keep = {*names.values(), *manifest.superseded, "manifest.json"}
    cutoff = now - timedelta(seconds=orphan_grace_seconds)
    for info in folder.listing():
        if info.base_name not in keep and storage.modified_before(info, cutoff):
            (folder / info.base_name).unlink(missing_ok=True)


class _staging:
    """A local folder for the files of one publish to an object store, removed afterwards;
    folders left by a killed process on this machine are removed on the way in."""

    def __init__(self, folder: storage.RemotePath) -> None:
        self.parent = storage.scratch(folder.store) / "staging"
        self.path = self.parent / f"{os.getpid()}-{uuid.uuid4().hex}"

    def __enter__(self) -> Path:
        self.parent.mkdir(parents=True, exist_ok=True)
        for left in self.parent.iterdir():
            owner = left.name.split("-", 1)[0]
            if not owner.isdigit() or not _process_alive(int(owner)):
                shutil.rmtree(left, ignore_errors=True)
        self.path.mkdir()
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
