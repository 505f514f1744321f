"""The month's call list: every alert of a metric with what the caller needs to know.

One row per ``customer_alert`` row of (month, metric): the customer's value in each of the
last six months, the last payment date, the value at stake and, where the customer
attributes source knows them, name and owner. The value at stake is the customer's
value over those six months (the relationship the call protects). The order, the risk and
the priority (call or watch) are ``customer_call``'s (sql/customer_call.sql), the one place
that the report, the mail and BI read; a month loaded before that table existed keeps the
first order (value at stake descending).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.months import add_months

SPARK_MONTHS = 6
ALERT_LABELS = {
    "vip_stopped_paying": "VIP stopped paying",
    "vip_dropped": "dropped out of VIP",
    "margin_erosion": "margin erosion",
}


@dataclass
class Call:
    customer_id: str
    alert: str
    detail: str
    metric: str
    last_months: list[tuple[date, Decimal]]  # oldest first, 0 where the customer did not pay
    last_payment: date | None
    value_at_stake: Decimal
    name: str | None = None
    owner_email: str | None = None
    attributes: dict[str, str | None] = field(default_factory=dict)
    # from customer_call (None for a month loaded before it existed)
    call_rank: int | None = None
    priority: str = "call"
    p_alive: float | None = None
    value_at_risk: Decimal | None = None
    call_reason: str | None = None

    @property
    def alert_label(self) -> str:
        return ALERT_LABELS.get(self.alert, self.alert)


def history_months(month: date) -> list[date]:
    """The months of the call list's history, oldest first (M-5 .. M)."""
    return [add_months(month, -i) for i in range(SPARK_MONTHS - 1, -1, -1)]


def build_calls(
    month: date,
    metric: str,
    alerts: pa.Table,
    history: dict[date, pa.Table],
    last_payments: dict[str, date],
    attributes: dict[str, dict],
    scores: pa.Table | None = None,
) -> list[Call]:
    """The call list of ``month`` from its ``customer_alert`` rows, their ``customer_call``
    rows (``scores``) and ``customer_month`` of the six months ending with it (``history``:
    month -> rows, missing months empty), in call_rank order."""
    rows = [r for r in alerts.to_pylist() if r["metric"] == metric and r["month"] == month]
    scored = {
        (r["customer_id"], r["alert"]): r
        for r in (scores.to_pylist() if scores is not None else [])
        if r["metric"] == metric and r["month"] == month
    }
    wanted = {r["customer_id"] for r in rows}
    column = metric  # customer_month has a column of each metric's name
    values: dict[str, dict[date, Decimal]] = {c: {} for c in wanted}
    wanted_ids = pa.array(sorted(wanted), pa.string())
    for m, table in history.items():
        # the alerted customers' rows only, filtered in Arrow (a month ranks 100k customers)
        theirs = table.filter(pc.is_in(table["customer_id"], value_set=wanted_ids))
        for r in theirs.select(["customer_id", column]).to_pylist():
            if r[column] is not None:
                values[r["customer_id"]][m] = Decimal(r[column])
    calls = []
    for r in rows:
        by_month = values[r["customer_id"]]
        last = [(m, by_month.get(m, Decimal(0))) for m in history_months(month)]
        found = attributes.get(r["customer_id"], {})
        score = scored.get((r["customer_id"], r["alert"]), {})
        calls.append(
            Call(
                customer_id=r["customer_id"],
                alert=r["alert"],
                detail=r["detail"] or "",
                metric=metric,
                last_months=last,
                last_payment=last_payments.get(r["customer_id"]),
                value_at_stake=sum((v for _, v in last), Decimal(0)),
                name=found.get("name"),
                owner_email=found.get("owner_email"),
                attributes={
                    k: v
                    for k, v in found.items()
                    if k not in ("customer_id", "name", "owner_email")
                },
                call_rank=score.get("call_rank"),
                priority=score.get("priority") or "call",
                p_alive=score.get("p_alive"),
                value_at_risk=score.get("value_at_risk"),
                call_reason=score.get("call_reason"),
            )
        )
    if scored:
        calls.sort(key=lambda c: (c.call_rank is None, c.call_rank or 0, c.customer_id, c.alert))
    else:
        calls.sort(key=lambda c: (-c.value_at_stake, c.customer_id, c.alert))
    return calls


def read_history(warehouse, month: date) -> dict[date, pa.Table]:
    """``customer_month`` of the six months ending with ``month`` (one read per month)."""
    return {m: warehouse.read_table("customer_month", m) for m in history_months(month)}


def last_payment_dates(
    lake_root: Path, month: date, customers: set[str], timezone: str
) -> dict[str, date]:
    """The business-zone date of each customer's last payment in M-1 .. M, from the lake.

    Every alerted customer paid in M-1 or M (a VIP of M-1 paid in M-1). Months missing from
    the lake on this machine (a report drawn elsewhere) give no date.
    """
    from pipeline.errors import MissingMonthError
    from pipeline.lake.partition import read_month

    zone = ZoneInfo(timezone)
    wanted = pa.array(sorted(customers), pa.string())
    latest: dict[str, date] = {}
    for m in (add_months(month, -1), month):
        try:
            payments = read_month(lake_root, m).select(["customer_id", "paid_at"])
        except (MissingMonthError, FileNotFoundError):
            continue
        # the latest payment of each customer asked for, in Arrow (a month holds millions of
        # payments, a few thousand customers are asked for); a later instant is never an
        # earlier date in the zone, so the date of the latest is the latest date
        theirs = payments.filter(pc.is_in(payments["customer_id"], value_set=wanted))
        grouped = theirs.group_by("customer_id").aggregate([("paid_at", "max")])
        for customer, paid_at in zip(
            grouped["customer_id"].to_pylist(), grouped["paid_at_max"].to_pylist(), strict=True
        ):
            day = paid_at.astimezone(zone).date()
            if customer not in latest or day > latest[customer]:
                latest[customer] = day
    return latest
