"""The payment lake: one month-partition of canonical, typed Parquet per business month.

Layout::

    lake/payments/month=YYYY-MM/manifest.json        what the extract read and wrote
    lake/payments/month=YYYY-MM/part-<hash>.parquet  the month's payments
    lake/quarantine/month=YYYY-MM/bad-rows.parquet   bad rows set aside (quarantine on)
    lake/quarantine/undated/bad-rows.parquet         rows with no usable paid_at

A partition is published by atomically replacing its manifest; readers only ever
open the files the manifest names, so a half-written file, a killed extract or an
orphan temporary file is never read. A re-extract touches its own month only.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import Config
from pipeline.months import format_month, parse_month
from pipeline.sources import SourceRows, csv_parse_error, open_months
from pipeline.sql import connect, run_sql

SCHEMA_VERSION = 1
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
_EXAMPLES_PER_PROBLEM = 3


class BadInputError(ValueError):
    """A month's source rows break the input rules; nothing of the month was written."""


class MissingMonthError(LookupError):
    """A month the computation needs has not been extracted into the lake."""


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
    schema_version: int = SCHEMA_VERSION
    extracted_at: str = ""


def partition_dir(lake_root: Path, month: date) -> Path:
    return Path(lake_root) / "payments" / f"month={format_month(month)}"


def read_manifest(lake_root: Path, month: date) -> Manifest:
    path = partition_dir(lake_root, month) / "manifest.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MissingMonthError(
            f"month {format_month(month)} is not in the lake ({path} missing): "
            f"extract it first (tiers extract --month {format_month(month)})"
        ) from None
    return Manifest(**data)


def month_files(lake_root: Path, month: date) -> list[str]:
    """The Parquet files of a month, as its manifest names them."""
    manifest = read_manifest(lake_root, month)
    folder = partition_dir(lake_root, month)
    return [str(folder / name) for name in manifest.data_files]


def read_month(lake_root: Path, month: date) -> pa.Table:
    """The month's payments as one Arrow table (the partition's own files, no discovery)."""
    tables = [pq.ParquetFile(path).read() for path in month_files(lake_root, month)]
    return pa.concat_tables(tables) if tables else PAYMENTS_SCHEMA.empty_table()


def extracted_months(lake_root: Path) -> list[date]:
    folder = Path(lake_root) / "payments"
    months = []
    for child in sorted(folder.glob("month=*")):
        if (child / "manifest.json").exists():
            months.append(parse_month(child.name.removeprefix("month=")))
    return months


def extract(cfg: Config, month: date, *, quarantine: bool | None = None) -> Manifest:
    """Read month ``month`` from the source into its lake partition (atomically)."""
    ((_, outcome),) = extract_months(cfg, [parse_month(month)], quarantine=quarantine)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def extract_months(
    cfg: Config, months: list[date], *, quarantine: bool | None = None
) -> Iterator[tuple[date, Manifest | BadInputError]]:
    """Extract several months, reading and parsing the source once.

    Yields each month with its manifest, or with the BadInputError that stopped it
    (that month's partition is left as it was; the other months go on).
    """
    months = sorted(parse_month(m) for m in months)
    quarantine = cfg.lake.quarantine if quarantine is None else quarantine
    spill = Path(cfg.lake.root) / ".spill"
    con = connect(
        cfg.business.timezone, memory_limit=cfg.lake.memory_limit, temp_directory=str(spill)
    )
    try:
        source = open_months(con, cfg.source, months[0], months[-1], cfg.business.timezone)
        run_sql(
            con,
            "staging_payments",
            create="judged_payments",
            currency=cfg.business.currency,
            decimal_separator=cfg.source.decimal_separator,
            has_currency="currency" in source.columns_present,
            has_units="units" in source.columns_present,
            has_cost="cost" in source.columns_present,
        )
        for month in months:
            run_sql(con, "month_payments", create="staged_payments", month=month)
            try:
                yield month, _extract_month(cfg, con, source, month, quarantine)
            except BadInputError as exc:
                yield month, exc
    except duckdb.InvalidInputException as exc:  # a CSV the parser cannot read is bad input
        raise csv_parse_error(cfg.source, exc, BadInputError) from None
    finally:
        con.close()


def _extract_month(
    cfg: Config, con: duckdb.DuckDBPyConnection, source: SourceRows, month: date, quarantine: bool
) -> Manifest:
    problems = dict(
        con.execute(
            "select problem, count(*) from staged_payments where problem is not null "
            "group by problem order by problem"
        ).fetchall()
    )
    if problems and not quarantine:
        raise BadInputError(_bad_input_message(con, source.label, month, problems))

    good = _good_rows(con)
    _verify(good, con)
    dated_bad, undated_bad = _bad_rows(con, dated=True), _bad_rows(con, dated=False)
    good_read, duplicates, amount_sum, first_paid, last_paid = con.execute(
        """
        select
            coalesce(sum(copies), 0)::bigint,
            coalesce(sum(copies - 1), 0)::bigint,
            coalesce(sum(amount), 0)::decimal(18, 2),
            min(paid_at), max(paid_at)
        from staged_payments where problem is null
        """
    ).fetchall()[0]
    manifest = Manifest(
        month=format_month(month),
        source_kind=cfg.source.kind,
        source=source.label,
        columns_present=list(source.columns_present),
        rows_read=int(good_read) + dated_bad.num_rows + undated_bad.num_rows,
        rows_duplicate=int(duplicates),
        rows_quarantined=dated_bad.num_rows,
        rows_undated=undated_bad.num_rows,
        rows_written=good.num_rows,
        amount_sum=str(amount_sum),
        paid_at_min=_iso_utc(first_paid),
        paid_at_max=_iso_utc(last_paid),
        fingerprint=_fingerprint(con),
        data_files=[],
        problems=problems,
    )
    root = Path(cfg.lake.root)
    if quarantine:
        _publish_table(root / "quarantine" / f"month={format_month(month)}", "bad-rows", dated_bad)
        if undated_bad.num_rows:
            _publish_table(root / "quarantine" / "undated", "bad-rows", undated_bad)
    _publish_partition(partition_dir(root, month), good, manifest)
    return manifest


def _good_rows(con: duckdb.DuckDBPyConnection) -> pa.Table:
    table = con.sql(
        "select payment_id, customer_id, paid_at, amount, currency, units, cost, month "
        "from staged_payments where problem is null order by payment_id"
    ).to_arrow_table()
    return table.cast(PAYMENTS_SCHEMA)


def _verify(good: pa.Table, con: duckdb.DuckDBPyConnection) -> None:
    """The Arrow table holds exactly the distinct good payments DuckDB judged."""
    expected = con.execute("select count(*) from staged_payments where problem is null").fetchall()[
        0
    ][0]
    if good.num_rows != expected:
        raise RuntimeError(f"lake write check: {good.num_rows} rows staged for {expected} payments")


def _bad_rows(con: duckdb.DuckDBPyConnection, *, dated: bool) -> pa.Table:
    condition = "month is not null" if dated else "month is null"
    columns = ", ".join(f"raw_{c} as {c}" for c in _RAW_COLUMNS)
    table = con.sql(
        f"select {columns}, problem, source_file from staged_payments "
        f"where problem is not null and {condition} "
        "order by source_file, payment_id, paid_at, amount, problem"
    ).to_arrow_table()
    return table


def _fingerprint(con: duckdb.DuckDBPyConnection) -> str:
    """A hash of the month's delivered rows (typed good rows with copies, raw bad rows).

    Order-independent and streaming: the sums of each row's MD5 halves, not one string
    of the whole month, so a month of any size fits in bounded memory.
    """
    row = con.execute(
        """
        select md5(concat_ws('|', count(*), coalesce(sum(md5_number_lower(line)::hugeint), 0),
                             coalesce(sum(md5_number_upper(line)::hugeint), 0)))
        from (
            select concat_ws('|', coalesce(payment_id, '\\N'), coalesce(customer_id, '\\N'),
                coalesce(epoch_us(paid_at)::varchar, '\\N'), coalesce(amount::varchar, '\\N'),
                coalesce(currency, '\\N'), coalesce(units::varchar, '\\N'),
                coalesce(cost::varchar, '\\N'), copies::varchar,
                coalesce(problem, ''), coalesce(raw_payment_id, '\\N'),
                coalesce(raw_paid_at, '\\N'), coalesce(raw_amount, '\\N')) as line
            from staged_payments
        )
        """
    ).fetchall()[0]
    return row[0]


def _iso_utc(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _bad_input_message(
    con: duckdb.DuckDBPyConnection, label: str, month: date, problems: dict[str, int]
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
            f"select {', '.join('raw_' + c for c in _RAW_COLUMNS)}, source_file "
            "from staged_payments where problem = ? "
            "order by raw_payment_id nulls first limit ?",
            [problem, _EXAMPLES_PER_PROBLEM],
        ).fetchall()
        for example in examples:
            values = ", ".join(
                f"{name}={value!r}"
                for name, value in zip(_RAW_COLUMNS, example[:-1], strict=True)
                if value is not None
            )
            lines.append(f"  [{problem}] {values}  ({example[-1]})")
    lines.append(
        "Fix the source, or switch quarantine on (--quarantine or [lake] quarantine = true) "
        "to set the bad rows aside and load the rest."
    )
    return "\n".join(lines)


def _publish_partition(folder: Path, good: pa.Table, manifest: Manifest) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data_name = _publish_file(folder, "part", good)
    manifest.data_files = [data_name]
    manifest.extracted_at = datetime.now(UTC).isoformat(timespec="seconds")
    _atomic_write_bytes(
        folder / "manifest.json", (json.dumps(asdict(manifest), indent=2) + "\n").encode()
    )
    _remove_unreferenced(folder, keep={data_name, "manifest.json"})


def _publish_table(folder: Path, stem: str, table: pa.Table) -> None:
    """Replace ``folder/<stem>.parquet`` atomically; remove it when the table is empty."""
    target = folder / f"{stem}.parquet"
    if table.num_rows == 0:
        target.unlink(missing_ok=True)
        return
    folder.mkdir(parents=True, exist_ok=True)
    tmp = _write_tmp_parquet(folder, table)
    os.replace(tmp, target)
    _fsync_dir(folder)


def _publish_file(folder: Path, stem: str, table: pa.Table) -> str:
    """Write a content-addressed Parquet file; return its name."""
    tmp = _write_tmp_parquet(folder, table)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:16]
    name = f"{stem}-{digest}.parquet"
    os.replace(tmp, folder / name)
    _fsync_dir(folder)
    return name


def _write_tmp_parquet(folder: Path, table: pa.Table) -> Path:
    tmp = folder / f".tmp-{uuid.uuid4().hex}.parquet"
    pq.write_table(table, tmp, compression="zstd")
    written = pq.ParquetFile(tmp).metadata.num_rows
    if written != table.num_rows:  # read back before publishing
        raise RuntimeError(f"{tmp}: wrote {written} rows for {table.num_rows}")
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    return tmp


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _remove_unreferenced(folder: Path, keep: set[str]) -> None:
    for child in folder.iterdir():
        if child.name not in keep and child.is_file():
            child.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
