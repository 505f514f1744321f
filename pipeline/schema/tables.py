"""The reporting tables: names, columns, types and grain (the spec's contract).

One definition serves the SQL outputs' column order, the DuckDB and PostgreSQL DDL,
the checks and the descriptions BI tools show (``COMMENT ON``, keyed by these names in
``descriptions.py``). Logical types: date, text, int, bigint, money (exact
DECIMAL(18,2); the SQL files' type ``money``, see ``pipeline/sql.py``), float (double
precision), bool, timestamp (with time zone), json.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    indexes: tuple[str, ...] = ()  # columns dashboards filter by
    # the order of a month's rows in its file: a total order (same rows, same bytes). The
    # key without month (one month a file) unless a cheaper one is given: DuckDB sorts
    # integers several times faster than customer ids.
    file_order: tuple[str, ...] = ()
    # the optional [service] source (spec: "Service effort and cost to serve"): a table
    # computed only with it, and columns of a table that only a month computed with it has
    # (a month computed without it gives the table without them: the same bytes as before)
    service_only: bool = False
    service_columns: tuple[str, ...] = ()

    def without_service(self) -> Table:
        """The table as a month computed without a [service] source has it."""
        return Table(
            self.name,
            tuple(c for c in self.columns if c[0] not in self.service_columns),
            self.key,
            self.indexes,
            self.file_order,
        )

    @property
    def row_order(self) -> tuple[str, ...]:
        return self.file_order or tuple(c for c in self.key if c != "month")

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(name, ARROW_TYPES[kind]) for name, kind in self.columns])

    def duckdb_columns(self) -> str:
        """The select list that gives DuckDB's rows this table's columns and types."""
        return ", ".join(
            f'CAST("{name}" AS {DUCKDB_TYPES[kind]}) AS "{name}"' for name, kind in self.columns
        )


ARROW_TYPES = {
    "date": pa.date32(),
    "text": pa.string(),
    "int": pa.int32(),
    "bigint": pa.int64(),
    "money": pa.decimal128(18, 2),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "json": pa.string(),
}

DUCKDB_TYPES = {
    "date": "DATE",
    "text": "VARCHAR",
    "int": "INTEGER",
    "bigint": "BIGINT",
    "money": "DECIMAL(18, 2)",  # also the type `money` the SQL files cast to (sql.connect)
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
    "json": "VARCHAR",
}

REPORTING_TABLES: tuple[Table, ...] = (
    Table(
        "customer_month",
        (
            ("month", "date"),
            ("customer_id", "text"),
            ("revenue", "money"),
            ("gross_revenue", "money"),
            ("refunds", "money"),
            ("payments", "int"),
            ("units", "bigint"),
            ("margin", "money"),
        ),
        key=("month", "customer_id"),
        indexes=("customer_id",),
    ),
    Table(
        "customer_abc",
        (
            ("month", "date"),
            ("metric", "text"),
            ("window_months", "int"),
            ("customer_id", "text"),
            ("value", "money"),
            ("rank", "int"),
            ("share", "float"),
            ("cum_share", "float"),
            ("abc_class", "text"),
            ("xyz_class", "text"),
        ),
        key=("month", "metric", "window_months", "customer_id"),
        indexes=("customer_id", "abc_class"),
        file_order=("metric", "window_months", "rank"),  # rank: row_number() of a ranking
    ),
    Table(
        "customer_segment",
        (
            ("month", "date"),
            ("metric", "text"),
            ("customer_id", "text"),
            ("value", "money"),
            ("rank", "int"),
            ("segment", "text"),
            ("movement", "text"),
        ),
        key=("month", "metric", "customer_id"),
        indexes=("customer_id", "segment"),
        file_order=("metric", "rank"),  # rank: row_number() of the metric's ranking
    ),
    Table(
        "vip_roster",
        (
            ("month", "date"),
            ("metric", "text"),
            ("customer_id", "text"),
            ("months_as_vip", "int"),
            ("first_vip_month", "date"),
            ("last_vip_month", "date"),
            ("is_vip_this_month", "bool"),
            ("missed_by_period_method", "bool"),
        ),
        key=("month", "metric", "customer_id"),
        indexes=("customer_id",),
    ),
    Table(
        "vip_roster_change",
        (
            ("month", "date"),
            ("metric", "text"),
            ("customer_id", "text"),
            ("change", "text"),
        ),
        key=("month", "metric", "customer_id"),
    ),
    Table(
        "customer_alert",
        (
            ("month", "date"),
            ("metric", "text"),
            ("customer_id", "text"),
            ("alert", "text"),
            ("detail", "text"),
        ),
        key=("month", "metric", "customer_id", "alert"),
        indexes=("customer_id",),
    ),
    Table(
        "customer_call",
        (
            ("month", "date"),
            ("metric", "text"),
            ("customer_id", "text"),
            ("alert", "text"),
            ("call_rank", "int"),
            ("priority", "text"),
            ("share_kept", "float"),
            ("p_alive", "float"),
            ("expected_payments", "float"),
            ("expected_value", "money"),
            ("recent_value", "money"),
            ("value_at_risk", "money"),
            ("paying_days", "int"),
            ("days_between", "float"),
            ("quiet_days", "int"),
            ("vip_dips", "int"),
            ("vip_returns", "int"),
            ("owner_email", "text"),
            ("call_reason", "text"),
        ),
        key=("month", "metric", "customer_id", "alert"),
        indexes=("customer_id", "owner_email"),
        file_order=("metric", "call_rank"),
    ),
    Table(
        "customer_tier",
        (
            ("month", "date"),
            ("window_months", "int"),
            ("customer_id", "text"),
            ("revenue", "money"),
            ("margin", "money"),
            ("margin_pct", "float"),
            ("tier", "int"),
            ("cost_to_serve", "money"),
            ("loaded_margin", "money"),
            ("loaded_margin_pct", "float"),
        ),
        key=("month", "window_months", "customer_id"),
        indexes=("customer_id", "tier"),
        service_columns=("cost_to_serve", "loaded_margin", "loaded_margin_pct"),
    ),
    Table(
        "pareto_summary",
        (
            ("month", "date"),
            ("metric", "text"),
            ("window_months", "int"),
            ("n_customers", "int"),
            ("total_value", "money"),
            ("top20_share", "float"),
            ("n_class_a", "int"),
            ("n_class_b", "int"),
            ("n_class_c", "int"),
            ("gini", "float"),
            ("hhi", "float"),
            ("top1_share", "float"),
        ),
        key=("month", "metric", "window_months"),
    ),
    Table(
        "criteria_overlap",
        (
            ("month", "date"),
            ("metric_a", "text"),
            ("metric_b", "text"),
            ("n_a", "int"),
            ("n_b", "int"),
            ("n_both", "int"),
            ("jaccard", "float"),
        ),
        key=("month", "metric_a", "metric_b"),
    ),
    Table(
        "customer_service",
        (
            ("month", "date"),
            ("customer_id", "text"),
            ("activities", "int"),
            ("hours", "money"),
            ("cost_to_serve", "money"),
        ),
        key=("month", "customer_id"),
        indexes=("customer_id",),
        service_only=True,
    ),
    Table(
        "customer_service_profile",
        (
            ("month", "date"),
            ("window_months", "int"),
            ("customer_id", "text"),
            ("revenue", "money"),
            ("effort", "money"),
            ("revenue_share", "float"),
            ("effort_share", "float"),
            ("revenue_class", "text"),
            ("effort_class", "text"),
            ("profile", "text"),
        ),
        key=("month", "window_months", "customer_id"),
        indexes=("customer_id", "profile"),
        service_only=True,
    ),
    Table(
        "customer_service_kind",
        (
            ("month", "date"),
            ("window_months", "int"),
            ("customer_id", "text"),
            ("kind", "text"),
            ("activities", "int"),
            ("effort", "money"),
            ("cost_to_serve", "money"),
            ("kind_rank", "int"),
        ),
        key=("month", "window_months", "customer_id", "kind"),
        indexes=("customer_id",),
        service_only=True,
    ),
)

PIPELINE_RUN = Table(
    "pipeline_run",
    (
        ("run_id", "text"),
        ("month", "date"),
        ("status", "text"),  # loaded | provisional | failed
        ("rows_read", "bigint"),
        ("rows_duplicate", "bigint"),
        ("rows_quarantined", "bigint"),
        ("rows_loaded", "bigint"),
        ("checks_passed", "int"),
        ("checks_failed", "int"),
        ("checks_warned", "int"),
        ("check_results", "json"),
        ("error", "text"),
        ("source_fingerprint", "text"),
        ("started_at", "timestamp"),
        ("finished_at", "timestamp"),
        ("attempt", "int"),  # 1, 2, ... per (run_id, month): retries reuse a run id
        ("recorded_at", "timestamp"),
        # last, as an existing PostgreSQL warehouse adds it
        ("rows_rounded", "bigint"),
    ),
    key=("run_id", "month", "attempt"),
)

# Customer attributes from the optional [customers] source (pipeline.sources.customers): not
# month-partitioned, replaced whole by each load; the BI views join names and owners on it.
CUSTOMER = Table(
    "customer",
    (("customer_id", "text"), ("name", "text"), ("owner_email", "text"), ("attributes", "json")),
    key=("customer_id",),
    indexes=("owner_email",),
)

TABLES = {table.name: table for table in REPORTING_TABLES}


def month_tables(service: bool) -> tuple[Table, ...]:
    """The reporting tables a month computes, as it computes them: with a [service] source
    every table, without one the tables and columns of before it."""
    if service:
        return REPORTING_TABLES
    return tuple(t.without_service() for t in REPORTING_TABLES if not t.service_only)


# the pipeline_run statuses of an attempt whose tables the warehouse holds
LOADED = ("loaded", "provisional")
# every table the warehouse holds
WAREHOUSE_TABLES = (*REPORTING_TABLES, PIPELINE_RUN, CUSTOMER)
