"""How the call lists did: ``tiers backtest`` and the report's "How last quarter's list did".

A month's alerted customer was *leaving* when its value over the 3 months after the month
is below half of its value over the 3 months before it (issue 20's definition, and
``../shared/tools/call_precision.py``'s). The months are replayed from the warehouse: their
``customer_call`` rows and the customer_month of the months around them. Only months whose
3 months after are loaded are judged. The shares come from ``sql/backtest.sql``.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pyarrow as pa

from pipeline.config import Config
from pipeline.months import add_months, months_between
from pipeline.sql import connect, run_sql

TOP = 20
FOLLOW_UP_MONTHS = 3
# leaving: the months after bring less than this share of the months before
LEAVING_BELOW = Decimal("0.5")


def backtest(cfg: Config, first: date, last: date, metric: str, top: int = TOP) -> pa.Table:
    """One row per judged month of ``first``..``last`` and an overall row (month NULL)."""
    from pipeline.warehouse import open_warehouse

    warehouse = open_warehouse(cfg)
    try:
        return judge(warehouse, cfg.business.timezone, first, last, metric, top)
    finally:
        warehouse.close()


def judge(warehouse, timezone: str, first: date, last: date, metric: str, top: int = TOP):
    """``backtest`` on an open warehouse (the report judges the last quarter's lists)."""
    # the loaded months: every loaded month with a paying customer has summary rows
    loaded = set(warehouse.read_table("pareto_summary")["month"].to_pylist())
    months = [m for m in months_between(first, last) if m in loaded]
    window = range(-FOLLOW_UP_MONTHS, FOLLOW_UP_MONTHS + 1)  # M-3 .. M+3
    around = sorted({add_months(m, k) for m in months for k in window} & loaded)
    tables = {
        "customer_call": [warehouse.read_table("customer_call", m) for m in months],
        "customer_segment": [
            warehouse.read_table("customer_segment", m)
            for m in sorted({add_months(m, -1) for m in months} | set(months))
            if m in loaded
        ],
        "customer_month": [warehouse.read_table("customer_month", m) for m in around],
    }
    con = connect(timezone)
    try:
        for name, parts in tables.items():
            con.register(f"{name}_rows", pa.concat_tables(parts) if parts else _empty(name))
            con.execute(f"create table {name} as select * from {name}_rows")
        run_sql(
            con,
            "backtest",
            create="judged",
            metric=metric,
            follow_up_months=FOLLOW_UP_MONTHS,
            leaving_below=LEAVING_BELOW,
            first=first,
            last=last,
            top=top,
            last_loaded=max(loaded) if loaded else first,
        )
        return con.sql("select * from judged order by month nulls last").to_arrow_table()
    finally:
        con.close()


def _empty(name: str) -> pa.Table:
    from pipeline.schema.tables import TABLES

    return TABLES[name].arrow_schema().empty_table()
