"""Comparing warehouse tables with the golden expectations (../shared/golden/README.md).

Rows are matched on their key columns; money compares exactly as Decimal, shares,
gini and hhi within 1e-9, booleans as true/false and empty cells as NULL. Only the
expected file's columns are compared (the warehouse may have more).
"""

from __future__ import annotations

import csv
import math
from datetime import date
from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from pipeline.schema.tables import TABLES

SHARED = Path(__file__).resolve().parents[2] / "shared"
GOLDEN = SHARED / "golden"
FLOAT_TOLERANCE = 1e-9


def golden_case(name: str) -> Path:
    return GOLDEN / name


def _kind(table: str, column: str) -> str:
    return dict(TABLES[table].columns)[column]


def _parse(kind: str, text: str):
    if text == "":
        return None
    if kind == "date":
        return date.fromisoformat(text)
    if kind == "money":
        return Decimal(text)
    if kind in ("int", "bigint"):
        return int(Decimal(text))
    if kind == "float":
        return float(text)
    if kind == "bool":
        return {"true": True, "false": False}[text.lower()]
    return text


def _same(kind: str, expected, actual) -> bool:
    if expected is None or actual is None:
        return expected is None and actual is None
    if kind == "float":
        return math.isclose(expected, actual, rel_tol=0, abs_tol=FLOAT_TOLERANCE)
    if kind == "money":
        return Decimal(expected) == Decimal(actual)
    return expected == actual


def expected_rows(case: str, table: str, months: set[date] | None = None) -> list[dict]:
    path = GOLDEN / case / "expected" / f"{table}.csv"
    if not path.exists() and TABLES[table].service_only:
        return []  # a case without service activities expects no service rows
    if not path.exists() and table == "customer_call":
        return []  # the project's call order: no table of the spec, no golden rows
    with path.open(newline="") as handle:
        rows = [
            {column: _parse(_kind(table, column), text) for column, text in row.items()}
            for row in csv.DictReader(handle)
        ]
    return [r for r in rows if months is None or r["month"] in months]


def table_differences(
    case: str, table: str, actual: pa.Table, months: set[date] | None = None
) -> list[str]:
    """Human-readable differences between the expected CSV and the loaded rows (none for
    customer_call, the project's call order, which the spec's golden cases do not hold)."""
    if table == "customer_call" and not (GOLDEN / case / "expected" / f"{table}.csv").exists():
        return []
    expected = expected_rows(case, table, months)
    key = TABLES[table].key
    rows = actual.to_pylist()
    if months is not None:
        rows = [r for r in rows if r["month"] in months]
    by_key = {tuple(r[k] for k in key): r for r in rows}
    problems = []
    seen = set()
    for row in expected:
        k = tuple(row[c] for c in key)
        seen.add(k)
        got = by_key.get(k)
        if got is None:
            problems.append(f"{table}: missing row {k}")
            continue
        for column, want in row.items():
            if not _same(_kind(table, column), want, got[column]):
                problems.append(f"{table} {k}: {column} expected {want!r}, got {got[column]!r}")
    for k in by_key.keys() - seen:
        problems.append(f"{table}: unexpected row {k}")
    return problems
