"""The PostgreSQL warehouse's schema: the contract's tables, columns, keys and indexes in
PostgreSQL types, the ordered migrations that bring an older schema up to date, and the
BI views with their descriptions.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping

import psycopg

from pipeline.errors import WarehouseSchemaError
from pipeline.pg import quote_ident
from pipeline.schema.descriptions import comment_statements, description_digest
from pipeline.schema.tables import PIPELINE_RUN, WAREHOUSE_TABLES, Table
from pipeline.sql import sql_text
from pipeline.warehouse.rows import create_table_sql

log = logging.getLogger(__name__)


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
_LOCK_TIMEOUT = "60s"
_VIEWS = "warehouse_views"


def advisory_key(*parts: str) -> int:
    """A stable signed 64-bit key for pg_advisory_xact_lock from the given parts."""
    digest = hashlib.blake2b("\x1f".join(("tiers", *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _ddl_sync(warehouse: PostgresSchema, cur: psycopg.Cursor) -> None:
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


def _run_attempts(warehouse: PostgresSchema, cur: psycopg.Cursor) -> None:
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


def views_sql() -> str:
    """The BI views, and what goes into their descriptions (a change re-creates them)."""
    return sql_text(_VIEWS) + "\n-- descriptions: " + description_digest() + "\n"


class PostgresSchema:
    """The warehouse's tables, indexes and views in the PostgreSQL schema ``schema``."""

    def __init__(self, schema: str) -> None:
        self.schema = schema

    def qualified(self, table: str) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(table)}"

    def ensure(self, conn: psycopg.Connection, views: str) -> None:
        """Create or migrate the schema on ``conn`` (autocommit), ``views`` the BI views;
        nothing when everything is in place (see ``PostgresWarehouse.ensure_schema``)."""
        views_digest = hashlib.sha256(views.encode()).hexdigest()
        if not self._problems(conn, views_digest):
            return
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT set_config('lock_timeout', %s, true)", [_LOCK_TIMEOUT])
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [advisory_key(self.schema, "ddl")])
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

    def _problems(self, conn: psycopg.Connection, views_digest: str) -> list[str]:
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
