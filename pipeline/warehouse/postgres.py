"""PostgreSQL: a warehouse for BI tools.

Warehouse (``[warehouse] url = "postgresql://..."``): the reporting tables in one
schema, with typed columns, primary keys on each table's grain and indexes for
dashboards. Each month is bulk-loaded into temporary staging tables and then swapped
in by one transaction (delete the month, insert it, record the run), serialized per
month by an advisory lock: readers see the old month or the new one, never a mix.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import date
from typing import Any

import adbc_driver_postgresql.dbapi as adbc
import psycopg
import pyarrow as pa
from psycopg import sql

from pipeline.errors import (
    WarehouseConnectionError,
    WarehouseSchemaError,
)
from pipeline.pg import (
    first_line,
    plain_identifier,
    quote_ident,
    redact_dsn,
    redact_message,
    with_connect_timeout,
)
from pipeline.schema import (
    CUSTOMER,
    PIPELINE_RUN,
    TABLES,
    WAREHOUSE_TABLES,
    Table,
    comment_statements,
    description_digest,
)
from pipeline.sql import sql_text
from pipeline.warehouse.rows import (
    MonthRows,
    as_arrow,
    conform,
    create_table_sql,
    month_tables,
    run_row,
)

log = logging.getLogger(__name__)


def _advisory_key(*parts: str) -> int:
    """A stable signed 64-bit key for pg_advisory_xact_lock from the given parts."""
    digest = hashlib.blake2b("\x1f".join(("tiers", *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# --- warehouse ---------------------------------------------------------------------------

# Logical types as PostgreSQL names them (and format_type() writes them).
POSTGRES_TYPES = {
    "date": "date",
    "text": "text",
    "int": "integer",
    "bigint": "bigint",
    "money": "numeric(18,2)",
    "float": "double precision",
    "bool": "boolean",
    "timestamp": "timestamp with time zone",
    "json": "jsonb",
}
# Staging tables take the Arrow data as ADBC writes it; json arrives as text.
_STAGING_TYPES = POSTGRES_TYPES | {"json": "text"}
# How read_table selects a column so that ADBC returns plain Arrow types.
_READ_CAST = {"money": "::text", "json": "::text"}
_LOCK_TIMEOUT = "60s"
_VIEWS = "warehouse_views"


def _ddl_sync(warehouse: PostgresWarehouse, cur: psycopg.Cursor) -> None:
    """Create every contract table, column and index that is missing, and only those.

    DDL on an existing table would wait for (and block) its readers and loads.
    """
    columns = warehouse.columns(cur)
    indexes = warehouse.indexes(cur)
    for table in WAREHOUSE_TABLES:
        target = warehouse.qualified(table.name)
        if not any(t == table.name for t, _ in columns):
            cur.execute(create_table_sql(table, POSTGRES_TYPES, target))
        else:
            for name, kind in table.columns:
                if (table.name, name) not in columns:
                    column = f"{quote_ident(name)} {POSTGRES_TYPES[kind]}"
                    cur.execute(f"ALTER TABLE {target} ADD COLUMN {column}")
        for column in _indexed_columns(table):
            index = f"{table.name}_{column}_idx"
            if index not in indexes:
                cur.execute(
                    f"CREATE INDEX {quote_ident(index)} ON {target} ({quote_ident(column)})"
                )


def _indexed_columns(table: Table) -> list[str]:
    # The primary key of a reporting table starts with month, so it already serves
    # month filters; pipeline_run's key starts with run_id and needs its own.
    month = [] if table.key[0] == "month" or "month" not in table.column_names else ["month"]
    return month + [c for c in table.indexes if c != table.key[0]]


def _type_mismatches(columns: Mapping[tuple[str, str], str]) -> list[str]:
    """Contract columns whose PostgreSQL type is not the contract's."""
    return [
        f"{table.name}.{name} is {columns[(table.name, name)]}, expected {POSTGRES_TYPES[kind]}"
        for table in WAREHOUSE_TABLES
        for name, kind in table.columns
        if columns.get((table.name, name)) not in (None, POSTGRES_TYPES[kind])
    ]


def _run_attempts(warehouse: PostgresWarehouse, cur: psycopg.Cursor) -> None:
    """pipeline_run keeps every attempt: key (run_id, month, attempt)."""
    _ddl_sync(warehouse, cur)  # adds attempt and recorded_at to an older table
    table = warehouse.qualified(PIPELINE_RUN.name)
    cur.execute(f"UPDATE {table} SET attempt = 1 WHERE attempt IS NULL")
    cur.execute(f"UPDATE {table} SET recorded_at = finished_at WHERE recorded_at IS NULL")
    cur.execute(
        "SELECT c.conname, array_agg(a.attname::text ORDER BY a.attname) FROM pg_constraint c "
        "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey) "
        "WHERE c.conrelid = %s::regclass AND c.contype = 'p' GROUP BY c.conname",
        [table],
    )
    found = cur.fetchone()
    if found is not None and sorted(found[1]) == sorted(PIPELINE_RUN.key):
        return
    if found is not None:
        cur.execute(f"ALTER TABLE {table} DROP CONSTRAINT {quote_ident(found[0])}")
    key = ", ".join(quote_ident(c) for c in PIPELINE_RUN.key)
    cur.execute(f"ALTER TABLE {table} ADD PRIMARY KEY ({key})")


# Ordered migrations: (version, description, function). Append, never edit or reorder.
MIGRATIONS = (
    (1, "reporting tables, pipeline_run, keys and indexes", _ddl_sync),
    (2, "pipeline_run keeps every attempt of a run", _run_attempts),
    (3, "customer attributes (names and owners for the BI views)", _ddl_sync),
    (4, "customer_call: the call order of the alerts", _ddl_sync),
)


def _views_sql() -> str:
    """The BI views, and what goes into their descriptions (a change re-creates them)."""
    return sql_text(_VIEWS) + "\n-- descriptions: " + description_digest() + "\n"


class PostgresWarehouse:
    """The reporting tables in one schema of a PostgreSQL database."""

    def __init__(self, url: str, schema: str) -> None:
        self.url = url
        self.schema = plain_identifier(schema, "warehouse.schema")
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
    def _psycopg(self) -> Iterator[psycopg.Connection]:
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
        return f"{quote_ident(self.schema)}.{quote_ident(table)}"

    # schema ---------------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Create or migrate the schema, tables, indexes and BI views; idempotent.

        Does nothing (and takes no lock) when everything is in place, so that loads do
        not wait for BI sessions that hold the views.
        """
        views = _views_sql()
        views_digest = hashlib.sha256(views.encode()).hexdigest()
        with self._psycopg() as conn:
            if not self._schema_problems(conn, views_digest):
                return
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT set_config('lock_timeout', %s, true)", [_LOCK_TIMEOUT])
                cur.execute("SELECT pg_advisory_xact_lock(%s)", [_advisory_key(self.schema, "ddl")])
                cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [self.schema])
                if cur.fetchone() is None:  # CREATE SCHEMA needs CREATE on the database
                    cur.execute(f"CREATE SCHEMA {quote_ident(self.schema)}")
                cur.execute(
                    f"CREATE TABLE IF NOT EXISTS {self.qualified('schema_version')} ("
                    "version integer PRIMARY KEY, description text NOT NULL, "
                    "applied_at timestamp with time zone NOT NULL DEFAULT now())"
                )
                cur.execute(
                    f"CREATE TABLE IF NOT EXISTS {self.qualified('schema_views')} ("
                    "digest text PRIMARY KEY, "
                    "created_at timestamp with time zone NOT NULL DEFAULT now())"
                )
                cur.execute(f"SELECT version FROM {self.qualified('schema_version')}")
                applied = {row[0] for row in cur.fetchall()}
                for version, description, migrate in MIGRATIONS:
                    if version in applied:
                        continue
                    log.info("warehouse %s: migration %d (%s)", self.schema, version, description)
                    migrate(self, cur)
                    cur.execute(
                        f"INSERT INTO {self.qualified('schema_version')} (version, description) "
                        "VALUES (%s, %s)",
                        [version, description],
                    )
                _ddl_sync(self, cur)  # the contract may have gained tables or columns since
                mismatches = _type_mismatches(self.columns(cur))
                if mismatches:
                    raise WarehouseSchemaError(
                        f"warehouse schema {self.schema!r} does not match the contract: "
                        + "; ".join(mismatches)
                    )
                cur.execute(
                    f"SELECT 1 FROM {self.qualified('schema_views')} WHERE digest = %s",
                    [views_digest],
                )
                if cur.fetchone() is None:
                    cur.execute(
                        "SELECT set_config('search_path', %s, true)", [quote_ident(self.schema)]
                    )
                    cur.execute(views)
                    for statement in self._comment_statements(cur):
                        cur.execute(statement)
                    cur.execute(f"DELETE FROM {self.qualified('schema_views')}")
                    cur.execute(
                        f"INSERT INTO {self.qualified('schema_views')} (digest) VALUES (%s)",
                        [views_digest],
                    )

    def _schema_problems(self, conn: psycopg.Connection, views_digest: str) -> list[str]:
        """What ensure_schema has to do (empty when the schema is up to date)."""
        problems = []
        with conn.cursor() as cur:
            cur.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
                [self.schema],
            )
            existing = {row[0] for row in cur.fetchall()}
            if not {"schema_version", "schema_views"} <= existing:
                return ["schema not created"]
            cur.execute(f"SELECT version FROM {self.qualified('schema_version')}")
            applied = {row[0] for row in cur.fetchall()}
            problems += [f"migration {v}" for v, _, _ in MIGRATIONS if v not in applied]
            cur.execute(f"SELECT digest FROM {self.qualified('schema_views')}")
            if [row[0] for row in cur.fetchall()] != [views_digest]:
                problems.append("views")
            columns = self.columns(cur)
            for table in WAREHOUSE_TABLES:
                missing = [c for c in table.column_names if (table.name, c) not in columns]
                problems += [f"{table.name}.{c} missing" for c in missing]
            problems += _type_mismatches(columns)
            indexes = self.indexes(cur)
            for table in WAREHOUSE_TABLES:
                problems += [
                    f"index {table.name}_{c}_idx"
                    for c in _indexed_columns(table)
                    if f"{table.name}_{c}_idx" not in indexes
                ]
        return problems

    def _comment_statements(self, cur: psycopg.Cursor) -> list[str]:
        """COMMENT ON every table, view and column of the schema (BI tools show them)."""
        cur.execute(
            "SELECT c.relname, c.relkind, a.attname FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v') "
            "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY c.relname, a.attnum",
            [self.schema],
        )
        relations: dict[str, list[str]] = {}
        kinds = {}
        for relation, kind, column in cur.fetchall():
            relations.setdefault(relation, []).append(column)
            kinds[relation] = "VIEW" if kind == "v" else "TABLE"
        return comment_statements(relations, kinds, self.qualified, quote_ident)

    def columns(self, cur: psycopg.Cursor) -> dict[tuple[str, str], str]:
        """(table, column) -> the column's type as PostgreSQL formats it."""
        cur.execute(
            "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) "
            "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') "
            "AND a.attnum > 0 AND NOT a.attisdropped",
            [self.schema],
        )
        return {(table, column): kind for table, column, kind in cur.fetchall()}

    def indexes(self, cur: psycopg.Cursor) -> set[str]:
        cur.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s", [self.schema])
        return {row[0] for row in cur.fetchall()}

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
                parameters=(_advisory_key(self.schema, month.isoformat()),),
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
                parameters=(_advisory_key(self.schema, run_row(run)["month"].isoformat()),),
            )
            self._insert_run(cur)

    def replace_customers(self, rows: pa.Table) -> None:
        """Replace the customer attributes, in one transaction (readers see old or new)."""
        with self._transaction() as cur:
            self._stage(cur, CUSTOMER, conform(CUSTOMER, rows))
            cur.execute(
                "SELECT pg_advisory_xact_lock($1)",
                parameters=(_advisory_key(self.schema, CUSTOMER.name),),
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


# --- BI access ---------------------------------------------------------------------------


def create_readonly_role(url: str, schema: str, role: str, password: str | None = None) -> None:
    """A login role for BI tools that can read the warehouse schema and nothing more.

    USAGE on the schema, SELECT on its tables and views, SELECT on the tables and views
    the pipeline creates there later (default privileges of the connecting user), and
    read-only transactions by default. No CREATE, no writes. Re-running it re-applies
    the grants and, when ``password`` is given, sets the password (sent to the server
    only as a SCRAM verifier). Creates the warehouse schema first if needed.
    """
    plain_identifier(schema, "warehouse.schema")
    plain_identifier(role, "role")
    warehouse = PostgresWarehouse(url, schema)
    try:
        warehouse.ensure_schema()
    finally:
        warehouse.close()
    role_id, schema_id = sql.Identifier(role), sql.Identifier(schema)
    with warehouse._psycopg() as conn, conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls OR rolreplication "
            "FROM pg_roles WHERE rolname = %s",
            [role],
        )
        found = cur.fetchone()
        if found is None:
            cur.execute(
                sql.SQL(
                    "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                    "NOREPLICATION NOBYPASSRLS"
                ).format(role_id)
            )
        else:
            extra = ["role attributes"] if found[0] else _rights_beyond_reading(cur, schema, role)
            if extra:
                raise ValueError(
                    f"role {role!r} exists with more than read rights ({', '.join(extra)}); "
                    "not changed"
                )
        cur.execute("SELECT has_database_privilege(%s, current_database(), 'CONNECT')", [role])
        if not cur.fetchone()[0]:
            cur.execute("SELECT current_database()")
            database = sql.Identifier(cur.fetchone()[0])
            cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, role_id))
        for statement in (
            "GRANT USAGE ON SCHEMA {schema} TO {role}",
            "GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}",
            "ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {role}",
            "ALTER ROLE {role} SET default_transaction_read_only = on",
        ):
            cur.execute(sql.SQL(statement).format(schema=schema_id, role=role_id))
        if password is not None:
            # libpq hashes the password (SCRAM) and sends only the verifier.
            conn.pgconn.change_password(role.encode(), password.encode())


def _rights_beyond_reading(cur: psycopg.Cursor, schema: str, role: str) -> list[str]:
    """What an existing role may do in the schema besides reading."""
    cur.execute("SELECT has_schema_privilege(%s, %s, 'CREATE')", [role, schema])
    extra = ["CREATE on the schema"] if cur.fetchone()[0] else []
    cur.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm') "
        "AND has_table_privilege(%s, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE') "
        "ORDER BY c.relname",
        [schema, role],
    )
    extra += [f"writes to {row[0]}" for row in cur.fetchall()]
    return extra
