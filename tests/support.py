"""Helpers for tests: configuration files and small payment files written by hand."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from pipeline.config import Config, load_config

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


def extracted(folder: Path, rows: Iterable[Iterable[Any]], months: Iterable[str], **config):
    """Write ``rows`` as the CSV source, extract ``months`` and return the configuration."""
    from pipeline.lake import extract

    source = write_payments(folder / "payments.csv", rows)
    cfg = csv_config(folder, source, **config)
    for month in months:
        extract(cfg, month)
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
    from pipeline import runner
    from pipeline.schema import TABLES

    from golden import table_differences

    results = runner.backfill(cfg, start, last)
    assert {r.status for r in results} == {"loaded"}, [r.error for r in results]
    problems = []
    for name in TABLES:
        problems += table_differences(case, name, warehouse_rows(cfg, name))
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
    from pipeline.schema import TABLES
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
    assert {name: len(by_month) for name, by_month in files.items()} == {
        name: months for name in tables
    }
    for name, rows in tables.items():
        assert rows.equals(expected_tables[name]), name
