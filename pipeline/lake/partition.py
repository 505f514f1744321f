"""The lake's partitions: what one holds, and reading it.

A partition is one business month of one dataset (the payments, or the service
activities): its files and the ``manifest.json`` that names them. Readers only ever open
the files the manifest names, each verified against the content hash its name carries,
so a half-written file, a killed extract or an orphan temporary file is never read.
``hold_months`` keeps two runs of a month on one machine from interleaving.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.config import Config
from pipeline.errors import CorruptPartitionError, MissingMonthError, MonthBusyError
from pipeline.files import exclusive_lock
from pipeline.months import format_month, parse_month

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: the partition carries its derived customer_month and ranking
PAYMENTS_SCHEMA = pa.schema(
    [
        pa.field("payment_id", pa.string(), nullable=False),
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("paid_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("amount", pa.decimal128(18, 2), nullable=False),
        pa.field("currency", pa.string()),
        pa.field("units", pa.int64()),
        pa.field("cost", pa.decimal128(18, 2)),
        pa.field("month", pa.date32(), nullable=False),
    ]
)
_RAW_COLUMNS = ("payment_id", "customer_id", "paid_at", "amount", "currency", "units", "cost")
ACTIVITIES_SCHEMA = pa.schema(
    [
        pa.field("activity_id", pa.string(), nullable=False),
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("occurred_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("hours", pa.decimal128(18, 2)),
        pa.field("cost", pa.decimal128(18, 2)),
        pa.field("kind", pa.string()),
        pa.field("month", pa.date32(), nullable=False),
    ]
)


@dataclass(frozen=True)
class Dataset:
    """What the lake holds of one source: the payments of [source] or the service
    activities of [service] (spec: "Service effort and cost to serve"). Both are extracted,
    judged, deduplicated, quarantined and published by the same code; this names what
    differs. A manifest's amount_sum, paid_at_* and payment_id_* fields hold, for the
    activities, the sum of cost, the range of occurred_at and the range of activity_id."""

    name: str  # the lake folder and the suffix of the staging tables: payments, activities
    section: str  # the configuration section of its source
    noun: str  # one row, in messages
    plural: str
    id: str  # unique per row across the whole source
    time: str  # places a row in its month
    money: str  # the column whose exact sum the manifest keeps (amount_sum)
    schema: pa.Schema
    raw_columns: tuple[str, ...]
    quarantine: str  # the folder of its bad rows under <lake>/quarantine/
    # a month without rows in an active history is a failed delivery (payments); a month of
    # the activities may hold none
    refuse_empty: bool

    def source(self, cfg: Config):  # SourceConfig | ServiceConfig
        source = getattr(cfg, self.section)
        if source is None:
            raise ValueError(f"the configuration has no [{self.section}] section")
        return source


PAYMENTS = Dataset(
    "payments", "source", "payment", "payments", "payment_id", "paid_at", "amount",
    PAYMENTS_SCHEMA, _RAW_COLUMNS, "", True,
)  # fmt: skip
ACTIVITIES = Dataset(
    "activities", "service", "activity", "activities", "activity_id", "occurred_at", "cost",
    ACTIVITIES_SCHEMA, ("activity_id", "customer_id", "occurred_at", "hours", "cost", "kind"),
    "activities", False,
)  # fmt: skip
DATASETS = {d.name: d for d in (PAYMENTS, ACTIVITIES)}


@dataclass
class Manifest:
    month: str
    source_kind: str
    source: str
    columns_present: list[str]
    rows_read: int
    rows_duplicate: int
    rows_quarantined: int
    rows_undated: int
    rows_written: int
    amount_sum: str
    paid_at_min: str | None
    paid_at_max: str | None
    fingerprint: str
    data_files: list[str]
    problems: dict[str, int] = field(default_factory=dict)
    customer_month_file: str | None = None  # None in partitions of schema version 1
    monthly_ranking_file: str | None = None  # likewise
    customer_service_file: str | None = None  # an activity partition's customer_service
    customer_service_kind_file: str | None = None  # and its activities by kind
    provisional: bool = False  # extracted before the month ended (asked for explicitly)
    payment_id_min: str | None = None  # the range of the month's payment_ids, so that the
    payment_id_max: str | None = None  # check across months reads only months it overlaps
    schema_version: int = SCHEMA_VERSION
    extracted_at: str = ""
    # good rows read whose float amount or cost was read as its nearest cent (spec, "Input:
    # payments"); 0 in manifests from before floats were read so, which refused them
    rows_rounded: int = 0
    # files an earlier manifest of the month named, with when they stopped being named: kept
    # for lake.orphan_grace_seconds, for a run still reading the manifest it read
    superseded: dict[str, str] = field(default_factory=dict)


def partition_dir(lake_root: Path, month: date, dataset: Dataset = PAYMENTS) -> Path:
    return storage.location(lake_root) / dataset.name / f"month={format_month(month)}"


def read_manifest(lake_root: Path, month: date, dataset: Dataset = PAYMENTS) -> Manifest:
    path = partition_dir(lake_root, month, dataset) / "manifest.json"
    try:
        data = json.loads(path.read_text())
        return Manifest(**data)
    except FileNotFoundError:
        what = "" if dataset is PAYMENTS else f"the {dataset.plural} of "
        raise MissingMonthError(
            f"{what}month {format_month(month)} {'are' if what else 'is'} not in the lake "
            f"({path} missing): extract it first (tiers extract --month {format_month(month)}"
            f"{'' if dataset is PAYMENTS else ' extracts the payments and the activities'}); "
            f"a month is computed only once every month it reads was extracted"
        ) from None
    except (ValueError, TypeError) as exc:  # truncated JSON, unknown or missing keys
        raise CorruptPartitionError(
            f"month {format_month(month)}: the lake manifest {path} cannot be read ({exc}). "
            + _REPAIR.format(month=format_month(month))
        ) from None


_REPAIR = (
    "Re-extract the month from the source (tiers extract --month {month}, then "
    "tiers run --month {month} --no-extract --cascade to recompute what read it)."
)


def month_files(lake_root: Path, month: date, dataset: Dataset = PAYMENTS) -> list[str]:
    """The payment (or activity) files of a month, as its manifest names them, each verified
    to be the file the extract wrote (its content hash; the raw gate checked its rows)."""
    manifest = read_manifest(lake_root, month, dataset)
    folder = partition_dir(lake_root, month, dataset)
    keep = named_files(manifest)
    return [_verified(folder / name, month, keep) for name in manifest.data_files]


def named_files(manifest: Manifest) -> set[str]:
    """The files a manifest names (an object-store lake keeps local copies of these only)."""
    derived = {
        manifest.customer_month_file,
        manifest.monthly_ranking_file,
        manifest.customer_service_file,
        manifest.customer_service_kind_file,
    } - {None}
    return {*manifest.data_files, *derived}


def _verified(path: Path, month: date, keep: set[str] | None = None) -> str:
    """``path`` if its content still has the hash its content-addressed name carries (on an
    object store: the path of a local copy, which DuckDB can read)."""
    expected = path.stem.rsplit("-", 1)[-1]
    try:
        local = storage.local_copy(path, keep)
        actual = content_hash(str(local), *stat_key(local))
    except FileNotFoundError:
        raise CorruptPartitionError(
            f"month {format_month(month)}: the manifest names {path}, which is missing. "
            + _REPAIR.format(month=format_month(month))
        ) from None
    if actual != expected:
        if local != path:  # a damaged copy: the next read fetches the object again
            local.unlink(missing_ok=True)
        raise CorruptPartitionError(
            f"month {format_month(month)}: {path} was changed after the extract (its content "
            f"hash is {actual}, its name says {expected}). "
            + _REPAIR.format(month=format_month(month))
        )
    return str(local)


def stat_key(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=1024)
def content_hash(path: str, inode: int, size: int, mtime_ns: int) -> str:
    """The hash a file's name carries (cached per process while the file is unchanged)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def derived_file(
    lake_root: Path, month: date, table: str, dataset: Dataset = PAYMENTS
) -> str | None:
    """The month's derived ``customer_month`` or ``monthly_ranking`` file (an activity
    partition: ``customer_service``), or None (a partition of schema version 1)."""
    manifest = read_manifest(lake_root, month, dataset)
    name = getattr(manifest, f"{table}_file")
    folder = partition_dir(lake_root, month, dataset)
    return _verified(folder / name, month, named_files(manifest)) if name else None


def read_month(lake_root: Path, month: date) -> pa.Table:
    """The month's payments as one Arrow table (the partition's own files, no discovery)."""
    tables = [pq.ParquetFile(path).read() for path in month_files(lake_root, month)]
    return pa.concat_tables(tables) if tables else PAYMENTS_SCHEMA.empty_table()


def extracted_months(lake_root: Path, dataset: Dataset = PAYMENTS) -> list[date]:
    folder = storage.location(lake_root) / dataset.name
    if storage.is_remote(folder):  # one listing of the bucket, not one request per month
        found = (info.path.split("/") for info in folder.listing(recursive=True))
        names = {parts[-2] for parts in found if parts[-1] == "manifest.json"}
        return sorted(parse_month(n.removeprefix("month=")) for n in names if n[:6] == "month=")
    months = []
    for child in sorted(folder.glob("month=*")):
        if (child / "manifest.json").exists():
            months.append(parse_month(child.name.removeprefix("month=")))
    return months


@contextmanager
def hold_months(cfg: Config, months: list[date], run_id: str) -> Iterator[None]:
    """Hold ``months`` for one run, from its extract to its load: another run of any of
    them on this machine waits for this one to end (at most ``lake.lock_timeout``
    seconds), saying which run it waits for. Months are taken in order, so two runs whose
    ranges overlap never wait for each other in a circle. Runs on other machines, and the
    steps of Airflow's runs, are kept apart by the partition's kept files and the load's
    check that its month was not extracted again (``run.steps.load_step``)."""
    folder = _lock_folder(cfg)
    with ExitStack() as held:
        for month in sorted(set(months)):
            name = format_month(month)
            lock = folder / f"month={name}.run.lock"

            def busy(holder: str, name: str = name, lock: Path = lock) -> MonthBusyError:
                return MonthBusyError(
                    f"month {name}: another run still held it after "
                    f"{cfg.lake.lock_timeout:g} s ({holder}; lock {lock}). Wait for that "
                    "run to end, then run the month again; if it hangs, stop it (a run "
                    "stopped midway leaves the lake and the warehouse as they were). "
                    "[lake] lock_timeout sets how long a run waits."
                )

            def waiting(holder: str, name: str = name) -> None:
                log.warning(
                    "month %s: another run holds it (%s); waiting for it to end", name, holder
                )

            try:
                held.enter_context(
                    exclusive_lock(
                        lock,
                        timeout=cfg.lake.lock_timeout,
                        busy=busy,
                        holder=f"run {run_id}, ",
                        waiting=waiting,
                    )
                )
            except OSError as exc:
                if exc.errno not in _CANNOT_WRITE:
                    raise
                # a read-only lake: no run can extract into it, so there is nothing to wait
                # for; a run that reads it goes on, one that extracts is told at its extract
                break
        yield


_CANNOT_WRITE = {errno.EROFS, errno.EACCES, errno.EPERM}


def _lock_folder(cfg: Config) -> Path:
    """Where a lake's locks live: beside its partitions, or on this machine's disk for an
    object-store lake (which has no locks; see hold_months)."""
    root = storage.location(cfg.lake.root)
    return (
        storage.scratch(root) / "locks" if storage.is_remote(root) else root / "payments" / ".locks"
    )
