"""The view ``source_rows``'s columns: a source's relation checked for the columns its
configuration needs, filtered to the months read when it dates rows with a typed column,
and renamed to the canonical columns.

Every value is handed over as text, but for a column that the source already types
exactly (a timestamp, a decimal, an integer; see ``TYPED``): it comes as
``<column>_value`` instead, its text column NULL. An amount or cost held as binary
floating point (REAL or DOUBLE) comes as ``<column>_float``, in its own type.
"""

from __future__ import annotations

import re
from datetime import date

import duckdb
from duckdb import ColumnExpression, ConstantExpression

from pipeline.config.sections import SourceConfig
from pipeline.errors import SourceError
from pipeline.months import month_bounds

TYPED_TIME = ("TIMESTAMP WITH TIME ZONE", "TIMESTAMP", "DATE")


def check_columns(relation: duckdb.DuckDBPyRelation, source: SourceConfig, label: str) -> list[str]:
    have = set(relation.columns)
    missing = [c for c in source.required_columns if source.source_column(c) not in have]
    if missing:
        wanted = ", ".join(f"{c} (as {source.source_column(c)!r})" for c in missing)
        raise SourceError(
            f"{label}: required column(s) missing: {wanted}; the source has {sorted(have)}. "
            f"Map them under [{source.section}.columns]."
        )
    mapped_missing = [c for c in source.columns if source.columns[c] not in have]
    if mapped_missing:
        raise SourceError(
            f"{label}: [{source.section}.columns] maps {mapped_missing} to columns the source lacks"
        )
    return [c for c in source.known_columns if source.source_column(c) in have]


def column_kind(relation: duckdb.DuckDBPyRelation, column: str) -> str:
    return str(dict(zip(relation.columns, relation.types, strict=True))[column])


def filter_months(
    relation: duckdb.DuckDBPyRelation, paid_at: str, first: date, last: date, timezone: str
) -> duckdb.DuckDBPyRelation:
    """Push the month filter down to a typed paid_at (text is filtered after parsing)."""
    kind = column_kind(relation, paid_at)
    start, end = month_bounds(first, timezone)[0], month_bounds(last, timezone)[1]
    if kind == "TIMESTAMP":  # naive values are business-time-zone wall clock
        start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    elif kind == "DATE":
        start, end = start.date(), end.date()
    column = ColumnExpression(paid_at)
    in_month = (column >= ConstantExpression(start)) & (column < ConstantExpression(end))
    return relation.filter(in_month | column.isnull())


# Columns that a typed source hands over as values rather than text: parsing their text
# back (a million timestamps and decimals a month) was most of an extract's time. Each
# has a companion ``<column>_value`` (the source's value, paid_at as TIMESTAMPTZ, or a
# NULL of the canonical type); of the two, one is NULL.
TYPED = {
    "paid_at": "TIMESTAMP WITH TIME ZONE",
    "amount": "DECIMAL(38, 10)",
    "cost": "DECIMAL(38, 10)",
    "units": "BIGINT",
    # the activities' ([service]) columns
    "occurred_at": "TIMESTAMP WITH TIME ZONE",
    "hours": "DECIMAL(38, 10)",
}
TIME_COLUMNS = ("paid_at", "occurred_at")
# An amount or cost held as binary floating point (REAL or DOUBLE) comes as
# ``<column>_float`` in its own type, its text column NULL: the staging SQL reads it as its
# nearest cent within the resolution of that type.
FLOAT_MONEY = ("amount", "cost", "hours")
_FLOATS = ("FLOAT", "DOUBLE")
_EXACT_INTEGERS = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER")
_DECIMAL = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")


def _typed(canonical: str, kind: str) -> bool:
    """Whether a source column of DuckDB type ``kind`` converts to the canonical type of
    ``canonical`` exactly (a naive timestamp or a date is read in the session time zone,
    the business time zone, as its text would be); anything else is judged as text."""
    if canonical in TIME_COLUMNS:
        return kind in TYPED_TIME
    if canonical == "units":
        return kind in _EXACT_INTEGERS
    decimal = _DECIMAL.fullmatch(kind)
    if decimal:  # fits DECIMAL(38, 10) without rounding
        precision, scale = int(decimal[1]), int(decimal[2])
        return scale <= 10 and precision - scale <= 28
    return kind in _EXACT_INTEGERS


def canonical_view(
    relation: duckdb.DuckDBPyRelation, source: SourceConfig, present: list[str], label: str
) -> duckdb.DuckDBPyRelation:
    kinds = dict(zip(relation.columns, map(str, relation.types), strict=True))
    text, double = duckdb.sqltype("VARCHAR"), duckdb.sqltype("DOUBLE")
    null_text = ConstantExpression(None).cast(text)
    columns = []
    for canonical in source.known_columns:
        column = source.source_column(canonical)
        typed = canonical in present and canonical in TYPED and _typed(canonical, kinds[column])
        floating = canonical in FLOAT_MONEY and canonical in present and kinds[column] in _FLOATS
        if canonical not in present or typed or floating:
            columns.append(null_text.alias(canonical))
        else:
            columns.append(ColumnExpression(column).cast(text).alias(canonical))
        if canonical in TYPED:  # a typed value keeps its own type (and scale) but for time
            value = ColumnExpression(column) if typed else ConstantExpression(None)
            if canonical in TIME_COLUMNS or not typed:
                value = value.cast(duckdb.sqltype(TYPED[canonical]))
            columns.append(value.alias(f"{canonical}_value"))
        if canonical in FLOAT_MONEY:
            value = ColumnExpression(column) if floating else ConstantExpression(None).cast(double)
            columns.append(value.alias(f"{canonical}_float"))
    file_expr = (
        ColumnExpression("filename")
        if "filename" in relation.columns
        else ConstantExpression(label)
    )
    columns.append(file_expr.cast(text).alias("source_file"))
    return relation.select(*columns)
