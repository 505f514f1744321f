"""PostgreSQL: the payments source read month by month, and the warehouse BI tools read.

These tests use the real server (see tests/pg_support.py); in CI they must run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pipeline.config import Config, load_config
from pipeline.config.sections import ServiceConfig, SourceConfig
from pipeline.errors import (
    PERMANENT,
    TRANSIENT,
    BadInputError,
    ConfigError,
    CustomersError,
    SourceConnectionError,
    SourceError,
    WarehouseSchemaError,
    classify,
)
from pipeline.lake.extract import extract, extract_months
from pipeline.lake.partition import read_manifest, read_month
from pipeline.months import parse_month
from pipeline.pg import redact_dsn
from pipeline.schema.descriptions import DESCRIPTIONS
from pipeline.schema.tables import PIPELINE_RUN, TABLES, WAREHOUSE_TABLES
from pipeline.sources import open_months
from pipeline.sources.customers import read_customers
from pipeline.sources.postgres import read_source_month
from pipeline.sql import connect
from pipeline.warehouse.duckdb import DuckDBWarehouse
from pipeline.warehouse.postgres import PostgresWarehouse
from pipeline.warehouse.postgres_roles import create_readonly_role
from pipeline.warehouse.postgres_schema import MIGRATIONS
from pipeline.warehouse.rows import conform

from golden import expected_rows, table_differences
from pg_support import (
    create_payments_table,
    golden_source_table,
    unique_name,
    warehouse_url,
)
from support import (
    FLOAT_CASE_ROWS,
    assert_same_reporting_tables,
    backfilled_through_the_cli,
    csv_config,
    float_case_values,
    write_config,
    write_payments,
)

pytestmark = pytest.mark.postgres
pytest_plugins = ["pg_support"]  # fixtures: pg_dsn, pg, pg_schema, source_schema, pg_role

ROOT = Path(__file__).resolve().parents[2]
JAN, FEB, MAR = date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)
GOLDEN_CASES = {
    # case: (business time zone, history_start, last month)
    "basics": ("UTC", "2026-01", "2026-03"),
    "full": ("Europe/Oslo", "2025-01", "2026-03"),
}
# The reporting contract's logical types as BI tools should see them in PostgreSQL.
BI_TYPES = {
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


def source_config(dsn: str, **fields) -> SourceConfig:
    return SourceConfig(kind="postgres", dsn=dsn, **fields)


def read_ids(source: SourceConfig, first: date, last: date, zone: str) -> list[str]:
    con = connect(zone)
    relation, _ = read_source_month(con, source, first, last, zone)
    return sorted(row[0] for row in relation.select("payment_id").fetchall())


# --- connection strings ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        (
            "postgresql://tiers:s3cret@db.example:5432/sales",
            "postgresql://tiers:***@db.example:5432/sales",
        ),
        (
            "postgres://tiers:s3cret@h1:5432,h2:5433/sales?sslmode=require",
            "postgres://tiers:***@h1:5432,h2:5433/sales?sslmode=require",
        ),
        (
            "postgresql://tiers@db.example/sales?sslmode=require&password=s3cret",
            "postgresql://tiers@db.example/sales?sslmode=require&password=***",
        ),
        (
            "host=db user=tiers password=s3cret dbname=sales",
            "host=db user=tiers password=*** dbname=sales",
        ),
        ("host=db password = 's3 cret' dbname=sales", "host=db password = *** dbname=sales"),
        ("postgresql://tiers@db.example/sales", "postgresql://tiers@db.example/sales"),
    ],
)
def test_redact_dsn_hides_the_password(dsn: str, shown: str) -> None:
    assert redact_dsn(dsn) == shown
    assert "s3cret" not in redact_dsn(dsn) and "s3 cret" not in redact_dsn(dsn)


def test_a_failed_connection_does_not_show_the_password() -> None:
    source = source_config("postgresql://tiers:s3cret-pw@127.0.0.1:1/sales", table="payments")
    with pytest.raises(SourceError) as info:
        read_source_month(connect("UTC"), source, FEB, FEB, "UTC")
    assert "s3cret-pw" not in str(info.value)
    assert "postgresql://tiers:***@127.0.0.1:1/sales" in str(info.value)


def test_a_source_server_that_cannot_be_reached_is_transient_a_missing_table_is_not(
    pg_dsn,
) -> None:
    unreachable = source_config("postgresql://tiers@127.0.0.1:1/sales", table="payments")
    with pytest.raises(SourceConnectionError, match="cannot connect") as info:
        read_source_month(connect("UTC"), unreachable, FEB, FEB, "UTC")
    assert classify(info.value) == TRANSIENT  # a server restarts: the DAG retries
    assert "source.dsn (or TIERS__SOURCE__DSN)" in str(info.value)
    # the activities' server names the [service] setting, not the payments'
    activities = ServiceConfig(
        kind="postgres", dsn="postgresql://tiers@127.0.0.1:1/desk", table="tickets"
    )
    with pytest.raises(SourceConnectionError, match="service.dsn .or TIERS__SERVICE__DSN.") as info:
        read_source_month(connect("UTC"), activities, FEB, FEB, "UTC")
    assert "source.dsn" not in str(info.value)
    missing = source_config(pg_dsn, table="public.no_such_payments")
    with pytest.raises(SourceError, match="no_such_payments") as info:
        read_source_month(connect("UTC"), missing, FEB, FEB, "UTC")
    assert classify(info.value) == PERMANENT  # the table must be created or named first


def test_a_session_ended_by_the_server_is_told_from_a_fault_of_the_query(pg, pg_dsn) -> None:
    import adbc_driver_postgresql.dbapi as adbc

    from pipeline.pg import session_lost

    def failure(connection, query: str) -> Exception:
        with pytest.raises(adbc.Error) as info:
            cursor = connection.cursor()
            cursor.execute(query)
            cursor.fetchall()
        return info.value

    with adbc.connect(pg_dsn, autocommit=True) as connection:
        assert not session_lost(failure(connection, "SELECT * FROM no_such_table"))
        cursor = connection.cursor()
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
        pg.execute("SELECT pg_terminate_backend(%s)", [pid])  # what an administrator does
        assert session_lost(failure(connection, "SELECT 1"))
    with pytest.raises(psycopg.Error) as info:
        psycopg.connect("postgresql://tiers@127.0.0.1:1/sales")
    assert session_lost(info.value)
    with pytest.raises(psycopg.Error) as info:
        pg.execute("SELECT * FROM no_such_table")
    assert not session_lost(info.value)


def test_the_dsn_comes_from_the_environment_and_is_never_shown(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        {
            "source": {"kind": "postgres", "table": "sales.payments"},
            "business": {"history_start": "2026-01"},
        },
    )
    secret = "postgresql://tiers:s3cret@db.example:5432/sales"
    cfg = load_config(path, environ={"TIERS__SOURCE__DSN": secret})
    assert cfg.source.dsn == secret
    assert "s3cret" not in repr(cfg) and "s3cret" not in repr(cfg.source)
    no_dsn = load_config(path, environ={})
    with pytest.raises(SourceError, match="TIERS__SOURCE__DSN"):
        read_source_month(connect("UTC"), no_dsn.source, FEB, FEB, "UTC")


# --- the source: which rows a month reads -------------------------------------------------

# Payment instants around February 2026 in Europe/Oslo (UTC+1): p2 and p3 are February.
EDGE_PAYMENTS = [
    ("p1", "2026-01-31 22:59:59+00"),  # Oslo 2026-01-31 23:59:59
    ("p2", "2026-01-31 23:00:00+00"),  # Oslo 2026-02-01 00:00:00
    ("p3", "2026-02-28 22:59:59+00"),  # Oslo 2026-02-28 23:59:59
    ("p4", "2026-02-28 23:00:00+00"),  # Oslo 2026-03-01 00:00:00
    ("p5", None),  # no paid_at: read with every month, reported as a bad row
]
# How each paid_at type stores an instant: a source in Oslo keeps Oslo wall clock.
PAID_AT_FROM_INSTANT = {
    "timestamptz": "paid_at",
    "timestamp": "paid_at AT TIME ZONE 'Europe/Oslo'",
    "date": "(paid_at AT TIME ZONE 'Europe/Oslo')::date",
    "text": "to_char(paid_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
}


def edge_table(pg: psycopg.Connection, schema: str, paid_at_type: str) -> str:
    create_payments_table(pg, schema, "instants")
    with pg.cursor() as cur:
        cur.executemany(
            sql.SQL("INSERT INTO {} VALUES (%s, 'c1', %s, 10.00, 'EUR')").format(
                sql.Identifier(schema, "instants")
            ),
            EDGE_PAYMENTS,
        )
    create_payments_table(pg, schema, "payments", paid_at_type=paid_at_type)
    pg.execute(
        sql.SQL(
            "INSERT INTO {} SELECT payment_id, customer_id, {}, amount, currency FROM {}"
        ).format(
            sql.Identifier(schema, "payments"),
            sql.SQL(PAID_AT_FROM_INSTANT[paid_at_type]),
            sql.Identifier(schema, "instants"),
        )
    )
    return f"{schema}.payments"


@pytest.mark.parametrize("paid_at_type", ["timestamptz", "timestamp", "date", "text"])
def test_a_month_is_read_with_its_business_time_zone_boundaries(
    pg, pg_dsn, source_schema, tmp_path, paid_at_type
) -> None:
    table = edge_table(pg, source_schema, paid_at_type)
    source = source_config(pg_dsn, table=table)
    typed = paid_at_type != "text"
    # Typed paid_at: PostgreSQL returns the month and the undated rows; text: every row.
    assert read_ids(source, FEB, FEB, "Europe/Oslo") == (
        ["p2", "p3", "p5"] if typed else ["p1", "p2", "p3", "p4", "p5"]
    )
    if typed:
        assert read_ids(source, JAN, FEB, "Europe/Oslo") == ["p1", "p2", "p3", "p5"]
        assert read_ids(source, MAR, MAR, "Europe/Oslo") == ["p4", "p5"]
    # Through the extract, every representation places the same payments in February.
    path = write_config(
        tmp_path,
        {
            "source": {"kind": "postgres", "table": table},
            "business": {"timezone": "Europe/Oslo", "history_start": "2026-01"},
            "lake": {"root": str(tmp_path / "lake"), "quarantine": True},
        },
    )
    cfg = load_config(path, environ={"TIERS__SOURCE__DSN": pg_dsn})
    manifest = extract(cfg, FEB)
    assert sorted(r["payment_id"] for r in read_month(cfg.lake.root, FEB).to_pylist()) == [
        "p2",
        "p3",
    ]
    assert manifest.rows_undated == 1
    assert manifest.amount_sum == "20.00"


def test_amounts_stay_exact_decimals(pg, pg_dsn, source_schema, tmp_path) -> None:
    table = sql.Identifier(source_schema, "payments")
    pg.execute(
        sql.SQL(
            "CREATE TABLE {} (payment_id text, customer_id text, paid_at timestamptz, "
            "amount numeric(18,2), currency text, units bigint, cost money, wide numeric)"
        ).format(table)
    )
    rows = [
        ("a", "2026-02-03 10:00+00", "9999999999999999.99", 1, "12.34", "0.1"),
        ("b", "2026-02-04 10:00+00", "-9999999999999999.98", 2, "0.01", "1e-20"),
        ("c", "2026-02-05 10:00+00", "0.10", 3, "7.00", "123456789012345678901234567890.5"),
    ]
    with pg.cursor() as cur:
        cur.execute("SET lc_monetary = 'C'")
        cur.executemany(
            sql.SQL("INSERT INTO {} VALUES (%s, 'c1', %s, %s, 'EUR', %s, %s::numeric, %s)").format(
                table
            ),
            rows,
        )
    source = source_config(pg_dsn, table=f"{source_schema}.payments")
    relation, _ = read_source_month(connect("UTC"), source, FEB, FEB, "UTC")
    types = dict(zip(relation.columns, map(str, relation.types), strict=True))
    assert types["amount"] == types["cost"] == types["wide"] == "VARCHAR"  # text, never float
    assert sorted(relation.select("payment_id, amount, cost, wide").fetchall()) == [
        ("a", "9999999999999999.99", "12.34", "0.1"),
        ("b", "-9999999999999999.98", "0.01", "0.00000000000000000001"),
        ("c", "0.10", "7.00", "123456789012345678901234567890.5"),
    ]
    path = write_config(
        tmp_path,
        {
            "source": {"kind": "postgres", "table": f"{source_schema}.payments"},
            "business": {"history_start": "2026-01"},
        },
    )
    cfg = load_config(path, environ={"TIERS__SOURCE__DSN": pg_dsn})
    # a month carrying 2e16 of money could overflow a year of sums: refused by name ...
    with pytest.raises(BadInputError, match="month 2026-02: the sum of its amounts"):
        extract(cfg, FEB)
    # ... and below the limit every cent is exact (a float sum gives 0.1100000000093...)
    pg.execute(
        sql.SQL(
            "UPDATE {} SET amount = CASE payment_id WHEN 'a' THEN 49999999999.90 "
            "WHEN 'b' THEN -49999999999.89 ELSE amount END"
        ).format(table)
    )
    assert 49999999999.90 - 49999999999.89 + 0.10 != 0.11
    assert extract(cfg, FEB).amount_sum == "0.11"
    stored = {r["payment_id"]: r for r in read_month(cfg.lake.root, FEB).to_pylist()}
    assert stored["a"]["amount"] == Decimal("49999999999.90")
    assert stored["a"]["cost"] == Decimal("12.34")  # money, not 1234 cents


@pytest.mark.parametrize("terminator", [";", "  -- payments that count", " ;  "])
def test_a_query_source_with_mapped_columns(
    pg, pg_dsn, source_schema, tmp_path, terminator
) -> None:
    sales = sql.Identifier(source_schema, "sales")
    pg.execute(
        sql.SQL(
            "CREATE TABLE {} (sale_no text, client text, booked_at timestamptz, "
            "total numeric(18,2), status text)"
        ).format(sales)
    )
    with pg.cursor() as cur:
        cur.executemany(
            sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s, %s)").format(sales),
            [
                ("s1", "k1", "2026-02-02 09:00+00", "10.50", "paid"),
                ("s2", "k2", "2026-02-03 09:00+00", "99.00", "void"),
                ("s3", "k1", "2026-03-02 09:00+00", "5.25", "paid"),
                ("s4", "k3", "2026-02-27 09:00+00", "0.25", "paid"),
            ],
        )
    query = (
        f'SELECT sale_no, client, booked_at, total FROM "{source_schema}".sales '
        f"WHERE status <> 'void'{terminator}"
    )
    columns = {"payment_id": "sale_no", "customer_id": "client", "paid_at": "booked_at"}
    columns["amount"] = "total"
    path = write_config(
        tmp_path,
        {
            "source": {"kind": "postgres", "query": query, "columns": columns},
            "business": {"history_start": "2026-01"},
        },
    )
    cfg = load_config(path, environ={"TIERS__SOURCE__DSN": pg_dsn})
    extract(cfg, FEB)
    rows = read_month(cfg.lake.root, FEB).to_pylist()
    assert [(r["payment_id"], r["customer_id"], r["amount"]) for r in rows] == [
        ("s1", "k1", Decimal("10.50")),
        ("s4", "k3", Decimal("0.25")),
    ]


def test_a_missing_paid_at_column_is_named_by_the_source_check(pg, pg_dsn, source_schema) -> None:
    pg.execute(
        sql.SQL("CREATE TABLE {} (payment_id text, customer_id text, amount numeric)").format(
            sql.Identifier(source_schema, "payments")
        )
    )
    source = source_config(pg_dsn, table=f"{source_schema}.payments")
    with pytest.raises(SourceError, match=r"required column\(s\) missing: paid_at"):
        open_months(connect("UTC"), source, FEB, FEB, "UTC")
    missing_table = source_config(pg_dsn, table=f"{source_schema}.nowhere")
    with pytest.raises(SourceError, match="nowhere"):
        read_source_month(connect("UTC"), missing_table, FEB, FEB, "UTC")


@pytest.mark.parametrize(
    ("case", "paid_at_type"), [("basics", "timestamptz"), ("full", "timestamp")]
)
def test_a_postgres_source_extracts_exactly_what_the_csv_extracts(
    golden, pg, pg_dsn, source_schema, tmp_path, case, paid_at_type
) -> None:
    zone, start, last = GOLDEN_CASES[case]
    table = golden_source_table(
        pg, source_schema, golden / case, timezone=zone, paid_at_type=paid_at_type
    )
    (tmp_path / "csv").mkdir()
    from_csv = csv_config(
        tmp_path / "csv", golden / case / "payments.csv", timezone=zone, history_start=start
    )
    path = write_config(
        tmp_path,
        {
            "source": {"kind": "postgres", "table": table},
            "business": {"timezone": zone, "history_start": start},
        },
    )
    from_pg = load_config(path, environ={"TIERS__SOURCE__DSN": pg_dsn})
    months = [date.fromisoformat(f"{m}-01") for m in _months(start, last)]
    pg_manifests = dict(extract_months(from_pg, months))
    csv_manifests = dict(extract_months(from_csv, months))
    compared = (
        "rows_read",
        "rows_duplicate",
        "rows_quarantined",
        "rows_undated",
        "rows_written",
        "amount_sum",
        "paid_at_min",
        "paid_at_max",
        "fingerprint",
        "columns_present",
    )
    for month in months:
        got, want = pg_manifests[month], csv_manifests[month]
        assert {k: getattr(got, k) for k in compared} == {k: getattr(want, k) for k in compared}
        assert read_month(from_pg.lake.root, month).equals(read_month(from_csv.lake.root, month))
    assert sum(m.rows_duplicate for m in pg_manifests.values()) >= 1  # a duplicate delivery


def _months(first: str, last: str) -> list[str]:
    year, month = map(int, first.split("-"))
    out = []
    while f"{year:04d}-{month:02d}" <= last:
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


# --- hostile names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "table", ["payments; DROP TABLE victim", 'pay"ments', "payments --", "sales.pay ments", ""]
)
def test_hostile_table_names_are_rejected_by_the_config(tmp_path: Path, table: str) -> None:
    path = write_config(
        tmp_path,
        {
            "source": {"kind": "postgres", "dsn": "postgresql://x@h/db", "table": table},
            "business": {"history_start": "2026-01"},
        },
    )
    with pytest.raises(ConfigError, match="table"):
        load_config(path)


@pytest.mark.parametrize("schema", ['tiers"; DROP SCHEMA public CASCADE; --', "ti ers", "a.b"])
def test_hostile_warehouse_schema_names_are_rejected(tmp_path: Path, schema: str) -> None:
    path = write_config(
        tmp_path,
        {
            "source": {"kind": "csv", "path": "payments.csv"},
            "business": {"history_start": "2026-01"},
            "warehouse": {"url": "postgresql://x@h/db", "schema": schema},
        },
    )
    with pytest.raises(ConfigError, match="schema"):
        load_config(path)
    with pytest.raises(ValueError, match="plain identifier"):
        PostgresWarehouse("postgresql://x@h/db", schema)


def test_hostile_role_names_are_rejected_before_connecting(pg, pg_dsn, pg_schema) -> None:
    hostile = 'bi"; DROP ROLE postgres; --'
    with pytest.raises(ValueError, match="plain identifier"):
        create_readonly_role(pg_dsn, pg_schema, hostile)
    assert pg.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", [hostile]).fetchone() == (
        0,
    )
    assert (
        pg.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [pg_schema]).fetchone() is None
    )


def test_a_three_part_table_name_is_a_source_error(pg_dsn) -> None:
    source = source_config(pg_dsn, table="db.sales.payments")  # the config lets it through
    with pytest.raises(SourceError, match="schema.table"):
        read_source_month(connect("UTC"), source, FEB, FEB, "UTC")


def test_hostile_column_names_are_quoted(pg, pg_dsn, source_schema) -> None:
    hostile = 'paid"at; DROP TABLE victim; --'
    pg.execute(sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(source_schema, "victim")))
    pg.execute(
        sql.SQL(
            "CREATE TABLE {} (payment_id text, customer_id text, {} timestamptz, amount numeric)"
        ).format(sql.Identifier(source_schema, "payments"), sql.Identifier(hostile))
    )
    with pg.cursor() as cur:
        cur.executemany(
            sql.SQL("INSERT INTO {} VALUES (%s, 'c1', %s, 1.00)").format(
                sql.Identifier(source_schema, "payments")
            ),
            [("p1", "2026-01-15 10:00+00"), ("p2", "2026-02-15 10:00+00"), ("p3", None)],
        )
    source = source_config(pg_dsn, table=f"{source_schema}.payments", columns={"paid_at": hostile})
    assert read_ids(source, FEB, FEB, "UTC") == ["p2", "p3"]
    con = connect("UTC")
    open_months(con, source, FEB, FEB, "UTC")
    # paid_at is typed (timestamptz): it comes as paid_at_value, its text column NULL
    given = "select payment_id, paid_at_value is null from source_rows"
    assert sorted(con.sql(given).fetchall()) == [
        ("p2", False),
        ("p3", True),
    ]
    victim = pg.execute("SELECT to_regclass(%s)", [f'"{source_schema}".victim']).fetchone()[0]
    assert victim is not None


# --- the customers source ------------------------------------------------------------------


CRM_CSV = (
    "id,display_name,account_manager,strategic,since,credit\n"
    "c2,Beta,b@example.com,true,2024-03-01,1500.50\n"
    "c1,Alpha,,false,,0.00\n"
)
CRM_MAPPING = {"customer_id": "id", "name": "display_name", "owner_email": "account_manager"}


def customers_config(tmp_path: Path, customers: dict) -> Config:
    payments = write_payments(tmp_path / "payments.csv", [])
    return csv_config(tmp_path, payments, customers=customers | {"columns": CRM_MAPPING})


def test_customers_from_postgres_are_the_rows_their_csv_gives(
    pg, pg_dsn, source_schema, tmp_path
) -> None:
    """Read through ADBC like the payments, every value as PostgreSQL's own text: a
    boolean, a date, a NULL and a numeric come out as the CSV of the same table has them."""
    crm = sql.Identifier(source_schema, "crm")
    pg.execute(
        sql.SQL(
            "CREATE TABLE {} (id text, display_name text, account_manager text, "
            "strategic boolean, since date, credit numeric(12, 2))"
        ).format(crm)
    )
    pg.execute(
        sql.SQL(
            "INSERT INTO {} VALUES ('c2', 'Beta', 'b@example.com', true, '2024-03-01', 1500.5),"
            " ('c1', 'Alpha', NULL, false, NULL, 0)"
        ).format(crm)
    )
    (tmp_path / "crm.csv").write_text(CRM_CSV)
    table = {"kind": "postgres", "dsn": pg_dsn, "table": f"{source_schema}.crm"}
    from_pg = read_customers(customers_config(tmp_path, table))
    from_csv = read_customers(customers_config(tmp_path, {"kind": "csv", "path": "crm.csv"}))
    assert from_pg.to_pylist() == from_csv.to_pylist()
    assert from_pg.to_pylist() == [
        {
            "customer_id": "c1",
            "name": "Alpha",
            "owner_email": None,
            "strategic": "false",
            "since": None,
            "credit": "0.00",
        },
        {
            "customer_id": "c2",
            "name": "Beta",
            "owner_email": "b@example.com",
            "strategic": "true",
            "since": "2024-03-01",
            "credit": "1500.50",
        },
    ]
    # a query as the payments source takes one, ending in a line comment
    text = f"SELECT * FROM {crm.as_string(pg)} -- every customer"
    query = {"kind": "postgres", "dsn": pg_dsn, "query": text}
    assert read_customers(customers_config(tmp_path, query)).to_pylist() == from_pg.to_pylist()


def test_a_customers_table_not_there_or_a_server_down_is_told(pg_dsn, source_schema, tmp_path):
    missing = {"kind": "postgres", "dsn": pg_dsn, "table": f"{source_schema}.nobody"}
    with pytest.raises(
        CustomersError, match=rf"postgres table {source_schema}\.nobody at .*nobody"
    ):
        read_customers(customers_config(tmp_path, missing))
    three_parts = {"kind": "postgres", "dsn": pg_dsn, "table": "db.crm.customers"}
    with pytest.raises(CustomersError, match=r"customers\.table: .*schema\.table"):
        read_customers(customers_config(tmp_path, three_parts))
    down = {"kind": "postgres", "dsn": "postgresql://postgres@127.0.0.1:1/test", "table": "crm"}
    with pytest.raises(SourceConnectionError, match="postgres table crm at postgresql://") as info:
        read_customers(customers_config(tmp_path, down))
    # the setting to fix is the customers' own, and nothing is said to be extracted
    assert "customers.dsn (or TIERS__CUSTOMERS__DSN)" in str(info.value)
    assert "no customer attributes were read" in str(info.value)


# --- a large month ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_large_month_streams_with_bounded_memory(pg_dsn, pg_schema) -> None:
    """2 M payments of one month: the read holds batches, not the month (peak RSS)."""
    bench = ROOT / "bench" / "bench_postgres_source.py"
    out = subprocess.run(
        [
            sys.executable,
            str(bench),
            "--rows",
            "2000000",
            "--modes",
            "stream,materialize",
            "--schema",
            pg_schema,
            "--dsn",
            pg_dsn,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    stream, materialized = report["measurements"]
    assert report["expected_rows"] == 2_000_100  # the month and the undated rows
    assert stream["rows"] == materialized["rows"] == report["expected_rows"]
    assert Decimal(stream["sum"]) == Decimal(report["expected_sum"])
    # Holding the month would take its Arrow size (about 96 MB); streaming adds a few
    # batches to the process.
    assert materialized["arrow_mb"] > 80
    assert stream["growth_mb"] < materialized["arrow_mb"] / 2
    assert stream["growth_mb"] < 64


# --- the warehouse: schema ----------------------------------------------------------------


def catalog(pg: psycopg.Connection, schema: str, query: str) -> list[tuple]:
    return pg.execute(query, [schema]).fetchall()


COLUMN_TYPES = """
    SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = %s AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
"""
INDEXES = """
    SELECT c.relname, i.indisprimary, array_agg(a.attname::text ORDER BY k.ord)
    FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
    WHERE n.nspname = %s
    GROUP BY c.relname, i.indexrelid, i.indisprimary
"""
VIEWS = "SELECT viewname FROM pg_views WHERE schemaname = %s"


def test_ensure_schema_creates_the_contract_for_bi_tools(pg, pg_dsn, pg_schema) -> None:
    warehouse = PostgresWarehouse(pg_dsn, pg_schema)
    warehouse.ensure_schema()
    warehouse.ensure_schema()  # idempotent
    warehouse.close()
    types = {(t, c): kind for t, c, kind in catalog(pg, pg_schema, COLUMN_TYPES)}
    indexes = catalog(pg, pg_schema, INDEXES)
    primary = {t: cols for t, is_primary, cols in indexes if is_primary}
    leading = {(t, cols[0]) for t, _, cols in indexes}
    for table in WAREHOUSE_TABLES:
        for name, kind in table.columns:
            assert types[(table.name, name)] == BI_TYPES[kind], (table.name, name)
        assert primary[table.name] == list(table.key)
        for column in {"month"} & set(table.column_names) | set(
            table.indexes
        ):  # an index serves each dashboard filter
            assert (table.name, column) in leading, (table.name, column)
    assert pg.execute(
        sql.SQL("SELECT version FROM {}").format(sql.Identifier(pg_schema, "schema_version"))
    ).fetchall() == [(v,) for v, _, _ in MIGRATIONS]
    views = {row[0] for row in catalog(pg, pg_schema, VIEWS)}
    assert views == {name for name in DESCRIPTIONS if name not in TABLES} - {
        PIPELINE_RUN.name,
        "customer",
        "schema_version",
        "schema_views",
    }
    for view in views:
        pg.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(pg_schema, view)))


def test_ensure_schema_adds_what_is_missing_and_refuses_wrong_types(pg, pg_dsn, pg_schema) -> None:
    warehouse = PostgresWarehouse(pg_dsn, pg_schema)
    warehouse.ensure_schema()
    pg.execute(
        sql.SQL("ALTER TABLE {} DROP COLUMN jaccard").format(
            sql.Identifier(pg_schema, "criteria_overlap")
        )
    )
    pg.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(pg_schema, "customer_tier_tier_idx")))
    warehouse.ensure_schema()
    types = {(t, c): kind for t, c, kind in catalog(pg, pg_schema, COLUMN_TYPES)}
    assert types[("criteria_overlap", "jaccard")] == "double precision"
    assert ("customer_tier", ["tier"]) in [(t, c) for t, _, c in catalog(pg, pg_schema, INDEXES)]
    # Changed BI views (another digest of sql/warehouse_views.sql) are created again.
    pg.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(pg_schema, "schema_views")))
    pg.execute(sql.SQL("DROP VIEW {}").format(sql.Identifier(pg_schema, "month_overview")))
    warehouse.ensure_schema()
    assert ("month_overview",) in catalog(pg, pg_schema, VIEWS)
    pg.execute(
        sql.SQL("ALTER TABLE {} ALTER COLUMN revenue TYPE double precision").format(
            sql.Identifier(pg_schema, "customer_month")
        )
    )
    with pytest.raises(WarehouseSchemaError, match="customer_month.revenue is double precision"):
        warehouse.ensure_schema()
    warehouse.close()


def test_concurrent_first_ensure_schema_calls_create_the_schema_once(pg, pg_dsn, pg_schema) -> None:
    errors: list[BaseException] = []

    def ensure() -> None:
        try:
            PostgresWarehouse(pg_dsn, pg_schema).ensure_schema()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ensure) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert pg.execute(
        sql.SQL("SELECT version FROM {}").format(sql.Identifier(pg_schema, "schema_version"))
    ).fetchall() == [(v,) for v, _, _ in MIGRATIONS]
    assert len(catalog(pg, pg_schema, VIEWS)) == 14  # sql/warehouse_views.sql


def test_ensure_schema_does_not_wait_for_bi_sessions(pg_dsn, pg_schema) -> None:
    PostgresWarehouse(pg_dsn, pg_schema).ensure_schema()
    with psycopg.connect(pg_dsn) as bi:  # a BI session that keeps its transaction open
        bi.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(pg_schema, "month_overview")))
        started = time.monotonic()
        PostgresWarehouse(pg_dsn, pg_schema).ensure_schema()
        assert time.monotonic() - started < 5
        bi.rollback()


# --- the warehouse: loads -----------------------------------------------------------------


def golden_tables(case: str, month: date) -> dict[str, pa.Table]:
    """The golden case's expected rows of one month, as the computation hands them over."""
    return {
        name: pa.Table.from_pylist(expected_rows(case, name, {month}), schema=t.arrow_schema())
        for name, t in TABLES.items()
    }


def as_month(tables: Mapping[str, pa.Table], month: date) -> dict[str, pa.Table]:
    """The same rows labelled with another month (a different month's content)."""
    out = {}
    for name, table in tables.items():
        index = table.schema.get_field_index("month")
        out[name] = table.set_column(
            index, "month", pa.array([month] * table.num_rows, pa.date32())
        )
    return out


def run_record(run_id: str, month: date) -> dict:
    return {
        "run_id": run_id,
        "month": month,
        "status": "loaded",
        "rows_read": 10,
        "rows_duplicate": 1,
        "rows_quarantined": 0,
        "rows_loaded": 42,
        "checks_passed": 7,
        "checks_failed": 0,
        "checks_warned": 1,
        "check_results": {"raw": {"n_passed": 3, "checks": [{"name": "sum", "value": "12.30"}]}},
        "error": None,
        "source_fingerprint": "9b2f",
        "started_at": datetime(2026, 4, 1, 6, 0, tzinfo=UTC),
        "finished_at": datetime(2026, 4, 1, 6, 0, 3, 250000, tzinfo=UTC),
    }


def sorted_rows(name: str, data: pa.Table) -> list[dict]:
    table = TABLES.get(name, PIPELINE_RUN)
    rows = conform(table, data).sort_by([(k, "ascending") for k in table.key]).to_pylist()
    for row in rows:
        if isinstance(row.get("check_results"), str):
            row["check_results"] = json.loads(row["check_results"])
        if row.pop("recorded_at", None) is None and table is PIPELINE_RUN:
            raise AssertionError("the warehouse did not record when it recorded the run")
    return rows


def month_contents(warehouse, month: date) -> dict[str, list[dict]]:
    return {name: sorted_rows(name, warehouse.read_table(name, month)) for name in TABLES}


def expected_contents(tables: Mapping[str, pa.Table]) -> dict[str, list[dict]]:
    return {name: sorted_rows(name, tables[name]) for name in TABLES}


def golden_months(case: str) -> list[date]:
    return sorted({r["month"] for r in expected_rows(case, "customer_month")})


def test_postgres_holds_exactly_the_rows_duckdb_holds(pg_dsn, pg_schema) -> None:
    duck = DuckDBWarehouse(":memory:")
    warehouse = PostgresWarehouse(pg_dsn, pg_schema)
    for each in (duck, warehouse):
        each.ensure_schema()
    months = golden_months("full")
    assert len(months) >= 14
    for i, month in enumerate(months):
        tables, run = golden_tables("full", month), run_record(f"run-{i:02d}", month)
        duck.load_month(month, tables, run)
        warehouse.load_month(month, tables, run)
    for name in (*TABLES, PIPELINE_RUN.name):
        loaded = warehouse.read_table(name)
        assert loaded.schema == TABLES.get(name, PIPELINE_RUN).arrow_schema()
        assert sorted_rows(name, loaded) == sorted_rows(name, duck.read_table(name)), name
        if name in TABLES:
            # the service tables hold rows only with a [service] source ('full' has none);
            # customer_call is the pipeline's, not the golden case's
            assert loaded.num_rows > 0 or TABLES[name].service_only or name == "customer_call"
            assert table_differences("full", name, loaded) == []
    assert warehouse.read_table("customer_month", months[3]).equals(
        conform(TABLES["customer_month"], duck.read_table("customer_month", months[3])).sort_by(
            [("month", "ascending"), ("customer_id", "ascending")]
        )
    )
    duck.close()
    warehouse.close()


def test_reloading_a_month_replaces_only_that_month(pg_dsn, pg_schema) -> None:
    warehouse = PostgresWarehouse(pg_dsn, pg_schema)
    warehouse.ensure_schema()
    january, february = golden_tables("basics", JAN), golden_tables("basics", FEB)
    warehouse.load_month(JAN, january, run_record("r1", JAN))
    warehouse.load_month(FEB, february, run_record("r2", FEB))
    replacement = as_month(golden_tables("basics", MAR), FEB)
    warehouse.load_month(FEB, replacement, run_record("r3", FEB))
    assert month_contents(warehouse, FEB) == expected_contents(replacement)
    assert month_contents(warehouse, JAN) == expected_contents(january)
    runs = warehouse.read_table("pipeline_run").to_pylist()
    assert [(r["run_id"], r["month"]) for r in runs] == [("r1", JAN), ("r2", FEB), ("r3", FEB)]
    # A month's tables with rows of another month, or with a table missing, load nothing.
    with pytest.raises(ValueError, match="rows of"):
        warehouse.load_month(FEB, january, run_record("r4", FEB))
    with pytest.raises(ValueError, match="missing table"):
        warehouse.load_month(FEB, {"customer_month": february["customer_month"]}, {})
    assert month_contents(warehouse, FEB) == expected_contents(replacement)
    # A failed month is recorded without touching its rows; re-recording a run (a retry)
    # adds an attempt.
    failed = run_record("r4", FEB) | {"status": "failed", "error": "raw_gate: 2 bad rows"}
    warehouse.record_run(failed)
    warehouse.record_run(failed | {"error": "raw_gate: 3 bad rows"})
    rows = warehouse.read_table("pipeline_run", FEB).to_pylist()
    assert [(r["run_id"], r["attempt"]) for r in rows] == [
        ("r2", 1),
        ("r3", 1),
        ("r4", 1),
        ("r4", 2),
    ]
    runs = {r["run_id"]: r for r in rows}
    assert runs["r4"]["error"] == "raw_gate: 3 bad rows"
    assert json.loads(runs["r4"]["check_results"]) == run_record("r4", FEB)["check_results"]
    assert month_contents(warehouse, FEB) == expected_contents(replacement)
    warehouse.close()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def waits(pg: psycopg.Connection, application: str) -> str | None:
    """What the named connection's backend waits for: 'advisory', 'relation', ... or None."""
    row = pg.execute(
        "SELECT wait_event FROM pg_stat_activity "
        "WHERE application_name = %s AND wait_event_type = 'Lock'",
        [application],
    ).fetchone()
    return row[0] if row else None


def connected(pg: psycopg.Connection, application: str) -> bool:
    return bool(
        pg.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [application]
        ).fetchone()[0]
    )


def hold_run_table(pg_dsn: str, schema: str) -> psycopg.Connection:
    """A session that blocks inserts into pipeline_run (readers go on) until it ends.

    A load blocked there has deleted and inserted the month's rows in its transaction.
    """
    blocker = psycopg.connect(pg_dsn)
    blocker.execute(
        sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.Identifier(schema, "pipeline_run"))
    )
    return blocker


def test_two_concurrent_loads_of_a_month_end_with_one_consistent_month(
    pg, pg_dsn, pg_schema
) -> None:
    PostgresWarehouse(pg_dsn, pg_schema).ensure_schema()
    old = golden_tables("basics", FEB)
    first = PostgresWarehouse(pg_dsn, pg_schema)
    first.load_month(FEB, old, run_record("old", FEB))
    first.close()
    contents = {
        "a": as_month(golden_tables("basics", JAN), FEB),
        "b": golden_tables("full", FEB),
    }
    assert contents["a"]["customer_month"].num_rows != contents["b"]["customer_month"].num_rows
    apps = {key: unique_name(f"tiers_load_{key}") for key in contents}
    errors: list[BaseException] = []

    def load(key: str) -> None:
        warehouse = PostgresWarehouse(warehouse_url(pg_dsn, apps[key]), pg_schema)
        try:
            warehouse.load_month(FEB, contents[key], run_record(f"run-{key}", FEB))
        except BaseException as exc:
            errors.append(exc)
        finally:
            warehouse.close()

    blocker = hold_run_table(pg_dsn, pg_schema)
    threads = [threading.Thread(target=load, args=(key,)) for key in contents]
    try:
        for thread in threads:
            thread.start()
        # One load holds the month's lock and waits at pipeline_run; the other waits
        # for the month's lock before touching any row.
        wait_for(
            lambda: (
                sorted(filter(None, (waits(pg, app) for app in apps.values())))
                == ["advisory", "relation"]
            ),
            "both loads to be under way",
        )
        later = next(key for key, app in apps.items() if waits(pg, app) == "advisory")
    finally:
        blocker.rollback()
        blocker.close()
        for thread in threads:
            thread.join(timeout=120)
    assert errors == []
    reader = PostgresWarehouse(pg_dsn, pg_schema)
    assert month_contents(reader, FEB) == expected_contents(contents[later])
    runs = sorted(r["run_id"] for r in reader.read_table("pipeline_run", FEB).to_pylist())
    assert runs == ["old", "run-a", "run-b"]
    reader.close()


KILLED_LOAD = """
import sys
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.warehouse.postgres import PostgresWarehouse

url, schema, folder, run_id = sys.argv[1:5]
tables = {path.stem: pq.read_table(path) for path in Path(folder).glob("*.parquet")}
run = {"run_id": run_id, "month": date(2026, 2, 1), "status": "loaded"}
PostgresWarehouse(url, schema).load_month(date(2026, 2, 1), tables, run)
print("committed")
"""


def test_a_load_killed_mid_transaction_leaves_the_previous_month(
    pg, pg_dsn, pg_schema, tmp_path
) -> None:
    warehouse = PostgresWarehouse(pg_dsn, pg_schema)
    warehouse.ensure_schema()
    old = golden_tables("full", FEB)
    warehouse.load_month(FEB, old, run_record("old", FEB))
    new = as_month(golden_tables("full", JAN), FEB)
    folder = tmp_path / "new"
    folder.mkdir()
    for name, table in new.items():
        pq.write_table(table, folder / f"{name}.parquet")
    app = unique_name("tiers_killed_load")
    blocker = hold_run_table(pg_dsn, pg_schema)
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            KILLED_LOAD,
            warehouse_url(pg_dsn, app),
            pg_schema,
            str(folder),
            "killed",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: waits(pg, app) == "relation", "the load to hold its transaction")
        # The load has deleted and re-inserted the month, uncommitted: readers see the
        # old month, whole.
        assert month_contents(warehouse, FEB) == expected_contents(old)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        blocker.rollback()
        blocker.close()
    assert process.returncode == -signal.SIGKILL
    wait_for(lambda: not connected(pg, app), "the killed load's session to end")
    assert month_contents(warehouse, FEB) == expected_contents(old)
    runs = [r["run_id"] for r in warehouse.read_table("pipeline_run").to_pylist()]
    assert runs == ["old"]
    # Nothing is left locked: the next load goes through.
    warehouse.load_month(FEB, new, run_record("after", FEB))
    assert month_contents(warehouse, FEB) == expected_contents(new)
    warehouse.close()


def month_signature(pg: psycopg.Connection, schema: str, month: date) -> tuple:
    """Row counts of every table and the revenue of the month, in one snapshot."""
    parts = [
        sql.SQL("(SELECT count(*) FROM {} WHERE month = %(month)s)").format(
            sql.Identifier(schema, name)
        )
        for name in TABLES
    ]
    parts.append(
        sql.SQL("(SELECT sum(revenue) FROM {} WHERE month = %(month)s)").format(
            sql.Identifier(schema, "customer_month")
        )
    )
    query = sql.SQL("SELECT ") + sql.SQL(", ").join(parts)
    return tuple(pg.execute(query, {"month": month}).fetchone())


def expected_signature(tables: Mapping[str, pa.Table]) -> tuple:
    revenue = sum(tables["customer_month"].column("revenue").to_pylist(), Decimal(0))
    return (*(tables[name].num_rows for name in TABLES), revenue)


def test_readers_never_see_half_a_month(pg, pg_dsn, pg_schema) -> None:
    warehouse = PostgresWarehouse(pg_dsn, pg_schema)
    warehouse.ensure_schema()
    versions = [golden_tables("full", FEB), as_month(golden_tables("full", JAN), FEB)]
    signatures = {expected_signature(v) for v in versions}
    assert len(signatures) == 2
    warehouse.load_month(FEB, versions[0], run_record("load-0", FEB))
    done = threading.Event()
    errors: list[BaseException] = []

    def reload() -> None:
        try:
            for i in range(1, 13):
                warehouse.load_month(FEB, versions[i % 2], run_record(f"load-{i}", FEB))
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    loader = threading.Thread(target=reload)
    loader.start()
    seen = []
    while not done.is_set():
        seen.append(month_signature(pg, pg_schema, FEB))
    loader.join()
    assert errors == []
    assert len(seen) > 20
    assert set(seen) <= signatures  # the old month or the new one, never a mix or a gap
    assert month_signature(pg, pg_schema, FEB) == expected_signature(versions[0])
    warehouse.close()


# --- the BI role --------------------------------------------------------------------------


def test_the_bi_role_reads_and_cannot_write_or_create(pg, pg_dsn, pg_schema, pg_role) -> None:
    warehouse = PostgresWarehouse(pg_dsn, pg_schema)
    warehouse.ensure_schema()
    warehouse.load_month(FEB, golden_tables("basics", FEB), run_record("r1", FEB))
    create_readonly_role(pg_dsn, pg_schema, pg_role, password="bi-pass-1")
    create_readonly_role(pg_dsn, pg_schema, pg_role, password="bi-pass-2")  # idempotent
    attributes = pg.execute(
        "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, "
        "rolbypassrls, rolpassword LIKE 'SCRAM-SHA-256$%%' FROM pg_authid WHERE rolname = %s",
        [pg_role],
    ).fetchone()
    assert attributes == (True, False, False, False, False, False, True)
    # A table the pipeline adds later is readable too (default privileges).
    pg.execute(sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(pg_schema, "added_later")))
    pg.execute(
        sql.SQL("INSERT INTO {} VALUES (1)").format(sql.Identifier(pg_schema, "added_later"))
    )

    def table(name: str) -> sql.Composed:
        return sql.Identifier(pg_schema, name)

    role_dsn = make_conninfo(pg_dsn, user=pg_role, password="bi-pass-2")
    with psycopg.connect(role_dsn, autocommit=True) as bi:
        assert bi.execute("SELECT current_user").fetchone() == (pg_role,)
        count = bi.execute(sql.SQL("SELECT count(*) FROM {}").format(table("customer_month")))
        assert count.fetchone()[0] == golden_tables("basics", FEB)["customer_month"].num_rows
        assert bi.execute(sql.SQL("SELECT * FROM {}").format(table("month_overview"))).fetchall()
        assert bi.execute(sql.SQL("SELECT x FROM {}").format(table("added_later"))).fetchall() == [
            (1,)
        ]
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            bi.execute(sql.SQL("DELETE FROM {}").format(table("customer_month")))
        bi.execute("SET default_transaction_read_only = off")  # the role may; privileges hold
        refused = [
            sql.SQL("DELETE FROM {}").format(table("customer_month")),
            sql.SQL("UPDATE {} SET revenue = 0").format(table("customer_month")),
            sql.SQL("INSERT INTO {} (run_id, month) VALUES ('x', '2026-02-01')").format(
                table("pipeline_run")
            ),
            sql.SQL("TRUNCATE {}").format(table("customer_abc")),
            sql.SQL("CREATE TABLE {} (x int)").format(table("mine")),
            sql.SQL("CREATE VIEW {} AS SELECT 1 AS x").format(table("my_view")),
            sql.SQL("DROP TABLE {}").format(table("customer_month")),
            sql.SQL("ALTER TABLE {} ADD COLUMN y int").format(table("customer_month")),
            sql.SQL("CREATE TABLE public.{} (x int)").format(sql.Identifier(unique_name("bi"))),
        ]
        for statement in refused:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                bi.execute(statement)
    count = pg.execute(sql.SQL("SELECT count(*) FROM {}").format(table("customer_month")))
    assert count.fetchone()[0] == golden_tables("basics", FEB)["customer_month"].num_rows


def test_a_role_with_more_rights_is_not_made_the_bi_role(pg, pg_dsn, pg_schema, pg_role) -> None:
    PostgresWarehouse(pg_dsn, pg_schema).ensure_schema()
    pg.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(pg_role)))
    pg.execute(
        sql.SQL("GRANT INSERT ON {} TO {}").format(
            sql.Identifier(pg_schema, "customer_month"), sql.Identifier(pg_role)
        )
    )
    with pytest.raises(ValueError, match="writes to customer_month"):
        create_readonly_role(pg_dsn, pg_schema, pg_role)


# --- the whole pipeline -------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_golden_case_from_a_postgres_source_into_a_postgres_warehouse(
    golden, pg, pg_dsn, pg_schema, source_schema, tmp_path, case
) -> None:
    from pipeline.run import backfill
    from pipeline.warehouse import open_warehouse

    zone, start, last = GOLDEN_CASES[case]
    table = golden_source_table(
        pg,
        source_schema,
        golden / case,
        timezone=zone,
        paid_at_type="timestamp" if case == "full" else "timestamptz",
    )
    (tmp_path / "pg").mkdir()
    path = write_config(
        tmp_path / "pg",
        {
            "source": {"kind": "postgres", "table": table},
            "business": {"timezone": zone, "history_start": start},
            "warehouse": {"url": pg_dsn, "schema": pg_schema},
        },
    )
    cfg = load_config(path, environ={"TIERS__SOURCE__DSN": pg_dsn})
    results = backfill.backfill(cfg, parse_month(start), parse_month(last))
    assert {r.status for r in results} == {"loaded"}, [r.error for r in results]
    warehouse = open_warehouse(cfg)
    assert isinstance(warehouse, PostgresWarehouse)
    (tmp_path / "duckdb").mkdir()
    reference_cfg = csv_config(
        tmp_path / "duckdb", golden / case / "payments.csv", timezone=zone, history_start=start
    )
    reference_results = backfill.backfill(reference_cfg, parse_month(start), parse_month(last))
    assert {r.status for r in reference_results} == {"loaded"}
    reference = open_warehouse(reference_cfg)
    try:
        for name in TABLES:
            loaded = warehouse.read_table(name)
            assert table_differences(case, name, loaded) == []
            # Same numbers everywhere: the DuckDB warehouse from the CSV holds the same rows.
            assert sorted_rows(name, loaded) == sorted_rows(name, reference.read_table(name))
        runs = warehouse.read_table("pipeline_run").to_pylist()
        assert len(runs) == len(results)
        assert {r["status"] for r in runs} == {"loaded"}
        assert all(r["checks_failed"] == 0 and r["checks_passed"] > 0 for r in runs)
    finally:
        warehouse.close()
        reference.close()


def test_a_postgres_source_backfills_to_the_bytes_of_the_csv(
    golden, pg, pg_dsn, source_schema, tmp_path
) -> None:
    """The same payments as CSV text and as a PostgreSQL table (naive timestamps, the
    business wall clock): a backfill of three months with ``tiers backfill`` (the source read
    for the range, then for each month, from one DuckDB connection) gives the same reporting
    tables, file for file, as test_pipeline.py finds for Parquet and DuckDB sources."""
    zone, payments = "Europe/Oslo", golden / "full" / "payments.csv"
    table = golden_source_table(
        pg, source_schema, golden / "full", timezone=zone, paid_at_type="timestamp"
    )
    found = {}
    for kind in ("csv", "postgres"):
        folder = tmp_path / kind
        folder.mkdir()
        source = {"kind": "postgres", "table": table, "dsn": pg_dsn} if kind == "postgres" else {}
        csv_config(folder, payments, timezone=zone, history_start="2025-01", source=source)
        found[kind] = backfilled_through_the_cli(folder / "tiers.toml", "2025-01", "2025-03")
    assert_same_reporting_tables(found["postgres"], found["csv"], months=3)


def float_payments_table(pg, schema: str, name: str, money: str, amounts, costs) -> str:
    """FLOAT_CASE_ROWS as a table whose amount and cost are of the PostgreSQL type ``money``."""
    table = sql.Identifier(schema, name)
    pg.execute(
        sql.SQL(
            "CREATE TABLE {} (payment_id text, customer_id text, paid_at timestamptz, "
            "amount {money}, currency text, cost {money})"
        ).format(table, money=sql.SQL(money))
    )
    with pg.cursor() as cur:
        cur.executemany(
            sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s::{money}, 'EUR', %s::{money})").format(
                table, money=sql.SQL(money)
            ),
            [
                (r[0], r[1], r[2], amount, cost)
                for r, amount, cost in zip(FLOAT_CASE_ROWS, amounts, costs, strict=True)
            ],
        )
    return f"{schema}.{name}"


@pytest.mark.parametrize(("money", "width"), [("double precision", "double"), ("real", "real")])
def test_float_amounts_and_costs_load_as_the_decimal_month(
    pg, pg_dsn, source_schema, tmp_path, money, width
) -> None:
    """double precision and real amounts and costs, noise included, are their nearest cents:
    the months equal, file for file, the months of the same payments in numeric columns,
    and the manifest counts the rounded rows; a float far from every cent is a bad row."""
    exact = [r[3] for r in FLOAT_CASE_ROWS], [r[4] for r in FLOAT_CASE_ROWS]
    amounts, costs, rounded = float_case_values(width)
    found = {}
    for name, kind, values in (
        ("exact", "numeric(18,2)", exact),
        ("floats", money, (amounts, costs)),
    ):
        table = float_payments_table(pg, source_schema, name, kind, *values)
        (tmp_path / name).mkdir()
        path = write_config(
            tmp_path / name,
            {
                "source": {"kind": "postgres", "table": table, "dsn": pg_dsn},
                "business": {"history_start": "2026-01"},
            },
        )
        found[name] = (load_config(path), dict(extract_months(load_config(path), [JAN, FEB])))
    compared = (
        "rows_read",
        "rows_duplicate",
        "rows_written",
        "amount_sum",
        "fingerprint",
        "data_files",
        "customer_month_file",
        "monthly_ranking_file",
    )
    (cfg, floats), (_, decimals) = found["floats"], found["exact"]
    for month in (JAN, FEB):
        got, want = floats[month], decimals[month]
        assert {k: getattr(got, k) for k in compared} == {k: getattr(want, k) for k in compared}
        assert (got.rows_rounded, want.rows_rounded) == (rounded[got.month], 0)
    assert floats[JAN].rows_duplicate == 1
    pg.execute(
        sql.SQL("UPDATE {} SET amount = 1.234 WHERE payment_id = 'f10'").format(
            sql.Identifier(source_schema, "floats")
        )
    )
    before = read_manifest(cfg.lake.root, FEB)
    with pytest.raises(BadInputError) as refused:
        extract(cfg, FEB)
    assert "month 2026-02 has 1 bad row(s)" in str(refused.value)
    assert "amount with more than 2 decimals: 1 row(s)" in str(refused.value)
    assert "payment_id='f10'" in str(refused.value) and "amount='1.234'" in str(refused.value)
    assert read_manifest(cfg.lake.root, FEB) == before
