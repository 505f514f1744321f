"""Sources: where payments come from (CSV, Parquet, a DuckDB table, PostgreSQL).

Each source exposes the rows of a range of months to a DuckDB connection as the view
``source_rows`` with the canonical column names (see ``schema.inputs.CANONICAL_COLUMNS``),
every value as text, plus ``source_file`` so that errors can point at the file. A
column that the source already types exactly (a timestamp, a decimal, an integer; see
``canonical.TYPED``) comes as ``<column>_value`` instead, its text column NULL; an
amount or cost held as binary floating point (REAL or DOUBLE) comes as
``<column>_float``, in its own type. Parsing and validation happen once, in
``sql/staging_payments.sql``. Rows whose paid_at cannot be placed in a month (missing
or unparseable) are always included, since they could belong to any month.

This module is the one interface (``open_months``, ``SourceRows``); the kinds live in
``files`` (csv, parquet, duckdb) and ``postgres``, the view's columns in ``canonical``,
and the customer attributes' source in ``customers``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import duckdb

from pipeline.config.sections import SourceConfig
from pipeline.sources.canonical import (
    TYPED_TIME,
    canonical_view,
    check_columns,
    column_kind,
    filter_months,
)
from pipeline.sources.files import read_file_source


@dataclass(frozen=True)
class SourceRows:
    """What an extract knows about the rows it reads."""

    label: str  # the file(s) or table, for messages and the manifest
    columns_present: tuple[str, ...]  # optional canonical columns the source has
    # paid_at is typed, so the source's rows of one month are read alone (its row groups
    # or partitions, by their statistics); a text source is read once for every month
    reads_by_month: bool = False


def open_months(
    con: duckdb.DuckDBPyConnection, source: SourceConfig, first: date, last: date, timezone: str
) -> SourceRows:
    """Create the view ``source_rows``: the source's rows that may belong to first..last.

    ``source`` is the payments' [source] or the activities' [service]: its class names the
    canonical columns, the required ones and the column that dates a row."""
    if source.kind == "postgres":
        # imported when used: the PostgreSQL drivers add 0.2-0.4 s to a process's start-up
        from pipeline.sources.postgres import read_source_month

        relation, label = read_source_month(con, source, first, last, timezone)
    else:
        relation, label = read_file_source(con, source)

    present = check_columns(relation, source, label)
    dated_by = source.source_column(source.time_column)
    typed_time = column_kind(relation, dated_by) in TYPED_TIME
    if typed_time:
        relation = filter_months(relation, dated_by, first, last, timezone)
    canonical_view(relation, source, present, label).create_view("source_rows", replace=True)
    optional = tuple(c for c in present if c not in source.required_columns)
    return SourceRows(label=label, columns_present=optional, reads_by_month=typed_time)
