"""The tables a partition carries beside its rows, derived at extract and published with them.

A payment partition carries the month's customer_month and its customers ranked by each
metric (window 1); an activity partition carries the month's customer_service and its
activities by kind. A re-extract touches its own month only, and replaces the month's
derived files with its payments, in the same publish: the computation of month M reads
the derived files of M-11 .. M instead of re-aggregating and re-ranking a year of
payments, and can never see derived data older than its payments. The derived files read
no configuration (every metric the source allows is ranked), so a change of the
configuration never makes them stale.

The models that derive them are listed here, below the computation, because the extract
runs them; ``pipeline/compute/models.py`` places them in the month's one order of models.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from pipeline.schema.inputs import metrics_available
from pipeline.schema.tables import TABLES
from pipeline.sources import SourceRows
from pipeline.sql import run_sql

# (sql file, the table it creates, {relation the file reads: the query read instead}), in
# the order the extract runs them on the good rows of a month it publishes
PAYMENT_MODELS: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("customer_month", "customer_month_history", {}),
    ("customer_metric", "customer_metric", {}),
    (
        "customer_ranking",
        "monthly_ranking",
        {
            "window_values": (
                "select month, metric, 1 as window_months, customer_id, value from customer_metric"
            )
        },
    ),
)
ACTIVITY_MODELS: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("customer_service", "month_customer_service", {}),
    ("customer_service_by_kind", "month_customer_service_by_kind", {}),
)
MONTHLY_RANKING_SCHEMA = pa.schema(
    [
        ("month", pa.date32()),
        ("metric", pa.string()),
        ("window_months", pa.int32()),
        ("customer_id", pa.string()),
        ("value", pa.decimal128(18, 2)),
        ("rank", pa.int32()),
        ("n_customers", pa.int32()),
        ("total_value", pa.decimal128(18, 2)),
        ("cum_value_before", pa.decimal128(18, 2)),
    ]
)
CUSTOMER_SERVICE_KIND_SCHEMA = pa.schema(
    [
        ("month", pa.date32()),
        ("customer_id", pa.string()),
        ("kind", pa.string()),
        ("activities", pa.int32()),
        ("hours", pa.decimal128(18, 2)),
        ("cost_to_serve", pa.decimal128(18, 2)),
    ]
)
CUSTOMER_SERVICE_SCHEMA = pa.schema(
    [
        ("month", pa.date32()),
        ("customer_id", pa.string()),
        ("activities", pa.int32()),
        ("hours", pa.decimal128(18, 2)),
        ("cost_to_serve", pa.decimal128(18, 2)),
    ]
)


def payment_tables(con: duckdb.DuckDBPyConnection, source: SourceRows) -> dict[str, pa.Table]:
    """The month's customer_month (sql/customer_month.sql) and its customers ranked by every
    metric the source allows (customer_metric.sql, customer_ranking.sql, window 1)."""
    has_units, has_margin = "units" in source.columns_present, "cost" in source.columns_present
    con.execute(
        "create or replace temp view lake_payments as "
        "select * from staged_payments where problem is null"
    )
    params = {
        "has_units": has_units,
        "has_margin": has_margin,
        "metrics": metrics_available(has_units=has_units, has_margin=has_margin),
    }
    for sql_file, table, inputs in PAYMENT_MODELS:
        run_sql(con, sql_file, create=table, inputs=inputs, **params)
    customer_month = (
        con.sql("select * from customer_month_history order by customer_id")
        .to_arrow_table()
        .cast(TABLES["customer_month"].arrow_schema())
    )
    ranking = (
        con.sql("select * from monthly_ranking order by metric, rank")
        .to_arrow_table()
        .cast(MONTHLY_RANKING_SCHEMA)
    )
    return {"customer_month": customer_month, "monthly_ranking": ranking}


def activity_tables(con: duckdb.DuckDBPyConnection, source: SourceRows) -> dict[str, pa.Table]:
    """The activity month's customer_service (sql/customer_service.sql): the computation of
    a month reads a year of these instead of a year of activities; and its activities by
    kind (sql/customer_service_by_kind.sql)."""
    con.execute(
        "create or replace temp view lake_activities as "
        "select * from staged_activities where problem is null"
    )
    params = {
        "has_hours": "hours" in source.columns_present,
        "has_cost": "cost" in source.columns_present,
    }
    for sql_file, table, inputs in ACTIVITY_MODELS:
        run_sql(con, sql_file, create=table, inputs=inputs, **params)
    rows = con.sql("select * from month_customer_service order by customer_id").to_arrow_table()
    by_kind = con.sql(
        "select * from month_customer_service_by_kind order by customer_id, kind"
    ).to_arrow_table()
    return {
        "customer_service": rows.cast(CUSTOMER_SERVICE_SCHEMA),
        "customer_service_kind": by_kind.cast(CUSTOMER_SERVICE_KIND_SCHEMA),
    }
