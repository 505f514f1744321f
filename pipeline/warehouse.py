"""The warehouse: reporting tables that BI tools read, replaced one month at a time.

``open_warehouse(cfg)`` returns the DuckDB warehouse (default) or the PostgreSQL one
(``pipeline.postgres``); both offer the same methods:

* ``ensure_schema()`` creates (or migrates) the tables and BI views;
* ``load_month(month, tables, run)`` replaces every reporting table's rows of that
  month and records the run, in one transaction: readers see the old month or the
  new one, never a mix, and a killed load leaves the old month;
* ``record_run(run)`` records a run that loaded nothing (a failed month);
* ``read_table(name, month=None)`` returns rows as Arrow, for checks and tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa

from pipeline.config import Config
from pipeline.schema import PIPELINE_RUN, REPORTING_TABLES, TABLES, Table
from pipeline.sql import sql_text

DUCKDB_TYPES = {
    "date": "DATE",
    "text": "VARCHAR",
    "int": "INTEGER",
    "bigint": "BIGINT",
    "money": "DECIMAL(18, 2)",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
    "json": "VARCHAR",
}


class Warehouse(Protocol):
    def ensure_schema(self) -> None: ...

    def load_month(
        self, month: date, tables: Mapping[str, pa.Table], run: dict[str, Any]
    ) -> None: ...

    def record_run(self, run: dict[str, Any]) -> None: ...

    def read_table(self, name: str, month: date | None = None) -> pa.Table: ...

    def close(self) -> None: ...


def open_warehouse(cfg: Config) -> Warehouse:
    url = cfg.warehouse.url
    if url.startswith("duckdb:///"):
        return DuckDBWarehouse(url.removeprefix("duckdb:///"))
    from pipeline.postgres import PostgresWarehouse

    return PostgresWarehouse(url, cfg.warehouse.schema_name)


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


def month_tables(month: date, tables: Mapping[str, pa.Table]) -> dict[str, pa.Table]:
    """Every reporting table of a month's load, conformed to the contract; a missing table
    or a row of another month is an error (nothing is loaded)."""
    missing = set(TABLES) - set(tables)
    if missing:
        raise ValueError(f"load of {month}: missing table(s) {sorted(missing)}")
    incoming = {name: conform(table, tables[name]) for name, table in TABLES.items()}
    for name, rows in incoming.items():
        others = set(rows.column("month").unique().to_pylist()) - {month}
        if others:
            raise ValueError(f"load of {month}: {name} has rows of {sorted(others)}")
    return incoming


def conform(table: Table, data: pa.Table) -> pa.Table:
    """The table's columns in contract order and types (extra columns are an error)."""
    extra = set(data.column_names) - set(table.column_names)
    if extra:
        raise ValueError(f"{table.name}: unexpected column(s) {sorted(extra)}")
    return data.select(table.column_names).cast(table.arrow_schema())


class DuckDBWarehouse:
    """The default warehouse: one DuckDB file (one writing process at a time)."""

    def __init__(self, path: str) -> None:
        self.path = path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(path)
        self.con.execute("SET TimeZone = 'UTC'")

    def ensure_schema(self) -> None:
        for table in (*REPORTING_TABLES, PIPELINE_RUN):
            self.con.execute(create_table_sql(table, DUCKDB_TYPES, table.name))
        self.con.execute(sql_text("warehouse_views"))

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise

    def load_month(self, month: date, tables: Mapping[str, pa.Table], run: dict[str, Any]) -> None:
        incoming = month_tables(month, tables)
        with self._transaction() as con:
            for name, rows in incoming.items():
                con.execute(f"DELETE FROM {name} WHERE month = ?", [month])
                con.register("incoming_rows", rows)
                con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM incoming_rows")
                con.unregister("incoming_rows")
            self._insert_run(run)

    def record_run(self, run: dict[str, Any]) -> None:
        with self._transaction():
            self._insert_run(run)

    def _insert_run(self, run: Mapping[str, Any]) -> None:
        row = run_row(run)
        self.con.register("incoming_run", pa.Table.from_pylist([row], PIPELINE_RUN.arrow_schema()))
        self.con.execute("INSERT OR REPLACE INTO pipeline_run BY NAME SELECT * FROM incoming_run")
        self.con.unregister("incoming_run")

    def read_table(self, name: str, month: date | None = None) -> pa.Table:
        if name not in TABLES and name != PIPELINE_RUN.name:
            raise ValueError(f"unknown table {name!r}")
        if month is None:
            return self.con.sql(f"SELECT * FROM {name}").to_arrow_table()
        return self.con.sql(
            f"SELECT * FROM {name} WHERE month = ?", params=[month]
        ).to_arrow_table()

    def close(self) -> None:
        self.con.close()
