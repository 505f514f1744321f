"""The warehouse: reporting tables that BI tools read, replaced one month at a time.

``open_warehouse(cfg)`` returns the DuckDB warehouse (default) or the PostgreSQL one
(``warehouse.postgres``); both offer the same methods:

* ``ensure_schema()`` creates (or migrates) the tables and BI views;
* ``load_month(month, tables, run)`` replaces every reporting table's rows of that
  month and records the run, in one transaction: readers see the old month or the
  new one, never a mix, and a killed load leaves the old month;
* ``record_run(run)`` records a run that loaded nothing (a failed month);
* ``replace_customers(rows)`` replaces the customer attributes (names, owners) that the
  BI views join, from the optional ``[customers]`` source;
* ``read_table(name, month=None)`` returns rows as Arrow, for checks and tests.

The modules: ``duckdb`` (the default warehouse: month files) and ``catalog`` (its state
and the catalog BI tools open); ``postgres`` (a schema of a PostgreSQL database),
``postgres_schema`` (its tables, migrations and BI views) and ``postgres_roles`` (the BI
read-only role); ``rows`` (what a load hands to either: the month's tables conformed to
the contract, the run's row).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any, Protocol

import pyarrow as pa

from pipeline.config import Config
from pipeline.warehouse.duckdb import DuckDBWarehouse
from pipeline.warehouse.rows import MonthRows


class Warehouse(Protocol):
    def ensure_schema(self) -> None: ...

    def load_month(
        self, month: date, tables: Mapping[str, MonthRows], run: dict[str, Any]
    ) -> None: ...

    def record_run(self, run: dict[str, Any]) -> None: ...

    def replace_customers(self, rows: pa.Table) -> None: ...

    def read_table(self, name: str, month: date | None = None) -> pa.Table: ...

    def close(self) -> None: ...


def open_warehouse(cfg: Config) -> Warehouse:
    url = cfg.warehouse.url
    if url.startswith("duckdb:///"):
        return DuckDBWarehouse(
            url.removeprefix("duckdb:///"), lock_timeout=cfg.warehouse.lock_timeout
        )
    # imported when used: the PostgreSQL drivers add 0.2-0.4 s to a process's start-up
    from pipeline.warehouse.postgres import PostgresWarehouse

    return PostgresWarehouse(url, cfg.warehouse.schema_name)
