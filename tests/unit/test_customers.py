"""Customer attributes read like the payments source, and the new configuration sections."""

from __future__ import annotations

from datetime import date

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import ConfigError, CustomersError
from pipeline.sources.customers import read_customers

from support import csv_config, write_payments

ROWS = "id,display_name,account_manager,region\nc2,Beta,b@example.com,north\nc1,Alpha,,west\n"
MAPPING = {"customer_id": "id", "name": "display_name", "owner_email": "account_manager"}


def config(tmp_path, **sections):
    payments = write_payments(tmp_path / "payments.csv", [])
    return csv_config(tmp_path, payments, **sections)


def test_a_csv_with_mapped_columns_keeps_the_extra_ones(tmp_path) -> None:
    (tmp_path / "customers.csv").write_text(ROWS)
    cfg = config(tmp_path, customers={"kind": "csv", "path": "customers.csv", "columns": MAPPING})
    table = read_customers(cfg)
    assert table.column_names == ["customer_id", "name", "owner_email", "region"]
    assert table.to_pylist() == [
        {"customer_id": "c1", "name": "Alpha", "owner_email": None, "region": "west"},
        {"customer_id": "c2", "name": "Beta", "owner_email": "b@example.com", "region": "north"},
    ]


def test_parquet_and_duckdb_sources_give_the_same_rows(tmp_path) -> None:
    table = pa.table({"customer_id": ["c1", "c2"], "name": ["Alpha", "Beta"], "tier": [1, 2]})
    pq.write_table(table, tmp_path / "customers.parquet")
    with duckdb.connect(str(tmp_path / "crm.duckdb")) as con:
        con.register("incoming", table)
        con.execute("CREATE TABLE customers AS SELECT * FROM incoming")
    from_parquet = read_customers(
        config(tmp_path, customers={"kind": "parquet", "path": "customers.parquet"})
    )
    from_duckdb = read_customers(
        config(tmp_path, customers={"kind": "duckdb", "path": "crm.duckdb", "table": "customers"})
    )
    assert from_parquet.to_pylist() == from_duckdb.to_pylist()
    assert from_parquet.to_pylist()[0] == {
        "customer_id": "c1",
        "name": "Alpha",
        "owner_email": None,
        "tier": "1",
    }


def test_errors_name_the_file_and_the_problem(tmp_path) -> None:
    (tmp_path / "customers.csv").write_text("id,name\nc1,A\nc1,B\n")
    cfg = config(tmp_path, customers={"kind": "csv", "path": "customers.csv"})
    with pytest.raises(CustomersError, match="no customer id column 'customer_id'"):
        read_customers(cfg)
    cfg = config(
        tmp_path,
        customers={"kind": "csv", "path": "customers.csv", "columns": {"customer_id": "id"}},
    )
    with pytest.raises(CustomersError, match=r"1 customer id\(s\) appear more than once.*c1"):
        read_customers(cfg)
    cfg = config(tmp_path, customers={"kind": "csv", "path": "missing.csv"})
    with pytest.raises(CustomersError, match="not found: .*missing.csv"):
        read_customers(cfg)
    assert read_customers(config(tmp_path)) is None


def test_notify_configuration_is_checked(tmp_path) -> None:
    notify = {"host": "smtp.example.com", "sender": "tiers@example.com", "recipients": ["x"]}
    with pytest.raises(ConfigError, match="'x' is not an email address"):
        config(tmp_path, notify=notify)
    notify["recipients"] = ["team@example.com"]
    with pytest.raises(ConfigError, match="route_by needs a \\[customers\\] section"):
        config(tmp_path, notify=notify | {"route_by": "owner_email"})
    with pytest.raises(ConfigError, match="password"):
        config(tmp_path, notify=notify | {"password": "in the file"})
    cfg = config(tmp_path, notify=notify)
    assert (cfg.notify.port, cfg.notify.tls, cfg.notify.password_env) == (
        587,
        "starttls",
        "TIERS_SMTP_PASSWORD",
    )


def test_the_notify_step_does_nothing_without_a_notify_section(tmp_path) -> None:
    from pipeline.run.steps import notify_step

    cfg = config(tmp_path)
    assert notify_step(cfg, date(2026, 1, 1), "run-1") == {
        "month": "2026-01",
        "notify": "not configured",
    }
    assert not (tmp_path / "runs").exists()


def test_a_load_puts_the_attributes_in_the_warehouse_for_the_bi_views(tmp_path) -> None:
    """Each month's load replaces the warehouse's customer table from the source; a source
    that cannot be read stops the load before anything of the month is loaded."""
    from pipeline.run import backfill
    from pipeline.warehouse import open_warehouse

    (tmp_path / "customers.csv").write_text(ROWS)
    payments = write_payments(
        tmp_path / "payments.csv",
        [("p1", "c1", "2026-01-05", "10.00", "EUR"), ("p2", "c2", "2026-01-06", "5.00", "EUR")],
    )
    cfg = csv_config(
        tmp_path, payments, customers={"kind": "csv", "path": "customers.csv", "columns": MAPPING}
    )
    backfill.run_month(cfg, date(2026, 1, 1))
    warehouse = open_warehouse(cfg)
    try:
        stored = warehouse.read_table("customer").to_pylist()
    finally:
        warehouse.close()
    assert stored == [
        {
            "customer_id": "c1",
            "name": "Alpha",
            "owner_email": None,
            "attributes": '{"region": "west"}',
        },
        {
            "customer_id": "c2",
            "name": "Beta",
            "owner_email": "b@example.com",
            "attributes": '{"region": "north"}',
        },
    ]
    (tmp_path / "customers.csv").write_text("id,display_name,account_manager\nc1,A,\nc1,B,\n")
    with pytest.raises(CustomersError, match="more than once"):
        backfill.run_month(cfg, date(2026, 1, 1))
