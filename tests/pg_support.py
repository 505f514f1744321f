"""PostgreSQL for tests: the local server, a fresh schema per test, roles dropped after.

The server is ``TIERS_TEST_POSTGRES_DSN`` (default: the local trust-auth server). When
it cannot be reached the PostgreSQL tests are skipped on a laptop, and fail in CI
(``CI`` set): CI must run them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

PG_DSN = os.environ.get("TIERS_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")

# Source table column types by paid_at representation.
PAID_AT_TYPES = {
    "timestamptz": "timestamp with time zone",
    "timestamp": "timestamp without time zone",
    "date": "date",
    "text": "text",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_postgres() -> str:
    try:
        with psycopg.connect(PG_DSN, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL at {PG_DSN} is unreachable: {exc}"
        if in_ci():
            pytest.fail(message + " (CI must run the PostgreSQL tests)")
        pytest.skip(message)
    return PG_DSN


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    return require_postgres()


@pytest.fixture
def pg(pg_dsn: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection as the test's administrator."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        yield conn


def drop_schema(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def pg_schema(pg_dsn: str) -> Iterator[str]:
    """A schema name no other test uses; the schema is dropped after the test."""
    name = unique_name("tiers_test")
    try:
        yield name
    finally:
        drop_schema(pg_dsn, name)


@pytest.fixture
def source_schema(pg_dsn: str, pg: psycopg.Connection) -> Iterator[str]:
    """A created schema for source tables, dropped after the test."""
    name = unique_name("tiers_source")
    pg.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        drop_schema(pg_dsn, name)


@pytest.fixture
def pg_role(pg_dsn: str) -> Iterator[str]:
    """A role name for the test; the role (and its grants) is dropped after the test."""
    name = unique_name("tiers_bi")
    try:
        yield name
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone()
            if exists:
                role = sql.Identifier(name)
                conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
                conn.execute(sql.SQL("DROP ROLE {}").format(role))


def warehouse_url(dsn: str, application_name: str | None = None) -> str:
    """The DSN, optionally naming the connection so tests can find it in pg_stat_activity."""
    if application_name is None:
        return dsn
    separator = "&" if "?" in dsn else "?"
    return f"{dsn}{separator}application_name={application_name}"


def create_payments_table(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    *,
    paid_at_type: str = "timestamptz",
    with_units_and_cost: bool = False,
) -> None:
    columns = [
        ("payment_id", "text"),
        ("customer_id", "text"),
        ("paid_at", PAID_AT_TYPES[paid_at_type]),
        ("amount", "numeric(18,2)"),
        ("currency", "text"),
    ]
    if with_units_and_cost:
        columns += [("units", "integer"), ("cost", "numeric(18,2)")]
    conn.execute(
        sql.SQL("CREATE TABLE {} ({})").format(
            sql.Identifier(schema, table),
            sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in columns
            ),
        )
    )


def load_csv(
    conn: psycopg.Connection, schema: str, table: str, path: Path, *, timezone: str
) -> int:
    """COPY a canonical payments CSV into a table; offset-less times read in ``timezone``."""
    header = path.read_text().splitlines()[0].split(",")
    with conn.transaction():
        conn.execute("SELECT set_config('TimeZone', %s, true)", [timezone])
        statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER true)").format(
            sql.Identifier(schema, table), sql.SQL(", ").join(map(sql.Identifier, header))
        )
        with conn.cursor() as cur:
            with cur.copy(statement) as copy:
                copy.write(path.read_bytes())
            return cur.rowcount


def golden_source_table(
    conn: psycopg.Connection,
    schema: str,
    case_dir: Path,
    *,
    timezone: str,
    paid_at_type: str = "timestamptz",
) -> str:
    """The golden case's payments as a typed PostgreSQL table; returns schema.table.

    For a naive paid_at type the values are the business time zone's wall clock, as a
    source system in that zone would store them.
    """
    payments = case_dir / "payments.csv"
    has_units = "units" in payments.read_text().splitlines()[0].split(",")
    create_payments_table(conn, schema, "payments_loaded", with_units_and_cost=has_units)
    load_csv(conn, schema, "payments_loaded", payments, timezone=timezone)
    if paid_at_type == "timestamptz":
        conn.execute(
            sql.SQL("ALTER TABLE {} RENAME TO payments").format(
                sql.Identifier(schema, "payments_loaded")
            )
        )
        return f"{schema}.payments"
    create_payments_table(
        conn, schema, "payments", paid_at_type=paid_at_type, with_units_and_cost=has_units
    )
    extra = sql.SQL(", units, cost") if has_units else sql.SQL("")
    conn.execute(
        sql.SQL(
            "INSERT INTO {target} SELECT payment_id, customer_id, "
            "(paid_at AT TIME ZONE %s)::{kind}, amount, currency{extra} FROM {loaded}"
        ).format(
            target=sql.Identifier(schema, "payments"),
            kind=sql.SQL(PAID_AT_TYPES[paid_at_type]),
            extra=extra,
            loaded=sql.Identifier(schema, "payments_loaded"),
        ),
        [timezone],
    )
    return f"{schema}.payments"
