"""The payment lake: one month-partition of canonical, typed Parquet per business month.

Layout::

    lake/payments/month=YYYY-MM/manifest.json        what the extract read and wrote
    lake/payments/month=YYYY-MM/part-<hash>.parquet  the month's payments
    lake/payments/month=YYYY-MM/customer_month-<hash>.parquet
    lake/payments/month=YYYY-MM/monthly_ranking-<hash>.parquet
                                                     derived from those payments and
                                                     published with them: the month's
                                                     customer_month and its customers
                                                     ranked by each metric (window 1)
    lake/quarantine/month=YYYY-MM/bad-rows.parquet   bad rows set aside (quarantine on)
    lake/quarantine/undated/bad-rows.parquet         rows with no usable paid_at

A partition is published by atomically replacing its manifest; readers only ever
open the files the manifest names, so a half-written file, a killed extract or an
orphan temporary file is never read. The files the replaced manifest named stay for
``lake.orphan_grace_seconds`` (the manifest's ``superseded``), for a run still reading
them; a month's writers take turns (a lock per partition folder), and ``hold_months``
keeps two runs of a month on one machine from interleaving. A re-extract touches its own
month only, and replaces the month's derived files with its payments, in the same publish: the
computation of month M reads the derived files of M-11 .. M instead of re-aggregating and
re-ranking a year of payments, and can never see derived data older than its payments.
The derived files read no configuration (every metric the source allows is ranked), so
a change of the configuration never makes them stale.

On an object store (``lake.root = "s3://..."``, ``pipeline/storage.py``) the same holds
without a rename: the content-addressed files are uploaded first (each visible whole or not
at all), then the manifest is written as one object; files replaced (or never named) are removed
once replaced (or written) longer ago than ``lake.orphan_grace_seconds``, so that a
concurrent reader or writer of the month still finds the files of the manifest it read.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.config import Config, metrics_available
from pipeline.errors import (
    BadInputError,
    CorruptPartitionError,
    MissingMonthError,
    MonthBusyError,
    UnfinishedMonthError,
)
from pipeline.files import atomic_write, exclusive_lock, fsync_dir
from pipeline.months import format_month, month_bounds, parse_month
from pipeline.schema import TABLES
from pipeline.sources import SourceRows, csv_parse_error, open_months
from pipeline.sql import bounded_connection, run_sql

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
MONTHLY_RANKING_SCHEMA = pa.schema(
    [
        ("month", pa.date32()),
        ("metric", pa.string()),
        ("window_months", pa.int32()),
        ("customer_id", pa.string()),
        ("value", pa.decimal128(18, 2)),
        ("rank", pa.int32()),
        ("n_customers", pa.int32()),
        ("total_value", pa.decimal128(18, 2)),
        ("cum_value_before", pa.decimal128(18, 2)),
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
CUSTOMER_SERVICE_KIND_SCHEMA = pa.schema(
    [
        ("month", pa.date32()),
        ("customer_id", pa.string()),
        ("kind", pa.string()),
        ("activities", pa.int32()),
        ("hours", pa.decimal128(18, 2)),
        ("cost_to_serve", pa.decimal128(18, 2)),
    ]
)
CUSTOMER_SERVICE_SCHEMA = pa.schema(
    [
        ("month", pa.date32()),
        ("customer_id", pa.string()),
        ("activities", pa.int32()),
        ("hours", pa.decimal128(18, 2)),
        ("cost_to_serve", pa.decimal128(18, 2)),
    ]
)
_EXAMPLES_PER_PROBLEM = 3
# The most money one month may carry, as the sum of |amount| and as the sum of cost. It
# keeps every figure computed from a year of months exact and inside its type: a
# customer's window value (at most 13 months of revenue or margin, |margin| <= |amount| +
# cost) fits DECIMAL(18, 2) many times over, and the XYZ and concentration figures, which
# square those values in HUGEINT cents, stay below 10^30. A month above it is rejected at
# extract, by name, instead of overflowing later.
MONTH_MONEY_LIMIT = Decimal("100000000000.00")
# The most units one month may carry (their sum), for the same reason: the units metric is
# ranked, windowed and squared in the same types as money.
MONTH_UNITS_LIMIT = 100_000_000_000


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
    keep = _named_files(manifest)
    return [_verified(folder / name, month, keep) for name in manifest.data_files]


def _named_files(manifest: Manifest) -> set[str]:
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
        actual = _content_hash(str(local), *_stat_key(local))
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


def _stat_key(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=1024)
def _content_hash(path: str, inode: int, size: int, mtime_ns: int) -> str:
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
    return _verified(folder / name, month, _named_files(manifest)) if name else None


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
    check that its month was not extracted again (``runner.load_step``)."""
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


def extract(
    cfg: Config,
    month: date,
    *,
    quarantine: bool | None = None,
    provisional: bool = False,
    dataset: Dataset = PAYMENTS,
) -> Manifest:
    """Read month ``month`` from the source into its lake partition (atomically)."""
    ((_, outcome),) = extract_months(
        cfg, [parse_month(month)], quarantine=quarantine, provisional=provisional, dataset=dataset
    )
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def extract_months(
    cfg: Config,
    months: list[date],
    *,
    quarantine: bool | None = None,
    provisional: bool = False,
    dataset: Dataset = PAYMENTS,
) -> Iterator[tuple[date, Manifest | BadInputError]]:
    """Extract several months: a text source is read and parsed once for all of them, a
    typed one a month at a time.

    Yields each month with its manifest, or with the BadInputError that stopped it
    (that month's partition is left as it was; the other months go on). A month that has
    not ended in the business time zone is refused unless ``provisional``: then it is
    extracted and its manifest marked provisional.
    """
    months = sorted(parse_month(m) for m in months)
    while months and (refused := cfg.business.before_start(months[0])):
        yield months.pop(0), BadInputError(refused)  # without reading the source
    if not months:
        return
    quarantine = cfg.lake.quarantine if quarantine is None else quarantine
    zone = cfg.business.timezone
    config = dataset.source(cfg)
    con = bounded_connection(cfg)
    try:
        source = open_months(con, config, months[0], months[-1], zone)
        # a typed source is judged a month at a time (a year of a big source at once would
        # spill gigabytes); text is parsed once for all months
        by_month = source.reads_by_month and len(months) > 1
        if not by_month:
            _judge(con, cfg, source, dataset)
        for month in months:
            try:
                unfinished = _refuse_unfinished(cfg, month, provisional)
                if by_month:
                    source = open_months(con, config, month, month, zone)
                    _judge(con, cfg, source, dataset)
                run_sql(con, f"month_{dataset.name}", create=f"staged_{dataset.name}", month=month)
                manifest = _extract_month(cfg, con, source, month, quarantine, unfinished, dataset)
                yield month, manifest
            except BadInputError as exc:
                yield month, exc
    except duckdb.InvalidInputException as exc:  # a CSV the parser cannot read is bad input
        raise csv_parse_error(config, exc, BadInputError) from None
    finally:
        con.close()


def _judge(
    con: duckdb.DuckDBPyConnection, cfg: Config, source: SourceRows, dataset: Dataset = PAYMENTS
) -> None:
    """The table ``judged_payments`` (``judged_activities``): the rows of the view
    ``source_rows``, typed and judged."""
    run_sql(
        con,
        f"staging_{dataset.name}",
        create=f"judged_{dataset.name}",
        currency=cfg.business.currency,
        decimal_separator=dataset.source(cfg).decimal_separator,
        has_currency="currency" in source.columns_present,
        has_units="units" in source.columns_present,
        has_cost="cost" in source.columns_present,
        has_hours="hours" in source.columns_present,
    )


def _refuse_unfinished(cfg: Config, month: date, provisional: bool) -> bool:
    """Whether ``month`` is still going; refused (UnfinishedMonthError) unless provisional."""
    end = month_bounds(month, cfg.business.timezone)[1]
    if datetime.now(UTC) >= end:
        return False
    if not provisional:
        raise UnfinishedMonthError(
            f"month {format_month(month)} has not ended in {cfg.business.timezone} (it ends "
            f"{end.isoformat()}): its payments are still coming, so its figures would be "
            "partial; nothing was written. Run it once it has ended, or pass --provisional to "
            "load it now, marked provisional in pipeline_run."
        )
    return True


def _extract_month(
    cfg: Config,
    con: duckdb.DuckDBPyConnection,
    source: SourceRows,
    month: date,
    quarantine: bool,
    provisional: bool = False,
    ds: Dataset = PAYMENTS,
) -> Manifest:
    staged = f"staged_{ds.name}"
    problems = dict(
        con.execute(
            f"select problem, count(*) from {staged} where problem is not null "
            "group by problem order by problem"
        ).fetchall()
    )
    if problems and not quarantine:
        raise BadInputError(_bad_input_message(con, source.label, month, problems, ds))

    if ds.refuse_empty:
        _refuse_empty_delivery(cfg, con, source.label, month, provisional)
    _check_money_limit(con, source.label, month, ds)
    _check_ids_across_source(cfg, con, source.label, month, ds)
    id_range = _check_ids_across_months(cfg, con, source.label, month, ds)
    good = _good_rows(con, ds)
    _verify(good, con, ds)
    dated_bad, undated_bad = _bad_rows(con, ds, dated=True), _bad_rows(con, ds, dated=False)
    good_read, duplicates, rounded, amount_sum, first_paid, last_paid = con.execute(
        f"""
        select
            coalesce(sum(copies), 0)::bigint,
            coalesce(sum(copies - 1), 0)::bigint,
            coalesce(sum(rounded_copies), 0)::bigint,
            coalesce(sum({ds.money}), 0)::decimal(18, 2),
            min({ds.time}), max({ds.time})
        from {staged} where problem is null
        """
    ).fetchall()[0]
    manifest = Manifest(
        month=format_month(month),
        source_kind=ds.source(cfg).kind,
        source=source.label,
        columns_present=list(source.columns_present),
        rows_read=int(good_read) + dated_bad.num_rows + undated_bad.num_rows,
        rows_duplicate=int(duplicates),
        rows_rounded=int(rounded),
        rows_quarantined=dated_bad.num_rows,
        rows_undated=undated_bad.num_rows,
        rows_written=good.num_rows,
        amount_sum=str(amount_sum),
        paid_at_min=_iso_utc(first_paid),
        paid_at_max=_iso_utc(last_paid),
        provisional=provisional,
        payment_id_min=id_range[0],
        payment_id_max=id_range[1],
        fingerprint=_fingerprint(con, ds),
        data_files=[],
        problems=problems,
    )
    derived = _derived_tables(con, source) if ds is PAYMENTS else _service_tables(con, source)
    root = storage.location(cfg.lake.root)
    if quarantine:
        quarantined = root / "quarantine" / ds.quarantine if ds.quarantine else root / "quarantine"
        _publish_table(quarantined / f"month={format_month(month)}", "bad-rows", dated_bad)
        if undated_bad.num_rows:
            _publish_table(quarantined / "undated", "bad-rows", undated_bad)
    _publish_partition(
        partition_dir(root, month, ds),
        good,
        derived,
        manifest,
        orphan_grace_seconds=cfg.lake.orphan_grace_seconds,
        lock_timeout=cfg.lake.lock_timeout,
    )
    return manifest


def _service_tables(con: duckdb.DuckDBPyConnection, source: SourceRows) -> dict[str, pa.Table]:
    """The activity month's customer_service (sql/customer_service.sql): the computation of
    a month reads a year of these instead of a year of activities."""
    con.execute(
        "create or replace temp view lake_activities as "
        "select * from staged_activities where problem is null"
    )
    run_sql(
        con,
        "customer_service",
        create="month_customer_service",
        has_hours="hours" in source.columns_present,
        has_cost="cost" in source.columns_present,
    )
    rows = con.sql("select * from month_customer_service order by customer_id").to_arrow_table()
    run_sql(
        con,
        "customer_service_by_kind",
        create="month_customer_service_by_kind",
        has_hours="hours" in source.columns_present,
        has_cost="cost" in source.columns_present,
    )
    by_kind = con.sql(
        "select * from month_customer_service_by_kind order by customer_id, kind"
    ).to_arrow_table()
    return {
        "customer_service": rows.cast(CUSTOMER_SERVICE_SCHEMA),
        "customer_service_kind": by_kind.cast(CUSTOMER_SERVICE_KIND_SCHEMA),
    }


def _derived_tables(con: duckdb.DuckDBPyConnection, source: SourceRows) -> dict[str, pa.Table]:
    """The month's customer_month (sql/customer_month.sql) and its customers ranked by every
    metric the source allows (customer_metric.sql, customer_ranking.sql, window 1)."""
    has_units, has_margin = "units" in source.columns_present, "cost" in source.columns_present
    con.execute(
        "create or replace temp view lake_payments as "
        "select * from staged_payments where problem is null"
    )
    run_sql(
        con,
        "customer_month",
        create="customer_month_history",
        has_units=has_units,
        has_margin=has_margin,
    )
    metrics = metrics_available(has_units=has_units, has_margin=has_margin)
    run_sql(con, "customer_metric", create="customer_metric", metrics=metrics)
    con.execute(
        "create or replace temp view window_values as "
        "select month, metric, 1 as window_months, customer_id, value from customer_metric"
    )
    run_sql(con, "customer_ranking", create="monthly_ranking")
    customer_month = (
        con.sql("select * from customer_month_history order by customer_id")
        .to_arrow_table()
        .cast(TABLES["customer_month"].arrow_schema())
    )
    ranking = (
        con.sql("select * from monthly_ranking order by metric, rank")
        .to_arrow_table()
        .cast(MONTHLY_RANKING_SCHEMA)
    )
    return {"customer_month": customer_month, "monthly_ranking": ranking}


def _refuse_empty_delivery(
    cfg: Config, con: duckdb.DuckDBPyConnection, label: str, month: date, provisional: bool
) -> None:
    """A month without payments is a failed delivery (a header-only or truncated file), not a
    quiet month, when the history says the month is active: the lake already holds payments
    of this month, or of a month between history_start and this one. The first month of the
    history may be empty, and so may any month listed in [checks.volume] accept."""
    good, bad = con.execute(
        "select count(*) filter (problem is null), count(*) filter (problem is not null) "
        "from staged_payments where month is not null"
    ).fetchall()[0]
    name = format_month(month)
    if good or name in cfg.checks.volume.accept:
        return
    # this month first, then the months before it, latest first: the first that has payments
    lake_months = [m for m in extracted_months(cfg.lake.root) if cfg.business.history_start <= m]
    held = (
        (m, read_manifest(cfg.lake.root, m).rows_written)
        for m in sorted((m for m in lake_months if m <= month), reverse=True)
    )
    active, rows = next(((m, rows) for m, rows in held if rows), (None, 0))
    if active is None:
        return
    if active == month:
        active_because = f"the lake holds {rows} payment(s) of {name}, which this would replace"
    else:
        active_because = f"{format_month(active)} has {rows} payment(s) in the lake"
    what = f"no good payments ({bad} bad row(s) set aside)" if bad else "no payments"
    unfinished = (
        " The month has not ended: if its payments have not come in yet, run it later."
        if provisional
        else ""
    )
    raise BadInputError(
        f"{label}: month {name} has {what}, but the history says it is active: "
        f"{active_because}. A month without payments in an active history is a failed "
        "delivery (a header-only, truncated or misdated file), not a quiet month, whatever "
        f"[checks.volume] min_rows says; nothing of this month was written.{unfinished} "
        "Check the source's "
        f"delivery of {name}; if the month really had no payments (the business was closed), "
        f'accept it as empty: add "{name}" to [checks.volume] accept and run it again.'
    )


def _check_ids_across_source(
    cfg: Config, con: duckdb.DuckDBPyConnection, label: str, month: date, ds: Dataset = PAYMENTS
) -> None:
    """payment_id is unique across the whole source: a payment of this month must not be
    given again, with other values (its paid_at differs), in another month of the rows read
    (a text source is read whole: every month of it, extracted or not). One semi-join of
    the month's payment_ids with the rows read (a group-by of every row's payment_id, for
    all months at once, costs five times a month's probe)."""
    key, at, money, noun = ds.id, ds.time, ds.money, ds.noun
    count, others = con.execute(
        f"select count(distinct {key}), list(distinct month order by month) "
        f"from judged_{ds.name} semi join ("
        f"    select {key} from staged_{ds.name} where problem is null"
        f") as here using ({key}) "
        "where problem is null and month <> ?",
        [month],
    ).fetchall()[0]
    if not count:
        return
    examples = con.execute(
        f"select distinct {key}, here.{at}, here.{money}, there.month, there.{at}, "
        f"there.{money} "
        f"from staged_{ds.name} as here join judged_{ds.name} as there using ({key}) "
        "where here.problem is null and there.problem is null and there.month <> ? "
        f"order by {key}, there.month, there.{at} limit ?",
        [month, _EXAMPLES_PER_PROBLEM],
    ).fetchall()

    def told(other: date) -> str:
        early = " (before [business] history_start)" if cfg.business.before_start(other) else ""
        return format_month(other) + early

    name = format_month(month)
    lines = [
        f"{label}: month {name} has {count} {noun}(s) whose {key} the source gives again, "
        f"with other values, in month(s) {', '.join(map(told, others))}; {key} is unique "
        "across the source, so nothing of this month was written. Examples:"
    ]
    lines += [
        f"  {pid}: {at} {here_at.isoformat()} {money} {here_amount} in {name}, "
        f"{at} {there_at.isoformat()} {money} {there_amount} in {format_month(other)}"
        for pid, here_at, here_amount, other, there_at, there_amount in examples
    ]
    lines.append(
        f"Fix the source: give each {noun} its own {key}, or remove the row whose date is wrong."
    )
    raise BadInputError("\n".join(lines))


def _check_money_limit(
    con: duckdb.DuckDBPyConnection, label: str, month: date, ds: Dataset = PAYMENTS
) -> None:
    if ds is PAYMENTS:
        query = (
            "select coalesce(sum(abs(amount)), 0), coalesce(sum(cost), 0), "
            "coalesce(sum(units), 0) from staged_payments where problem is null"
        )
    else:  # hours are summed, windowed and squared like money (the effort metric)
        query = (
            "select coalesce(sum(hours), 0), coalesce(sum(cost), 0), count(*) "
            "from staged_activities where problem is null"
        )
    amounts, costs, units = con.execute(query).fetchall()[0]
    money_hint = "amounts in the wrong unit (cents as whole currency units) or a broken row"
    for what, total, limit, hint in (
        (
            "hours" if ds is ACTIVITIES else "amounts (|amount|)",
            amounts,
            MONTH_MONEY_LIMIT,
            money_hint,
        ),
        ("costs", costs, MONTH_MONEY_LIMIT, money_hint),
        (
            "activities" if ds is ACTIVITIES else "units",
            units,
            MONTH_UNITS_LIMIT,
            "a units value that is not a count (an id, a code)",
        ),
    ):
        if total > limit:
            raise BadInputError(
                f"{label}: month {format_month(month)}: the sum of its {what} is {total}, above "
                f"the {limit:,} a month may carry (so that a year of sums and their "
                f"squares stay exact); nothing of this month was written. Check the source for "
                f"{hint}."
            )


def _check_ids_across_months(
    cfg: Config, con: duckdb.DuckDBPyConnection, label: str, month: date, ds: Dataset = PAYMENTS
) -> tuple[str | None, str | None]:
    """payment_id is unique across the whole source: a payment of this month must not be in
    another month of the lake (its paid_at would differ, so its values do). Only months whose
    payment_id range overlaps this month's are read. Returns this month's range."""
    key, at, money, noun = ds.id, ds.time, ds.money, ds.noun
    low, high = con.execute(
        f"select min({key}), max({key}) from staged_{ds.name} where problem is null"
    ).fetchall()[0]
    if low is None:
        return None, None
    clashes = []
    for other in extracted_months(cfg.lake.root, ds):
        manifest = read_manifest(cfg.lake.root, other, ds)
        if other == month or (
            manifest.payment_id_min is not None
            and (manifest.payment_id_max < low or manifest.payment_id_min > high)
        ):
            continue
        found = con.execute(
            f"select here.{key}, here.{at}, here.{money}, there.{at}, there.{money} "
            f"from staged_{ds.name} as here "
            f"join read_parquet(?) as there using ({key}) "
            f"where here.problem is null order by here.{key} limit ?",
            [month_files(cfg.lake.root, other, ds), _EXAMPLES_PER_PROBLEM],
        ).fetchall()
        clashes += [(other, row) for row in found]
    if clashes:
        months = sorted({format_month(other) for other, _ in clashes})
        lines = [
            f"{label}: month {format_month(month)} has {noun}(s) that the lake already holds "
            f"in month(s) {', '.join(months)}; {key} is unique across the source, so "
            "nothing of this month was written. Examples:"
        ]
        lines += [
            f"  {pid}: {at} {here_at.isoformat()} {money} {here_amount} here, "
            f"{at} {there_at.isoformat()} {money} {there_amount} in {format_month(other)}"
            for other, (pid, here_at, here_amount, there_at, there_amount) in clashes
        ]
        lines.append(
            f"If the source moved these {ds.plural} to this month, re-extract the months they left "
            f"as well, oldest first (tiers backfill --from {min(months + [format_month(month)])} "
            f"--to {max(months + [format_month(month)])}); otherwise fix the source's {key}s."
        )
        raise BadInputError("\n".join(lines))
    return low, high


def _good_rows(con: duckdb.DuckDBPyConnection, ds: Dataset = PAYMENTS) -> pa.Table:
    table = con.sql(
        f"select {', '.join(ds.schema.names)} "
        f"from staged_{ds.name} where problem is null order by {ds.id}"
    ).to_arrow_table()
    return table.cast(ds.schema)


def _verify(good: pa.Table, con: duckdb.DuckDBPyConnection, ds: Dataset = PAYMENTS) -> None:
    """The Arrow table holds exactly the distinct good payments DuckDB judged."""
    query = f"select count(*) from staged_{ds.name} where problem is null"
    expected = con.execute(query).fetchall()[0][0]
    if good.num_rows != expected:
        raise RuntimeError(f"lake write check: {good.num_rows} rows staged for {expected} payments")


def _bad_rows(con: duckdb.DuckDBPyConnection, ds: Dataset = PAYMENTS, *, dated: bool) -> pa.Table:
    condition = "month is not null" if dated else "month is null"
    columns = ", ".join(f"raw_{c} as {c}" for c in ds.raw_columns)
    table = con.sql(
        f"select {columns}, problem, source_file from staged_{ds.name} "
        f"where problem is not null and {condition} "
        f"order by source_file, {ds.id}, {ds.time}, {ds.money}, problem"
    ).to_arrow_table()
    return table


def _fingerprint(con: duckdb.DuckDBPyConnection, ds: Dataset = PAYMENTS) -> str:
    """A hash of the month's delivered rows (typed good rows with copies, raw bad rows).

    Order-independent and streaming: the sum of each row's 64-bit hash, not one string of
    the whole month, so a month of any size fits in bounded memory. DuckDB's ``hash`` is
    fixed for a DuckDB version (the lock pins it), and ten times cheaper than an MD5 of
    each row's text.
    """
    if ds is PAYMENTS:
        query = """
        select md5(concat_ws('|', count(*), coalesce(sum(hash(
            payment_id, customer_id, paid_at, amount, currency, units, cost, copies,
            problem, raw_payment_id, raw_paid_at, raw_amount)::hugeint), 0)))
        from staged_payments
        """
    else:
        query = """
        select md5(concat_ws('|', count(*), coalesce(sum(hash(
            activity_id, customer_id, occurred_at, hours, cost, kind, copies,
            problem, raw_activity_id, raw_occurred_at, raw_hours, raw_cost)::hugeint), 0)))
        from staged_activities
        """
    row = con.execute(query).fetchall()[0]
    return row[0]


def _iso_utc(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _bad_input_message(
    con: duckdb.DuckDBPyConnection,
    label: str,
    month: date,
    problems: dict[str, int],
    ds: Dataset = PAYMENTS,
) -> str:
    total = sum(problems.values())
    lines = [
        f"{label}: month {format_month(month)} has {total} bad row(s); "
        "nothing of this month was written.",
    ]
    lines += [f"  {problem}: {count} row(s)" for problem, count in problems.items()]
    lines.append("examples:")
    for problem in problems:
        examples = con.execute(
            f"select {', '.join('raw_' + c for c in ds.raw_columns)}, source_file "
            f"from staged_{ds.name} where problem = ? "
            f"order by raw_{ds.id} nulls first limit ?",
            [problem, _EXAMPLES_PER_PROBLEM],
        ).fetchall()
        for example in examples:
            values = ", ".join(
                f"{name}={value!r}"
                for name, value in zip(ds.raw_columns, example[:-1], strict=True)
                if value is not None
            )
            lines.append(f"  [{problem}] {values}  ({example[-1]})")
    lines.append(
        "Fix the source, or switch quarantine on (--quarantine or [lake] quarantine = true) "
        "to set the bad rows aside and load the rest."
    )
    return "\n".join(lines)


def _publish_partition(
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
        keep = {*_named_files(manifest), *manifest.superseded, "manifest.json"}
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


log = logging.getLogger(__name__)


def _superseded(folder: Path, manifest: Manifest, now: datetime, grace: int) -> dict[str, str]:
    """The files the month's current manifest names or kept that ``manifest`` does not name,
    each with when it stopped being named; those superseded longer than ``grace`` seconds
    ago are left out (removed after the publish)."""
    try:
        current = Manifest(**json.loads((folder / "manifest.json").read_text()))
    except (OSError, ValueError, TypeError):  # a first extract, or an unreadable manifest
        return {}
    named = _named_files(manifest)
    cutoff = now - timedelta(seconds=grace)
    kept = {
        name: since
        for name, since in current.superseded.items()
        if name not in named and datetime.fromisoformat(since) > cutoff
    }
    if grace > 0:
        stamp = now.isoformat(timespec="seconds")
        kept |= {name: stamp for name in sorted(_named_files(current) - named)}
    return dict(sorted(kept.items()))


def _publish_table(folder: Path, stem: str, table: pa.Table) -> None:
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
        digest = _content_hash(str(tmp), *_stat_key(tmp))
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
            names[stem] = f"{stem}-{_content_hash(str(tmp), *_stat_key(tmp))}.parquet"
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
