"""Where the lake and the run folders live: a local folder, or an object store.

``lake.root`` and ``runs.root`` are a local path or a URL (``s3://bucket/prefix``, and
``gs://`` or ``abfs://`` through the same layer). The layer is pyarrow's filesystems
(``pyarrow.fs``): pyarrow is already a dependency, its S3 client takes the standard
``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``
variables and the rest of the AWS provider chain, and Arrow reads Parquet from it directly.

A local root stays a ``pathlib.Path``, so the local code (``os.replace``, fsync) is the
same as before and as fast. An object-store root becomes a ``RemotePath``, which offers
the few ``pathlib`` methods the pipeline uses over the store. Writing one object is
atomic there: a reader sees the old object or the new one, and an upload killed half way
leaves nothing visible (a multipart upload that never completed, which the bucket's
lifecycle rule aborts). Object stores have no folders: ``mkdir`` does nothing.

DuckDB cannot read the store (no extension is installed): a process reads lake files
through a local copy in its scratch folder (``scratch``), named by the file's content
hash like the file itself, so a copy is never stale.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.fs as pafs

from pipeline.errors import ObjectStoreError, ObjectStoreRefusedError

URL_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss", "az")
COPY_GRACE_SECONDS = 3600


def is_url(root: object) -> bool:
    """Whether ``root`` names an object store (``s3://...``) rather than a local path."""
    return isinstance(root, str) and root.split("://", 1)[0].lower() in URL_SCHEMES


def is_remote(path: object) -> bool:
    return isinstance(path, RemotePath)


def location(root: str | os.PathLike | RemotePath) -> Path | RemotePath:
    """``root`` as something to open, join and list: a ``Path``, or a ``RemotePath``."""
    if isinstance(root, RemotePath):
        return root
    if is_url(root):
        url = str(root).rstrip("/")
        store = _store_of(url)
        filesystem, bucket = _filesystem(store)
        return RemotePath(filesystem, url, (bucket + url[len(store) :]).rstrip("/"), store)
    return Path(root)


def scratch(root: str | os.PathLike | RemotePath) -> Path:
    """A local folder for the work a root's data needs on this machine: the root itself
    when local (DuckDB's spill under it, as before), else a folder in the system's
    temporary folder (``TMPDIR``), one per store location."""
    where = location(root)
    if not isinstance(where, RemotePath):
        return where
    key = hashlib.sha256(str(where).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"tiers-{key}"


def arrow_file(path: Path | RemotePath) -> tuple[str, pafs.FileSystem | None]:
    """``path`` as pyarrow's readers and writers take it: a path and its filesystem
    (None for a local file, which pyarrow then opens itself)."""
    if isinstance(path, RemotePath):
        return path.key, path.fs
    return str(path), None


def local_copy(path: Path | RemotePath, keep: set[str] | None = None) -> Path:
    """A local file with the content of ``path`` (``path`` itself when local).

    For content-addressed lake files only: a copy already made is reused. A new copy
    removes the copies beside it that are not in ``keep`` (older versions of the folder)
    and are over an hour old (another process may still be reading a version it just got).
    """
    if not isinstance(path, RemotePath):
        return path
    target = scratch(path.store) / "cache" / path.key
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{os.getpid()}-{uuid.uuid4().hex}")
    try:
        with (
            _translated(path),
            path.fs.open_input_stream(path.key) as source,
            open(tmp, "wb") as sink,
        ):
            shutil.copyfileobj(source, sink, 16 << 20)  # each read is one ranged GET
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    if keep is not None:
        old = time.time() - COPY_GRACE_SECONDS
        for sibling in target.parent.iterdir():
            if sibling.name in keep:  # other copies, and downloads killed half way
                continue
            with contextlib.suppress(FileNotFoundError):
                if sibling.stat().st_mtime < old:
                    sibling.unlink(missing_ok=True)
    return target


def keep_copy(local: Path, path: RemotePath) -> None:
    """Move a local file just uploaded to ``path`` to where ``local_copy`` looks for it."""
    target = scratch(path.store) / "cache" / path.key
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(local, target)


def download(path: RemotePath, local: Path) -> None:
    """Copy the object ``path`` to the local file ``local`` (not cached: for files that a
    rerun may replace under the same name, such as a run's computed tables)."""
    with (
        _translated(path),
        path.fs.open_input_stream(path.key) as source,
        open(local, "wb") as sink,
    ):
        shutil.copyfileobj(source, sink, 16 << 20)


def upload(local: Path, path: RemotePath) -> None:
    """Copy a local file to ``path``: one object, visible whole once the upload completes."""
    with (
        _translated(path),
        path.fs.open_output_stream(path.key) as sink,
        open(local, "rb") as source,
    ):
        shutil.copyfileobj(source, sink, 8 << 20)


class RemotePath:
    """An object (or a key prefix) in an object store, with the ``pathlib`` methods the
    pipeline uses. ``str()`` is its URL; ``key`` is the ``bucket/key`` pyarrow takes."""

    __slots__ = ("fs", "url", "key", "store")

    def __init__(self, fs: pafs.FileSystem, url: str, key: str, store: str) -> None:
        self.fs, self.url, self.key, self.store = fs, url, key, store

    def __truediv__(self, name: str) -> RemotePath:
        name = str(name).strip("/")
        return RemotePath(self.fs, f"{self.url}/{name}", f"{self.key}/{name}", self.store)

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"RemotePath({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def stem(self) -> str:
        return Path(self.name).stem

    @property
    def parent(self) -> RemotePath:
        url, key = self.url.rsplit("/", 1)[0], self.key.rsplit("/", 1)[0]
        return RemotePath(self.fs, url, key, self.store)

    def joinpath(self, *names: str) -> RemotePath:
        path = self
        for name in names:
            path = path / name
        return path

    def read_bytes(self) -> bytes:
        with _translated(self), self.fs.open_input_stream(self.key) as stream:
            return stream.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> None:
        """One object write: readers see the old content or this, never part of it."""
        with _translated(self), self.fs.open_output_stream(self.key) as stream:
            stream.write(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(text.encode(encoding))

    def info(self) -> pafs.FileInfo:
        with _translated(self):
            return self.fs.get_file_info(self.key)

    def exists(self) -> bool:
        return self.info().type != pafs.FileType.NotFound

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Object stores have no folders: a key's prefix exists once an object has it."""

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            with _translated(self):
                self.fs.delete_file(self.key)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def listing(self, recursive: bool = False) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(self.key, allow_not_found=True, recursive=recursive)
        with _translated(self):
            return self.fs.get_file_info(selector)


def modified_before(info: pafs.FileInfo, moment: datetime) -> bool:
    mtime = info.mtime
    if mtime is None:
        return True
    if mtime.tzinfo is None:
        mtime = mtime.replace(tzinfo=UTC)
    return mtime < moment


def _store_of(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.split('/', 1)[0]}"


@functools.cache
def _filesystem(store: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem of a bucket, made once per process, and the bucket checked: a missing
    bucket would otherwise read as a lake with no month in it."""
    try:
        filesystem, bucket = pafs.FileSystem.from_uri(store)
    except (OSError, ValueError) as exc:
        raise _store_error(store, exc) from None
    with _translated(store):
        info = filesystem.get_file_info(bucket)
    if info.type == pafs.FileType.NotFound:
        raise ObjectStoreRefusedError(
            f"{store}: the bucket does not exist (or these credentials cannot see it); create "
            "it, or point lake.root / runs.root (TIERS__LAKE__ROOT, TIERS__RUNS__ROOT) at one "
            "that exists"
        )
    return filesystem, bucket


class _translated:
    """Turn the store's errors (other than a missing object) into one clear ObjectStoreError."""

    def __init__(self, where: RemotePath | str) -> None:
        self.where = str(where)

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> bool:
        if exc is None or isinstance(exc, FileNotFoundError | ObjectStoreError):
            return False
        if isinstance(exc, OSError):
            raise _store_error(self.where, exc) from None
        return False


def _store_error(where: str, exc: BaseException) -> ObjectStoreError:
    """The store's error told: which object, the cause, the fix; an ObjectStoreRefusedError
    when the store answered no (retrying cannot help), else an ObjectStoreError."""
    text = " ".join(str(exc).split())
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or "the provider's default endpoint"
    if "NO_SUCH_BUCKET" in text or "NoSuchBucket" in text:
        cause = "the bucket does not exist"
        fix = "create it, or point lake.root / runs.root at one that exists"
        kind = ObjectStoreRefusedError
    elif any(
        code in text
        for code in ("NETWORK_CONNECTION", "curlCode", "Could not connect", "Couldn't connect")
    ):
        cause = f"the object store at {endpoint} cannot be reached"
        fix = "check AWS_ENDPOINT_URL and that the server is up"
        kind = ObjectStoreError
    elif any(
        code in text
        for code in (
            "ACCESS_DENIED",
            "AccessDenied",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "INVALID_ACCESS_KEY_ID",
            "SIGNATURE_DOES_NOT_MATCH",
            "HTTP status 403",
            "Forbidden",
        )
    ):
        cause = "access denied"
        fix = (
            "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the role) and the bucket's policy"
        )
        kind = ObjectStoreRefusedError
    else:
        cause = text[:300]
        fix = "check AWS_ENDPOINT_URL, AWS_REGION and the credentials"
        kind = ObjectStoreError  # the store's own faults (timeouts, 5xx, throttling) pass
    return kind(f"{where}: {cause} ({text[:200]}); {fix}")
