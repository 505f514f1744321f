"""The data the gates hand to GX: the computed tables (in memory, or the Parquet files the
computation wrote) as bounded batches, DuckDB views over the lake partition, the check
tables of ``sql/checks/`` (the rows that break a rule), and the pandas frames GX
validates."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import Config
from pipeline.gates.rules import Expect, Subject
from pipeline.schema.tables import TABLES
from pipeline.sql import bounded_connection, run_sql

# A computed table: its rows in memory, or the Parquet file the computation wrote (read
# in batches and by DuckDB, so that a month of millions of rows is never held whole).
Rows = pa.Table | Path


def table(tables: dict[str, Rows], name: str) -> Rows:
    """The computed table, or an empty one of its schema when it is missing."""
    return tables[name] if name in tables else TABLES[name].arrow_schema().empty_table()


def num_rows(rows: Rows) -> int:
    return rows.num_rows if isinstance(rows, pa.Table) else pq.ParquetFile(rows).metadata.num_rows


def register(con: duckdb.DuckDBPyConnection, name: str, rows: Rows) -> None:
    """Make ``rows`` the view ``name`` of the connection."""
    if isinstance(rows, pa.Table):
        con.register(name, rows)
    else:
        con.read_parquet(str(rows)).create_view(name, replace=True)


def batches(rows: Rows, batch_rows: int) -> Callable[[], Iterator]:
    if isinstance(rows, pa.Table):
        return _table_batches(rows, batch_rows)
    columns = pq.read_schema(rows).names
    return lambda: parquet_batches([str(rows)], columns, batch_rows)


def schema_table(files: list[str], expected: dict[str, pa.DataType]) -> pa.Table:
    """One row per (file, column present in the file and canonical): actual and expected type."""
    rows = {"file": [], "column": [], "actual_type": [], "expected_type": []}
    for path in files:
        for column in pq.read_schema(path):
            if column.name in expected:
                rows["file"].append(Path(path).name)
                rows["column"].append(column.name)
                rows["actual_type"].append(str(column.type))
                rows["expected_type"].append(str(expected[column.name]))
    return pa.table(rows, schema=pa.schema([(k, pa.string()) for k in rows]))


def parquet_batches(
    files: list[str], columns: list[str], batch_rows: int
) -> Iterator[tuple[str, pa.Table]]:
    """The files' rows in batches of at most ``batch_rows``, with the wanted columns they have."""
    for path in files:
        parquet = pq.ParquetFile(path)
        have = [c for c in columns if c in parquet.schema_arrow.names]
        offset = 0
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=have):
            yield f"{Path(path).name} rows {offset}..", pa.Table.from_batches([batch])
            offset += batch.num_rows
        if parquet.metadata.num_rows == 0:
            yield f"{Path(path).name} (empty)", parquet.schema_arrow.empty_table().select(have)


def _table_batches(table: pa.Table, batch_rows: int) -> Callable[[], Iterator]:
    def batches() -> Iterator[tuple[str, pa.Table]]:
        yield "rows 0..", table.slice(0, batch_rows)  # at least one batch, possibly empty
        for offset in range(batch_rows, table.num_rows, batch_rows):
            yield f"rows {offset}..", table.slice(offset, batch_rows)

    return batches


@contextmanager
def connect(cfg: Config) -> Iterator[duckdb.DuckDBPyConnection]:
    con = bounded_connection(cfg)
    try:
        yield con
    finally:
        con.close()


def lake_view(con: duckdb.DuckDBPyConnection, files: list[str]) -> str | None:
    """Create the view ``lake_partition`` over the files; the error text if they cannot be read."""
    try:
        # the folder is named month=YYYY-MM: the month column comes from the files, not the path
        relation = con.read_parquet(files, union_by_name=True, hive_partitioning=False)
        relation.create_view("lake_partition")
    except duckdb.Error as exc:
        return str(exc)
    return None


def keys_view(
    con: duckdb.DuckDBPyConnection, query: str, setup_error: str | None = None
) -> str | None:
    """Point ``checked_keys`` (read by sql/checks/duplicate_keys.sql) at ``query``."""
    if setup_error:
        return setup_error
    try:
        con.execute(f"create or replace temp view checked_keys as {query}")
    except duckdb.Error as exc:
        return str(exc)
    return None


def check_table(
    con: duckdb.DuckDBPyConnection,
    batch_rows: int,
    rule: str,
    check: str,
    description: str,
    *,
    setup_error: str | None = None,
    inputs: dict[str, str] | None = None,
    **params: Any,
) -> Subject:
    """Compute ``sql/checks/<rule>.sql`` (the rows that break the rule) as a temp table."""
    expect = Expect(check, "expect_table_row_count_to_equal", {"value": 0}, description)
    table_name = f"check_{check.replace('.', '_')}"
    subject = Subject(f"sql/checks/{rule}.sql", [expect], lambda: (), rows_are_examples=True)
    if setup_error:
        subject.error = setup_error
        return subject
    try:
        run_sql(con, f"checks/{rule}", create=table_name, inputs=inputs, **params)
    except duckdb.Error as exc:
        subject.error = str(exc)
        return subject

    def batches() -> Iterator[tuple[str, pa.Table]]:
        reader = con.table(table_name).to_arrow_reader(batch_rows)
        offset = 0
        for batch in reader:
            yield f"rows {offset}..", pa.Table.from_batches([batch])
            offset += batch.num_rows
        if offset == 0:  # GX validates the empty check table: that is the passing case
            yield "no rows", reader.schema.empty_table()

    subject.batches = batches
    return subject


def frame(table: pa.Table):
    """The rows as a pandas DataFrame that GX validates quickly and decides the same way.

    Decimals become float64 through their exact text (correctly rounded, so sign and range
    checks decide as on the decimals) and dates their ISO text: as Arrow-backed pandas
    types, GX's column metrics would fall back to a Python call per value.
    """
    columns = {}
    for column in table.schema:
        values = table[column.name]
        if pa.types.is_decimal(column.type):
            values = values.cast(pa.string()).cast(pa.float64())
        elif pa.types.is_date(column.type):
            values = values.cast(pa.string())
        columns[column.name] = values
    return pa.table(columns).to_pandas()
