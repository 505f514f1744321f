"""PostgreSQL: a warehouse for BI tools.

Warehouse (``[warehouse] url = "postgresql://..."``): the reporting tables in one
schema, with typed columns, primary keys on each table's grain and indexes for
dashboards. Each month is bulk-loaded into temporary staging tables and then swapped
in by one transaction (delete the month, insert it, record the run), serialized per
month by an advisory lock: readers see the old month or the new one, never a mix.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import date
from typing import Any

import adbc_driver_postgresql.dbapi as adbc
import psycopg
import pyarrow as pa

from pipeline.errors import WarehouseConnectionError
from pipeline.pg import (
    first_line,
    plain_identifier,
    quote_ident,
    redact_dsn,
    redact_message,
    with_connect_timeout,
)
from pipeline.schema.tables import CUSTOMER, PIPELINE_RUN, TABLES, Table
from pipeline.warehouse.postgres_schema import (
    POSTGRES_TYPES,
    PostgresSchema,
    advisory_key,
    views_sql,
)
from pipeline.warehouse.rows import MonthRows, as_arrow, conform, month_tables, run_row

log = logging.getLogger(__name__)


# Staging tables take the Arrow data as ADBC writes it; json arrives as text.
_STAGING_TYPES = POSTGRES_TYPES | {"json": "text"}
# How read_table selects a column so that ADBC returns plain Arrow types.
_READ_CAST = {"money": "::text", "json": "::text"}


class PostgresWarehouse:
    """The reporting tables in one schema of a PostgreSQL database."""

    def __init__(self, url: str, schema: str) -> None:
        self.url = url
        self.schema = plain_identifier(schema, "warehouse.schema")
        self._schema = PostgresSchema(self.schema)
        self._adbc: adbc.Connection | None = None

    # connections ----------------------------------------------------------------------

    def _unreachable(self, exc: BaseException) -> WarehouseConnectionError:
        cause = first_line(redact_message(str(exc), self.url))
        return WarehouseConnectionError(
            f"warehouse {redact_dsn(self.url)} cannot be reached: {cause}. Check that the "
            "PostgreSQL server is running and that warehouse.url (or TIERS__WAREHOUSE__URL) "
            "names its host, port, database and user, then run the command again; nothing "
            "was written to the warehouse."
        )

    def _lost(self, exc: BaseException) -> WarehouseConnectionError:
        cause = first_line(redact_message(str(exc), self.url))
        return WarehouseConnectionError(
            f"warehouse {redact_dsn(self.url)}: the connection ended in the middle of a "
            f"transaction ({cause}). Nothing of that transaction was committed: the warehouse "
            "holds what it held before. Check the server (it may have restarted, or an "
            "administrator ended the session), then run the command again."
        )

    @contextmanager
    def psycopg_connection(self) -> Iterator[psycopg.Connection]:
        """An autocommit psycopg connection; a failure to connect or a lost connection is a
        WarehouseConnectionError."""
        try:
            conn = psycopg.connect(with_connect_timeout(self.url), autocommit=True)
        except psycopg.OperationalError as exc:
            raise self._unreachable(exc) from exc
        try:
            with conn:
                yield conn
        except psycopg.OperationalError as exc:
            if not conn.closed and not conn.broken:
                raise
            raise self._lost(exc) from exc

    def __repr__(self) -> str:
        return f"PostgresWarehouse({redact_dsn(self.url)!r}, {self.schema!r})"

    def qualified(self, table: str) -> str:
        return self._schema.qualified(table)

    # schema ---------------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Create or migrate the schema, tables, indexes and BI views; idempotent.

        Does nothing (and takes no lock) when everything is in place, so that loads do
        not wait for BI sessions that hold the views.
        """
        views = views_sql()
        with self.psycopg_connection() as conn:
            self._schema.ensure(conn, views)

    # loading --------------------------------------------------------------------------

    def _connection(self) -> adbc.Connection:
        if self._adbc is None:
            try:
                self._adbc = adbc.connect(with_connect_timeout(self.url), autocommit=False)
            except adbc.Error as exc:
                raise self._unreachable(exc) from exc
        return self._adbc

    @contextmanager
    def _transaction(self) -> Iterator[adbc.Cursor]:
        """A transaction on the ADBC connection: committed if the block succeeds, else rolled
        back; a connection that ended mid-way is dropped (the server rolled back)."""
        connection = self._connection()
        cur = connection.cursor()
        try:
            yield cur
            connection.commit()
        except BaseException as exc:
            try:
                connection.rollback()
            except adbc.Error:  # no connection to roll back on: the server ended it
                self._drop_connection()
                if isinstance(exc, adbc.Error):
                    raise self._lost(exc) from exc
            raise
        finally:
            with suppress(adbc.Error):
                cur.close()

    def _drop_connection(self) -> None:
        connection, self._adbc = self._adbc, None
        if connection is not None:
            with suppress(adbc.Error):
                connection.close()

    def load_month(self, month: date, tables: Mapping[str, MonthRows], run: dict[str, Any]) -> None:
        """Replace every reporting table's rows of ``month`` and record the run, atomically."""
        given = month_tables(month, tables)
        incoming = {  # a service table a month computed without [service] lacks: no rows
            name: as_arrow(table, given[name])
            if name in given
            else table.arrow_schema().empty_table()
            for name, table in TABLES.items()
        }
        with self._transaction() as cur:
            # Staging first, outside the lock: the lock is held for the swap only.
            for name, rows in incoming.items():
                self._stage(cur, TABLES[name], rows)
            self._stage(cur, PIPELINE_RUN, _run_table(run))
            cur.execute(
                "SELECT pg_advisory_xact_lock($1)",
                parameters=(advisory_key(self.schema, month.isoformat()),),
            )
            for name, table in TABLES.items():
                cur.execute(
                    f"DELETE FROM {self.qualified(name)} WHERE month = $1", parameters=(month,)
                )
                columns = ", ".join(quote_ident(c) for c in table.column_names)
                cur.execute(
                    f"INSERT INTO {self.qualified(name)} ({columns}) "
                    f"SELECT {columns} FROM {_staging_name(table)}"
                )
            self._insert_run(cur)

    def record_run(self, run: dict[str, Any]) -> None:
        """Record a run that loaded nothing, as a new attempt of its run id and month."""
        with self._transaction() as cur:
            self._stage(cur, PIPELINE_RUN, _run_table(run))
            cur.execute(
                "SELECT pg_advisory_xact_lock($1)",
                parameters=(advisory_key(self.schema, run_row(run)["month"].isoformat()),),
            )
            self._insert_run(cur)

    def replace_customers(self, rows: pa.Table) -> None:
        """Replace the customer attributes, in one transaction (readers see old or new)."""
        with self._transaction() as cur:
            self._stage(cur, CUSTOMER, conform(CUSTOMER, rows))
            cur.execute(
                "SELECT pg_advisory_xact_lock($1)",
                parameters=(advisory_key(self.schema, CUSTOMER.name),),
            )
            target = self.qualified(CUSTOMER.name)
            names = ", ".join(quote_ident(c) for c in CUSTOMER.column_names)
            values = ", ".join(
                f"{quote_ident(c)}::jsonb" if kind == "json" else quote_ident(c)
                for c, kind in CUSTOMER.columns
            )
            cur.execute(f"DELETE FROM {target}")
            cur.execute(
                f"INSERT INTO {target} ({names}) SELECT {values} FROM {_staging_name(CUSTOMER)}"
            )

    def _stage(self, cur: adbc.Cursor, table: Table, rows: pa.Table) -> None:
        """Bulk-load ``rows`` into a temporary table that the transaction's end drops."""
        columns = ", ".join(f"{quote_ident(n)} {_STAGING_TYPES[k]}" for n, k in table.columns)
        cur.execute(f"CREATE TEMPORARY TABLE {_staging_name(table)} ({columns}) ON COMMIT DROP")
        if rows.num_rows:
            cur.adbc_ingest(_staging_name(table, quoted=False), rows, mode="append", temporary=True)

    def _insert_run(self, cur: adbc.Cursor) -> None:
        """Insert the staged run as the next attempt of its (run_id, month); the caller holds
        the month's advisory lock, so attempts are numbered one at a time."""
        table = self.qualified(PIPELINE_RUN.name)
        given = [c for c in PIPELINE_RUN.column_names if c not in ("attempt", "recorded_at")]
        names = ", ".join(quote_ident(c) for c in (*given, "attempt", "recorded_at"))
        kinds = dict(PIPELINE_RUN.columns)
        values = ", ".join(
            f"s.{quote_ident(c)}::jsonb" if kinds[c] == "json" else f"s.{quote_ident(c)}"
            for c in given
        )
        cur.execute(
            f"INSERT INTO {table} ({names}) "
            f"SELECT {values}, 1 + coalesce((SELECT max(r.attempt) FROM {table} AS r "
            "WHERE r.run_id = s.run_id AND r.month = s.month), 0), clock_timestamp() "
            f"FROM {_staging_name(PIPELINE_RUN)} AS s"
        )

    # reading --------------------------------------------------------------------------

    def read_table(self, name: str, month: date | None = None) -> pa.Table:
        table = TABLES.get(name) or {PIPELINE_RUN.name: PIPELINE_RUN, CUSTOMER.name: CUSTOMER}.get(
            name
        )
        if table is None:
            raise ValueError(f"unknown table {name!r}")
        columns = ", ".join(
            f"{quote_ident(c)}{_READ_CAST.get(kind, '')} AS {quote_ident(c)}"
            for c, kind in table.columns
        )
        order = ", ".join(quote_ident(c) for c in table.key)
        query = f"SELECT {columns} FROM {self.qualified(name)}"
        with self._transaction() as cur:  # ends the read transaction: no snapshot kept open
            if month is None or table is CUSTOMER:
                cur.execute(f"{query} ORDER BY {order}")
            else:
                cur.execute(f"{query} WHERE month = $1 ORDER BY {order}", parameters=(month,))
            data = cur.fetch_arrow_table()
        plain = pa.table(
            [_plain_column(c) for c in data.columns],
            names=data.column_names,
        )
        return plain.cast(table.arrow_schema())

    def close(self) -> None:
        self._drop_connection()


def _staging_name(table: Table, *, quoted: bool = True) -> str:
    name = f"staging_{table.name}"
    return quote_ident(name) if quoted else name


def _run_table(run: Mapping[str, Any]) -> pa.Table:
    return pa.Table.from_pylist([run_row(run)], PIPELINE_RUN.arrow_schema())


def _plain_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if isinstance(column.type, pa.BaseExtensionType):
        return pa.chunked_array([c.storage for c in column.chunks], column.type.storage_type)
    return column
