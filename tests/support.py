"""Helpers for tests: configuration files and small payment files written by hand."""

from __future__ import annotations

import csv
import hashlib
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


def files_of(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and the hash of its content (not the writer lock, which
    says who wrote last, nor DuckDB's spill files)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".spill" not in p.parts and p.name != "writer.lock"
    }


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
