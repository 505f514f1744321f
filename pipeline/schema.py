"""The reporting tables: names, columns, types and grain (the spec's contract).

One definition serves the SQL outputs' column order, the DuckDB and PostgreSQL DDL
and the checks. Logical types: date, text, int, bigint, money (exact DECIMAL(18,2)),
float (double precision), bool, timestamp (with time zone), json.
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

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(name, ARROW_TYPES[kind]) for name, kind in self.columns])


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
        "customer_tier",
        (
            ("month", "date"),
            ("window_months", "int"),
            ("customer_id", "text"),
            ("revenue", "money"),
            ("margin", "money"),
            ("margin_pct", "float"),
            ("tier", "int"),
        ),
        key=("month", "window_months", "customer_id"),
        indexes=("customer_id", "tier"),
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
)

PIPELINE_RUN = Table(
    "pipeline_run",
    (
        ("run_id", "text"),
        ("month", "date"),
        ("status", "text"),  # loaded | failed
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
    ),
    key=("run_id", "month"),
)

TABLES = {table.name: table for table in REPORTING_TABLES}
