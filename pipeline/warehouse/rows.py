"""What a load hands to either warehouse: a month's tables conformed to the contract
(``MonthRows``: Arrow rows or a Parquet file of them), the run's ``pipeline_run`` row,
and a table's CREATE TABLE statement.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.schema.tables import PIPELINE_RUN, TABLES, Table


def run_row(run: Mapping[str, Any]) -> dict[str, Any]:
    """A ``pipeline_run`` row from a run record, every column present."""
    row = {name: run.get(name) for name in PIPELINE_RUN.column_names}
    if not isinstance(row["check_results"], str | None):
        row["check_results"] = json.dumps(row["check_results"], default=str)
    return row


def create_table_sql(table: Table, types: Mapping[str, str], qualified: str) -> str:
    columns = ",\n    ".join(f'"{name}" {types[kind]}' for name, kind in table.columns)
    key = ", ".join(f'"{c}"' for c in table.key)
    return f"CREATE TABLE IF NOT EXISTS {qualified} (\n    {columns},\n    PRIMARY KEY ({key})\n)"


# A month's table as Arrow rows, or as a Parquet file in the table's types (the files that
# ``compute.month.write_month`` computed): the DuckDB warehouse adopts such a file as it is.
MonthRows = pa.Table | Path


def month_tables(month: date, tables: Mapping[str, MonthRows]) -> dict[str, MonthRows]:
    """Every reporting table of a month's load, conformed to the contract; a missing table
    or a row of another month is an error (nothing is loaded). The service tables are
    given only by a month computed with a [service] source: a load without them leaves the
    month without service rows."""
    required = {name for name, table in TABLES.items() if not table.service_only}
    missing = required - set(tables)
    if missing:
        raise ValueError(f"load of {month}: missing table(s) {sorted(missing)}")
    incoming = {
        name: conform(table, tables[name]) for name, table in TABLES.items() if name in tables
    }
    for name, rows in incoming.items():
        others = _months_of(rows) - {month}
        if others:
            raise ValueError(f"load of {month}: {name} has rows of {sorted(others)}")
    return incoming


def conform(table: Table, data: MonthRows) -> MonthRows:
    """The table's columns in contract order and types (extra columns are an error); a file
    must hold exactly those columns and types already (checked on its schema)."""
    schema = data.schema if isinstance(data, pa.Table) else pq.read_schema(data)
    extra = set(schema.names) - set(table.column_names)
    if extra:
        raise ValueError(f"{table.name}: unexpected column(s) {sorted(extra)}")
    if table.service_columns and not set(table.service_columns) & set(schema.names):
        table = table.without_service()  # a month computed without a [service] source
    if isinstance(data, pa.Table):
        return data.select(table.column_names).cast(table.arrow_schema())
    found = [(f.name, f.type) for f in schema]
    wanted = [(f.name, f.type) for f in table.arrow_schema()]
    if found != wanted:
        raise ValueError(f"{table.name}: {data} has columns {found}, not the contract's {wanted}")
    return data


def as_arrow(table: Table, rows: MonthRows) -> pa.Table:
    """The rows in the table's full schema; the service columns a month computed without a
    [service] source lacks are NULL."""
    schema = table.arrow_schema()
    if isinstance(rows, pa.Table):
        data = rows
    else:
        present = pq.read_schema(rows).names
        data = pq.read_table(rows, schema=pa.schema([f for f in schema if f.name in present]))
    for column in schema:
        if column.name not in data.column_names:
            data = data.append_column(column, pa.nulls(data.num_rows, column.type))
    return data.select(schema.names).cast(schema)


def _months_of(rows: MonthRows) -> set[date]:
    """The months a table's rows are of; for a file, from its row groups' statistics when
    the writer recorded them (DuckDB does), else from the column itself."""
    if isinstance(rows, pa.Table):
        return set(rows.column("month").unique().to_pylist())
    metadata = pq.ParquetFile(rows).metadata
    column = metadata.schema.names.index("month")
    months = set()
    for index in range(metadata.num_row_groups):
        stats = metadata.row_group(index).column(column).statistics
        if stats is None or not stats.has_min_max:
            return set(pq.read_table(rows, columns=["month"]).column("month").unique().to_pylist())
        months |= {stats.min, stats.max}
    return months
