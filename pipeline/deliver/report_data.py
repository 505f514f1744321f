"""What the month's report shows, collected from the warehouse only (``collect``).

``read_table(name, month)`` of the month, the month before and the five before that for the
call list's history, so any loaded month can be drawn again, from DuckDB or PostgreSQL.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import Config
from pipeline.deliver.backtest import FOLLOW_UP_MONTHS, judge
from pipeline.deliver.call_list import (
    Call,
    build_calls,
    history_months,
    last_payment_dates,
    read_history,
)
from pipeline.deliver.report_service import cost_to_serve, thin
from pipeline.errors import ReportError
from pipeline.months import add_months, format_month
from pipeline.schema.inputs import ALL_METRICS
from pipeline.schema.tables import LOADED

LIST_QUALITY_MONTHS = 3  # "How last quarter's list did": the lists of three months
CLASSES = ("A", "B", "C")
TIER_NAMES = {
    1: "Tier 1: ideal, highly profitable",
    2: "Tier 2: good earners",
    3: "Tier 3: break-even, costly to serve",
    4: "Tier 4: money losers",
}


@dataclass
class ReportData:
    month: date
    previous: date
    metric: str
    metrics: list[str]
    window: int  # of the headline and the migration: 1 unless not configured
    currency: str
    headline: list[dict]
    pareto: dict[int, Pareto]  # window -> its curve and class counts
    a_share: float
    b_share: float
    migration_counts: dict[tuple[str, str], int]
    migration_values: dict[tuple[str, str], Decimal]
    roster_added: list[dict]
    roster_removed: list[dict]
    roster_missed: list[dict]
    roster_size: int
    has_attributes: bool  # a customer attributes source is configured
    calls: list[Call]
    history: list[date]
    tier_window: int | None
    tiers: list[dict]
    whale: list[dict]
    overlap: list[dict]
    run: dict | None
    gates: list[dict]
    # "Cost to serve" (a [service] source; None without one: the page is as before)
    service: dict | None = None
    # "How last quarter's list did": tiers backtest of the lists of M-5 .. M-3, whose 3
    # months after are loaded by M (the judged months, then the overall row)
    list_quality: list[dict] = field(default_factory=list)
    list_quality_months: tuple[date, date] | None = None


def choose_metric(cfg: Config, available: list[str], metric: str | None) -> str:
    if metric is None:
        metric = cfg.report.metric or (
            cfg.segmentation.metrics[0] if cfg.segmentation.metrics else None
        )
    if metric is None:
        metric = next((m for m in ALL_METRICS if m in available), "revenue")
    if metric not in available:
        raise ReportError(
            f"metric {metric!r} has no results in this month; available: {available or 'none'}"
        )
    return metric


def collect(
    cfg: Config, warehouse, month: date, *, metric: str | None = None, run_id: str | None = None
) -> ReportData:
    from pipeline.sources.customers import attributes_by_customer, read_customers

    previous = add_months(month, -1)
    summary = warehouse.read_table("pareto_summary", month).to_pylist()
    if not summary:
        runs = warehouse.read_table("pipeline_run", month).to_pylist()
        hint = f" (its last run {runs[-1]['run_id']} is {runs[-1]['status']})" if runs else ""
        raise ReportError(
            f"month {format_month(month)} is not loaded in the warehouse{hint}: "
            f"run `tiers run --month {format_month(month)}` first"
        )
    available = [m for m in ALL_METRICS if any(r["metric"] == m for r in summary)]
    metric = choose_metric(cfg, available, metric)
    # the month on its own: window 1, unless the configuration has no such window
    window = min(r["window_months"] for r in summary if r["metric"] == metric)
    summary_before = warehouse.read_table("pareto_summary", previous).to_pylist()

    def pick(rows: list[dict], **where) -> list[dict]:
        return [r for r in rows if all(r[k] == v for k, v in where.items())]

    def of_metric(name: str, of_month: date) -> pa.Table:
        """The month's rows of the report's metric, in the table's order, kept in Arrow
        (a 1M month's customer_abc holds 1.5M rows: only what the page shows becomes
        Python rows)."""
        table = warehouse.read_table(name, of_month)
        return table.filter(pc.equal(table["metric"], metric))

    abc = of_metric("customer_abc", month)
    abc_before = of_metric("customer_abc", previous)
    segments = of_metric("customer_segment", month)
    segments_before = of_metric("customer_segment", previous)
    roster = of_metric("vip_roster", month).to_pylist()
    changes = of_metric("vip_roster_change", month).to_pylist()
    alerts = warehouse.read_table("customer_alert", month)
    history = read_history(warehouse, month)
    tiers = warehouse.read_table("customer_tier", month).to_pylist()
    overlap = warehouse.read_table("criteria_overlap", month).to_pylist()
    runs = warehouse.read_table("pipeline_run", month).to_pylist()

    customers = read_customers(cfg)
    alert_ids = {r["customer_id"] for r in alerts.to_pylist() if r["metric"] == metric}
    roster_ids = {r["customer_id"] for r in changes} | {
        r["customer_id"] for r in roster if r["missed_by_period_method"]
    }
    attributes = attributes_by_customer(customers, alert_ids | roster_ids)
    last_paid = last_payment_dates(cfg.lake.root, month, alert_ids, cfg.business.timezone)
    scores = warehouse.read_table("customer_call", month)
    calls = build_calls(month, metric, alerts, history, last_paid, attributes, scores)

    headline = _headline(
        pick(summary, metric=metric, window_months=window),
        pick(summary_before, metric=metric, window_months=window),
        _vips(segments),
        _vips(segments_before),
        sum(c.priority == "call" for c in calls),  # the watch rows are no calls to make
    )
    counts, values = _migration(_of_window(abc, window), _of_window(abc_before, window))
    named_ids = pa.array(sorted(roster_ids), pa.string())
    named_segments = segments.filter(pc.is_in(segments["customer_id"], named_ids))
    value_of = dict(
        zip(
            named_segments["customer_id"].to_pylist(),
            named_segments["value"].to_pylist(),
            strict=True,
        )
    )

    def named(rows: list[dict], **extra) -> list[dict]:
        """With name, owner and value in M; the most valuable first."""
        out = []

        def most_valuable(r: dict) -> tuple:
            value = value_of.get(r["customer_id"])
            return (value is None, -(value or 0), r["customer_id"])

        for r in sorted(rows, key=most_valuable):
            found = attributes.get(r["customer_id"], {})
            out.append(
                r
                | {"name": found.get("name"), "owner_email": found.get("owner_email")}
                | {"value": value_of.get(r["customer_id"])}
                | extra
            )
        return out

    tier_window = max((r["window_months"] for r in tiers), default=None)
    tier_rows = [r for r in tiers if r["window_months"] == tier_window]
    chosen_run = _chosen_run(runs, run_id)
    return ReportData(
        month=month,
        previous=previous,
        metric=metric,
        metrics=available,
        window=window,
        currency=cfg.business.currency,
        headline=headline,
        pareto=_pareto(abc),
        a_share=float(cfg.segmentation.a_share),
        b_share=float(cfg.segmentation.b_share),
        migration_counts=counts,
        migration_values=values,
        roster_added=named([r for r in changes if r["change"] == "added"]),
        roster_removed=named([r for r in changes if r["change"] == "removed"]),
        roster_missed=named([r for r in roster if r["missed_by_period_method"]]),
        roster_size=len(roster),
        has_attributes=customers is not None,
        calls=calls,
        history=history_months(month),
        tier_window=tier_window,
        tiers=_tier_summary(tier_rows),
        whale=_whale_curve(tier_rows),
        overlap=sorted(
            overlap,
            key=lambda r: (ALL_METRICS.index(r["metric_a"]), ALL_METRICS.index(r["metric_b"])),
        ),
        run=chosen_run,
        gates=_gates(chosen_run),
        service=cost_to_serve(cfg, warehouse, month, tier_rows, customers),
        list_quality=judge(
            warehouse,
            cfg.business.timezone,
            add_months(month, -LIST_QUALITY_MONTHS - FOLLOW_UP_MONTHS + 1),
            add_months(month, -FOLLOW_UP_MONTHS),
            metric,
        ).to_pylist(),
        list_quality_months=(
            add_months(month, -LIST_QUALITY_MONTHS - FOLLOW_UP_MONTHS + 1),
            add_months(month, -FOLLOW_UP_MONTHS),
        ),
    )


def _vips(segments: pa.Table) -> int:
    return pc.sum(pc.equal(segments["segment"], "vip")).as_py() or 0


def _headline(now: list[dict], before: list[dict], n_vip, n_vip_before, n_calls) -> list:
    (current,) = now
    prior = before[0] if before else None
    n_vip_before = n_vip_before if prior else None

    def figure(key, label, kind, value, old):
        change = None if old is None or value is None else value - old
        return {"key": key, "label": label, "kind": kind, "value": value, "change": change}

    get = (lambda k: prior[k]) if prior else (lambda k: None)
    return [
        figure("customers", "customers", "count", current["n_customers"], get("n_customers")),
        figure("value", "value", "value", current["total_value"], get("total_value")),
        figure("top20", "top-20 % share", "share", current["top20_share"], get("top20_share")),
        figure("gini", "gini", "ratio", current["gini"], get("gini")),
        figure("vips", "VIPs", "count", n_vip, n_vip_before),
        figure("calls", "calls to make", "count", n_calls, None),
    ]


@dataclass(frozen=True)
class Pareto:
    """One window's Pareto curve as the page shows it: its customers, how many of them
    are in each class, and the curve thinned to CURVE_POINTS points (from the origin)."""

    customers: int
    classes: dict[str, int]
    curve: list[tuple[float, float]]  # (share of customers, cumulative share)


def _of_window(abc: pa.Table, window: int) -> pa.Table:
    return abc.filter(pc.equal(abc["window_months"], window))


def _pareto(abc: pa.Table) -> dict[int, Pareto]:
    """Per window, from the month's customer_abc rows of the metric: counted and thinned
    in Arrow (a 1M-payment month ranks 100k customers per window)."""
    out = {}
    for window in sorted(set(abc["window_months"].to_pylist())):
        rows = _of_window(abc, window).sort_by("rank")
        n = rows.num_rows
        classes = Counter(rows["abc_class"].to_pylist())
        # point 0 is the origin, point k the customer of rank k (as _thin spaces them)
        picked = thin(list(range(n + 1)))
        taken = [k - 1 for k in picked if k > 0]
        ranks = rows["rank"].take(taken).to_pylist()
        shares = rows["cum_share"].take(taken).to_pylist()
        curve = [(0.0, 0.0)] if picked[0] == 0 else []
        curve += [(rank / n, share) for rank, share in zip(ranks, shares, strict=True)]
        out[window] = Pareto(n, {c: classes.get(c, 0) for c in CLASSES}, curve)
    return out


def _migration(now_table: pa.Table, before_table: pa.Table):
    """Class of M-1 -> class of M (shortest window); 'new' and 'lost' for customers ranked in
    only one of them. Value: the customer's value in M (in M-1 for the lost)."""
    columns = ["customer_id", "abc_class", "value"]
    now = now_table.select(columns).to_pylist()
    before = before_table.select(columns).to_pylist()
    cur = {r["customer_id"]: r for r in now}
    old = {r["customer_id"]: r for r in before}
    counts: Counter = Counter()
    values: dict[tuple[str, str], Decimal] = defaultdict(lambda: Decimal(0))
    for customer in sorted(cur.keys() | old.keys()):
        src = old[customer]["abc_class"] if customer in old else "new"
        dst = cur[customer]["abc_class"] if customer in cur else "lost"
        counts[(src, dst)] += 1
        values[(src, dst)] += (cur.get(customer) or old[customer])["value"]
    return dict(counts), dict(values)


def _tier_summary(rows: list[dict]) -> list[dict]:
    out = []
    for tier in (1, 2, 3, 4):
        members = [r for r in rows if r["tier"] == tier]
        revenue = sum((r["revenue"] for r in members), Decimal(0))
        margin = sum((r["margin"] for r in members), Decimal(0))
        out.append(
            {
                "tier": tier,
                "label": TIER_NAMES[tier],
                "customers": len(members),
                "revenue": revenue,
                "margin": margin,
                "margin_pct": float(margin / revenue) if revenue > 0 else None,
            }
        )
    return out


def _whale_curve(rows: list[dict]) -> list[dict]:
    """Cumulative profit of customers ranked by margin (highest first), as a share of the
    total profit; it rises above 100 % and falls back as the money losers come in."""
    ranked = sorted(rows, key=lambda r: (-r["margin"], r["customer_id"]))
    total = sum((r["margin"] for r in ranked), Decimal(0))
    if not ranked or total == 0:
        return []
    points, running = [{"customers": 0.0, "profit": 0.0, "tier": None}], Decimal(0)
    for i, r in enumerate(ranked, start=1):
        running += r["margin"]
        points.append(
            {"customers": i / len(ranked), "profit": float(running / total), "tier": r["tier"]}
        )
    return thin(points)


def _chosen_run(runs: list[dict], run_id: str | None) -> dict | None:
    if run_id is not None:
        match = [r for r in runs if r["run_id"] == run_id]
        if match:
            return match[0]
    loaded = [r for r in runs if r["status"] in LOADED]
    return max(loaded, key=lambda r: (r["finished_at"], r["run_id"])) if loaded else None


def _gates(run: dict | None) -> list[dict]:
    if not run or not run.get("check_results"):
        return []
    results = run["check_results"]
    results = json.loads(results) if isinstance(results, str) else results
    gates = []
    # in the order the pipeline runs them (a jsonb column does not keep the keys' order)
    for name, gate in sorted(results.items(), key=lambda item: _gate_order(item[0])):
        failing = [r["check"] for r in gate.get("results", []) if not r.get("success", True)]
        gates.append(
            {
                "gate": name,
                "passed": gate.get("passed"),
                "n_passed": gate.get("n_passed", 0),
                "n_failed": gate.get("n_failed", 0),
                "n_warned": gate.get("n_warned", 0),
                "failing": failing,
            }
        )
    return gates


GATE_ORDER = ("raw", "customer_month", "outputs", "before_load")


def _gate_order(name: str) -> tuple[int, str]:
    return (GATE_ORDER.index(name) if name in GATE_ORDER else len(GATE_ORDER), name)
