"""Helpers for tests: configuration files and small payment files written by hand."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from pipeline.config import Config, load_config
from pipeline.months import parse_month

PAYMENT_HEADER = ("payment_id", "customer_id", "paid_at", "amount", "currency")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def write_config(folder: Path, sections: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write ``folder/tiers.toml`` from {section: {key: value}}; lake, warehouse and runs
    default to folders inside ``folder``."""
    defaults = {
        "lake": {"root": str(folder / "lake")},
        "warehouse": {"url": f"duckdb:///{folder / 'warehouse.duckdb'}"},
        "runs": {"root": str(folder / "runs")},
    }
    merged = {name: dict(values) for name, values in defaults.items()}
    for name, values in sections.items():
        merged.setdefault(name, {}).update(values)
    lines = []
    for name, values in merged.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
        lines.append("")
    path = folder / "tiers.toml"
    path.write_text("\n".join(lines))
    return path


def csv_config(
    folder: Path,
    payments: Path,
    *,
    timezone: str = "UTC",
    history_start: str = "2026-01",
    **sections: Mapping[str, Any],
) -> Config:
    business = {"timezone": timezone, "currency": "EUR", "history_start": history_start}
    business |= sections.pop("business", {})
    source = {"kind": "csv", "path": str(payments)} | dict(sections.pop("source", {}))
    return load_config(write_config(folder, {"source": source, "business": business, **sections}))


def write_payments(
    path: Path, rows: Iterable[Iterable[Any]], header: Iterable[str] = PAYMENT_HEADER
) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(header))
        writer.writerows(rows)
    return path


def files_of(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and the hash of its content (not the locks, which say who
    held them last, nor DuckDB's spill files)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not {".spill", ".locks"} & {*p.parts} and p.name != "writer.lock"
    }


def extracted(folder: Path, rows: Iterable[Iterable[Any]], months: Iterable[str], **config):
    """Write ``rows`` as the CSV source, extract ``months`` and return the configuration."""
    from pipeline.lake.extract import extract
    from pipeline.months import parse_month

    source = write_payments(folder / "payments.csv", rows)
    cfg = csv_config(folder, source, **config)
    for month in months:
        extract(cfg, parse_month(month))
    return cfg


def warehouse_rows(cfg: Config, name: str):
    """Every row of a warehouse table, as an Arrow table."""
    from pipeline.warehouse import open_warehouse

    warehouse = open_warehouse(cfg)
    try:
        return warehouse.read_table(name)
    finally:
        warehouse.close()


def backfill_matching_golden(cfg: Config, case: str, start: str, last: str) -> list:
    """Backfill ``start``..``last`` through the real pipeline and assert that every loaded
    reporting table equals the golden case's; returns the months' results."""
    from pipeline.run import backfill
    from pipeline.schema.tables import TABLES

    from golden import GOLDEN, table_differences

    results = backfill.backfill(cfg, parse_month(start), parse_month(last))
    assert {r.status for r in results} == {"loaded"}, [r.error for r in results]
    problems = []
    for name in TABLES:
        loaded = warehouse_rows(cfg, name)
        if (GOLDEN / case / "expected" / f"{name}.csv").exists():
            problems += table_differences(case, name, loaded)
        elif name == "customer_call":
            # the project's call order, not a table of the spec: one row per alert
            alerts = warehouse_rows(cfg, "customer_alert")
            if loaded.num_rows != alerts.num_rows:
                problems.append(f"customer_call: {loaded.num_rows} rows, {alerts.num_rows} alerts")
        elif loaded.num_rows and cfg.service is None:  # a case without activities
            problems.append(f"{name}: {loaded.num_rows} row(s), the case expects none")
    assert problems == []
    return results


def typed_source(folder: Path, kind: str, payments: Path, *, timezone: str) -> dict[str, Any]:
    """The payments of a canonical CSV as a typed source of ``kind`` ("parquet" or "duckdb")
    in ``folder``, as a source system would hold them: paid_at TIMESTAMPTZ in the Parquet
    file and the business wall clock of ``timezone`` (naive) in the DuckDB table, amount and
    cost DECIMAL(18, 2), units INTEGER. Returns the [source] section."""
    import duckdb

    header = payments.read_text().splitlines()[0].split(",")
    types = {"paid_at": "timestamptz", "amount": "decimal(18, 2)", "units": "integer"}
    types["cost"] = types["amount"]
    if kind == "duckdb":
        types["paid_at"] = "timestamptz::timestamp"  # the wall clock of the session zone
    columns = ", ".join(f"{c}::{types.get(c, 'varchar')} as {c}" for c in header)
    rows = f"select {columns} from read_csv(?, header = true, all_varchar = true)"
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = ?", [timezone])
        if kind == "parquet":
            target = folder / "payments.parquet"
            con.execute(f"copy ({rows}) to '{target}' (format parquet)", [str(payments)])
            return {"kind": "parquet", "path": str(target)}
        target = folder / "payments.duckdb"
        con.execute("attach ? as db", [str(target)])
        con.execute(f"create table db.payments as {rows}", [str(payments)])
        return {"kind": "duckdb", "path": str(target), "table": "payments"}
    finally:
        con.close()


def backfilled_through_the_cli(config: Path, first: str, last: str) -> tuple[dict, dict]:
    """Backfill ``first``..``last`` with ``tiers backfill``; returns every reporting table's
    rows and, by table and month, its file in the DuckDB warehouse (named by a hash of its
    bytes)."""
    import json

    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.schema.tables import TABLES
    from pipeline.warehouse import open_warehouse

    result = CliRunner().invoke(app, ["backfill", "-c", str(config), "--from", first, "--to", last])
    assert result.exit_code == 0, result.output
    cfg = load_config(config)
    warehouse = open_warehouse(cfg)
    try:
        files = json.loads((warehouse.data / "state.json").read_text())["files"]
    finally:
        warehouse.close()
    return {name: warehouse_rows(cfg, name) for name in TABLES}, files


def assert_same_reporting_tables(
    found: tuple[dict, dict], expected: tuple[dict, dict], *, months: int
) -> None:
    """Two results of ``backfilled_through_the_cli`` hold the same bytes, ``months`` months
    of every reporting table."""
    (tables, files), (expected_tables, expected_files) = found, expected
    assert files == expected_files
    from pipeline.schema.tables import TABLES

    assert {name: len(by_month) for name, by_month in files.items()} == {
        name: months
        for name in tables
        if not TABLES[name].service_only  # no [service]
    }
    for name, rows in tables.items():
        assert rows.equals(expected_tables[name]), name


# Payments of January and February 2026 whose amounts and costs a source may hold as
# binary floating point: (payment_id, customer_id, paid_at, amount, cost) as exact text.
FLOAT_CASE_ROWS = [
    ("f01", "c1", "2026-01-03T10:00:00Z", "19.99", "5.00"),
    ("f02", "c1", "2026-01-04T10:00:00Z", "0.00", "0.00"),
    ("f03", "c2", "2026-01-05T10:00:00Z", "0.30", "0.10"),
    ("f04", "c2", "2026-01-06T10:00:00Z", "-19.99", "0.00"),  # a refund
    ("f05", "c3", "2026-01-07T10:00:00Z", "99999.99", "12345.67"),
    ("f06", "c3", "2026-01-31T23:30:00Z", "0.01", "0.01"),
    ("f07", "c4", "2026-01-09T10:00:00Z", "1234.56", "1000.10"),
    ("f07", "c4", "2026-01-09T10:00:00Z", "1234.56", "1000.10"),  # delivered twice
    ("f08", "c1", "2026-02-02T10:00:00Z", "59.97", "19.99"),
    ("f09", "c2", "2026-02-03T10:00:00Z", "-0.01", "0.00"),
    ("f10", "c5", "2026-02-04T10:00:00Z", "7.25", "0.30"),
]


def float_case_values(kind: str) -> tuple[list[float], list[float], dict[str, int]]:
    """The amounts and costs of FLOAT_CASE_ROWS as a source holding them as ``kind``
    ("double" or "real") would, some with floating-point noise (0 as 4.440892e-16, 0.30 as
    0.1 + 0.2, -19.99 as -19.990000000000002, a few units in the last place elsewhere), and
    how many rows of each month (UTC) hold noise: the rows to count as rounded. The second
    delivery of f07 is exact: once rounded, the noisy one is its duplicate."""
    import numpy as np

    width = np.float64 if kind == "double" else np.float32

    def off(text: str, ulps: int) -> float:
        value = width(text)
        for _ in range(abs(ulps)):
            value = np.nextafter(value, width(np.inf if ulps > 0 else -np.inf))
        return float(value)

    amounts = [float(width(r[3])) for r in FLOAT_CASE_ROWS]
    costs = [float(width(r[4])) for r in FLOAT_CASE_ROWS]
    # (row, amount or cost, units in the last place); in single precision a unit in the last
    # place of 99999.99 is more than a cent, so that one stays exact there
    noise = [(1, amounts, 3), (3, amounts, -1), (6, amounts, 1), (8, costs, 2), (10, amounts, -1)]
    if kind == "double":
        noise += [(4, amounts, 2), (4, costs, -3)]
    for row, values, ulps in noise:
        values[row] = off(FLOAT_CASE_ROWS[row][3 if values is amounts else 4], ulps)
    if kind == "double":
        amounts[1], costs[1] = 4.440892e-16, -4.440892e-16  # 0.00 either way, not negative
        amounts[2] = 0.1 + 0.2  # 0.30000000000000004 (in single precision, 0.3 exactly)
        amounts[3] = -19.990000000000002
    noisy = {row for row, _, _ in noise} | ({2} if kind == "double" else set())
    rounded = {"2026-01": 0, "2026-02": 0}
    for row in noisy:
        rounded[FLOAT_CASE_ROWS[row][2][:7]] += 1
    return amounts, costs, rounded
