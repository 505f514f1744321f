"""Compute every reporting table of one month from the lake, with the SQL of ``sql/``.

Month M reads the lake partitions of M-L+1 .. M (L = the longest look-back the
configuration needs, 12 by default); months before ``history_start`` are empty by
definition, any other missing month is an error. The result is a pure function of
those partitions and the configuration, so months can be computed in any order.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa

from pipeline.compute.call_score import DAYS_PER_MONTH, score_alerted
from pipeline.compute.models import MONTH_MODELS, REPORTING_SOURCE, SERVICE_METRICS, SERVICE_MODELS
from pipeline.config import Config
from pipeline.errors import ComputeError
from pipeline.lake.derived import MONTHLY_RANKING_SCHEMA
from pipeline.lake.partition import ACTIVITIES, derived_file, month_files, read_manifest
from pipeline.months import add_months, format_month
from pipeline.schema.inputs import ALL_METRICS, metrics_available
from pipeline.schema.tables import Table, month_tables
from pipeline.sources.customers import read_customers
from pipeline.sql import bounded_connection, run_sql


@dataclass(frozen=True)
class MonthPlan:
    """What the computation of one month reads and computes."""

    month: date
    months_read: tuple[date, ...]
    # the months whose monthly (window 1) VIP lists are read: the roster of M and of M-1,
    # movements and alerts need the roster_months months ending with M and the one before
    vip_list_months: tuple[date, ...]
    metrics: tuple[str, ...]
    has_units: bool
    has_margin: bool
    # with a [service] source: the activities of the months read (every one extracted)
    service: bool = False
    has_hours: bool = False
    has_service_cost: bool = False

    @property
    def loaded(self) -> bool:
        """Whether the tiers are decided on the loaded margin (payments and activities both
        have cost)."""
        return self.service and self.has_margin and self.has_service_cost


def plan_month(cfg: Config, month: date) -> MonthPlan:
    if refused := cfg.business.before_start(month):
        raise ComputeError(refused)
    months = tuple(cfg.months_read(month))
    present = [set(read_manifest(cfg.lake.root, m).columns_present) for m in months]
    has_units = all("units" in p for p in present)
    has_margin = all("cost" in p for p in present)
    available = metrics_available(has_units=has_units, has_margin=has_margin)
    wanted = cfg.segmentation.metrics or available
    unavailable = sorted(set(wanted) - set(available))
    if unavailable:
        raise ComputeError(
            f"metric(s) {unavailable} need source columns the lake does not have for "
            f"{format_month(months[0])}..{format_month(month)} "
            "(units needs units, margin needs cost)"
        )
    metrics = tuple(m for m in ALL_METRICS if m in wanted)
    vip_lists = months[-(cfg.segmentation.roster_months + 1) :]
    service = {}
    if cfg.service is not None:
        # every month read must have had its activities extracted: a partition may hold no
        # activity, one never extracted is missing (MissingMonthError), never read as empty
        served = [set(read_manifest(cfg.lake.root, m, ACTIVITIES).columns_present) for m in months]
        service = {
            "service": True,
            "has_hours": all("hours" in p for p in served),
            "has_service_cost": all("cost" in p for p in served),
        }
    return MonthPlan(month, months, vip_lists, metrics, has_units, has_margin, **service)


def compute_month(cfg: Config, month: date) -> dict[str, pa.Table]:
    """Every reporting table's rows for ``month``, keyed by table name."""
    with _computed(cfg, month) as (con, plan):
        return {
            table.name: con.sql(_reporting_rows(table, plan.month))
            .to_arrow_table()
            .cast(table.arrow_schema())
            for table in month_tables(plan.service)
        }


def write_month(cfg: Config, month: date, folder: Path) -> dict[str, Path]:
    """Compute ``month`` and write each reporting table to ``folder/<table>.parquet``
    straight from DuckDB (no copy of a month's rows in Python); returns the files."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = month_tables(cfg.service is not None)
    files = {table.name: folder / f"{table.name}.parquet" for table in tables}
    with _computed(cfg, month) as (con, plan):
        for table in tables:
            target = str(files[table.name]).replace("'", "''")
            con.execute(
                f"copy ({_reporting_rows(table, plan.month)}) to '{target}' "
                "(format parquet, compression snappy)"
            )
    return files


def _reporting_rows(table: Table, month: date) -> str:
    """The query of a reporting table's rows of ``month``, in its types and in its file's
    row order (a total order, so that the same input gives the same bytes)."""
    return (
        f"select {table.duckdb_columns()} "
        f"from {REPORTING_SOURCE.get(table.name, table.name)} "
        f"where month = date '{month.isoformat()}' order by {', '.join(table.row_order)}"
    )


@contextmanager
def _computed(cfg: Config, month: date) -> Iterator[tuple[duckdb.DuckDBPyConnection, MonthPlan]]:
    """A connection holding every table of the month's models (``pipeline/compute/models.py``)
    computed for ``month``."""
    plan = plan_month(cfg, month)
    seg = cfg.segmentation
    params = {
        "month": plan.month,
        "previous_month": add_months(plan.month, -1),
        "has_previous_month": plan.month > cfg.business.history_start,
        "metrics": list(plan.metrics),
        "windows": seg.windows,
        "rank_windows": sorted({1, *seg.windows, seg.period_months, seg.tier_window_months}),
        "has_units": plan.has_units,
        "has_margin": plan.has_margin,
        "a_share": seg.a_share,
        "b_share": seg.b_share,
        "vip_share": seg.vip_share,
        "good_share": seg.good_share,
        "roster_months": seg.roster_months,
        "period_months": seg.period_months,
        "tier_window_months": seg.tier_window_months,
        "breakeven_pct": seg.breakeven_pct,
        "erosion_points": seg.erosion_points,
        "erosion_lookback_months": seg.erosion_lookback_months,
        "xyz_months": seg.xyz_months,
        "xyz_x_max_cv": seg.xyz_x_max_cv,
        "xyz_y_max_cv": seg.xyz_y_max_cv,
        "horizon_months": cfg.call_list.horizon_months,
        "max_calls": cfg.call_list.max_calls,
        "max_calls_per_owner": cfg.call_list.max_calls_per_owner,
    }
    con = bounded_connection(cfg)
    try:
        _lake_customer_month(con, cfg, plan, params)
        params["unranked_months"] = _lake_monthly_ranking(con, cfg, plan)
        for sql_file, table, inputs in MONTH_MODELS:
            run_sql(con, sql_file, create=table, inputs=inputs, **params)
        _call_steps(con, cfg, plan, params)
        if plan.service:
            _service_steps(con, cfg, plan, params)
        yield con, plan
    finally:
        con.close()


def _call_steps(con: duckdb.DuckDBPyConnection, cfg: Config, plan: MonthPlan, params: dict) -> None:
    """customer_call (CALL_MODELS): the alerts' risk (pipeline/compute/call_score.py), their
    call order and priority (sql/customer_call.sql), with the account owners of the
    [customers] source."""
    files = [f for m in plan.months_read for f in month_files(cfg.lake.root, m)]
    score_alerted(con, files, params, cfg.call_list.fit_customers)
    customers = read_customers(cfg)
    owners = (
        customers.select(["customer_id", "owner_email"])
        if customers is not None
        else pa.table(
            {"customer_id": pa.array([], pa.string()), "owner_email": pa.array([], pa.string())}
        )
    )
    con.register("customer_owner", owners)
    run_sql(con, "customer_call", create="customer_call", **params, days_per_month=DAYS_PER_MONTH)


def _service_steps(
    con: duckdb.DuckDBPyConnection, cfg: Config, plan: MonthPlan, params: dict
) -> None:
    """The service tables of the month (SERVICE_MODELS): customer_service, the effort rows of
    pareto_summary, customer_service_profile and customer_tier on the loaded margin."""
    seg = cfg.segmentation
    files = [
        derived_file(cfg.lake.root, m, "customer_service", ACTIVITIES) for m in plan.months_read
    ]
    con.read_parquet(files, hive_partitioning=False).create_view("lake_customer_service")
    by_kind = [
        derived_file(cfg.lake.root, m, "customer_service_kind", ACTIVITIES)
        for m in plan.months_read
    ]
    con.read_parquet(by_kind, hive_partitioning=False).create_view("lake_customer_service_kind")
    service_params = params | {
        "has_hours": plan.has_hours,
        "has_service_cost": plan.has_service_cost,
        "loaded": plan.loaded,
        "service_windows": sorted({*seg.windows, seg.tier_window_months}),
        "metrics": list(SERVICE_METRICS),
    }
    for sql_file, table, inputs in SERVICE_MODELS:
        run_sql(con, sql_file, create=table, inputs=inputs, **service_params)
    con.execute("insert into pareto_summary by name select * from effort_pareto_summary")
    con.execute("drop table customer_tier")
    con.execute("alter table customer_tier_with_service rename to customer_tier")


def _lake_monthly_ranking(con: duckdb.DuckDBPyConnection, cfg: Config, plan: MonthPlan) -> list:
    """The view ``monthly_ranking``: the window-1 rankings the extract derived for the months
    whose VIP lists are read; returns the months without one (lake schema version 1), which
    the computation ranks itself."""
    files = {m: derived_file(cfg.lake.root, m, "monthly_ranking") for m in plan.vip_list_months}
    present = [f for f in files.values() if f]
    if present:
        con.read_parquet(present, hive_partitioning=False).create_view("monthly_ranking")
    else:
        con.register("monthly_ranking", MONTHLY_RANKING_SCHEMA.empty_table())
    return [m for m, f in files.items() if not f]


def _lake_customer_month(
    con: duckdb.DuckDBPyConnection, cfg: Config, plan: MonthPlan, params: dict
) -> None:
    """The view ``lake_customer_month``: each month's customer_month as the extract derived
    it; a partition of lake schema version 1 has none, and is aggregated here instead."""
    derived, payments = [], []
    for month in plan.months_read:
        path = derived_file(cfg.lake.root, month, "customer_month")
        if path:
            derived.append(path)
        else:
            payments += month_files(cfg.lake.root, month)
    parts = []
    if derived:
        con.read_parquet(derived, hive_partitioning=False).create_view("derived_customer_month")
        parts.append("select * from derived_customer_month")
    if payments:
        con.read_parquet(payments, hive_partitioning=False).create_view("lake_payments")
        run_sql(con, "customer_month", create="aggregated_customer_month", **params)
        parts.append("select * from aggregated_customer_month")
    con.execute("create temp view lake_customer_month as " + " union all by name ".join(parts))
