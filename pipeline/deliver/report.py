"""The month's report: one self-contained HTML page a manager opens (``tiers report``).

Built from the warehouse only (``read_table(name, month)`` of the month, the month before
and the five before that for the call list's history), so any loaded month can be drawn
again, from DuckDB or PostgreSQL. Charts are Vega-Lite specifications made with Altair and
drawn in the page by Vega-Embed, whose JavaScript (from vl-convert) is inlined with the
data: the page loads nothing from the network. The page is deterministic: the same
warehouse contents give the same bytes (no generation time stamp).

Where it goes: ``<runs.root>/<run_id>/month=YYYY-MM/report.html`` for the run's step
(``report_step``), ``<runs.root>/reports/YYYY-MM-<metric>.html`` when drawn again with
``tiers report``.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.backtest import FOLLOW_UP_MONTHS, TOP, judge
from pipeline.call_list import (
    Call,
    build_calls,
    history_months,
    last_payment_dates,
    read_history,
)
from pipeline.config import ALL_METRICS, Config, load_config
from pipeline.errors import ReportError
from pipeline.files import atomic_write
from pipeline.months import add_months, format_month, parse_month
from pipeline.schema import LOADED
from pipeline.storage import location

LIST_QUALITY_MONTHS = 3  # "How last quarter's list did": the lists of three months
CURVE_POINTS = 400  # points per curve in the page; the tables keep every customer
CLASSES = ("A", "B", "C")
TIER_NAMES = {
    1: "Tier 1: ideal, highly profitable",
    2: "Tier 2: good earners",
    3: "Tier 3: break-even, costly to serve",
    4: "Tier 4: money losers",
}
SECTIONS = (
    "headline",
    "pareto",
    "migration",
    "roster",
    "calls",
    "tiers",
    "overlap",
    "health",
)


def default_report_path(cfg: Config, month: date, metric: str) -> Path:
    """Where ``tiers report`` writes a month's page drawn again later."""
    return location(cfg.runs.root) / "reports" / f"{format_month(month)}-{metric}.html"


def report_step(cfg: Config | str | Path, month: str | date, run_id: str) -> dict[str, Any]:
    """The runner's step after ``load``: the month's report next to the run's files.

    A failed report does not touch the loaded month or its ``pipeline_run`` row."""
    from pipeline.runner import run_dir, update_run_state

    cfg = cfg if isinstance(cfg, Config) else load_config(cfg)
    month = parse_month(month)
    folder = run_dir(cfg, month, run_id)
    path, metric, _ = write_report(cfg, month, folder / "report.html", run_id=run_id)
    update_run_state(folder, report=str(path), report_metric=metric, report_not_drawn=None)
    return {"report": str(path), "month": format_month(month), "metric": metric, "drawn": True}


def report_not_drawn(
    cfg: Config | str | Path, month: str | date, run_id: str, why: str
) -> dict[str, Any]:
    """The report step of a run that does not draw the page (a backfill's earlier months):
    ``run.json`` names no report, not even one an earlier try of this run drew, whose
    figures would be from before this load."""
    from pipeline.runner import run_dir, update_run_state

    cfg = cfg if isinstance(cfg, Config) else load_config(cfg)
    month = parse_month(month)
    update_run_state(run_dir(cfg, month, run_id), report=None, report_not_drawn=why)
    return {"report": None, "month": format_month(month), "drawn": False, "why": why}


def write_report(
    cfg: Config,
    month: date,
    path: Path | None = None,
    *,
    metric: str | None = None,
    run_id: str | None = None,
) -> tuple[Path, str, str | None]:
    """Write the month's page (atomically); return its path, metric and the run it shows."""
    from pipeline.warehouse import open_warehouse

    warehouse = open_warehouse(cfg)
    try:
        data = collect(cfg, warehouse, month, metric=metric, run_id=run_id)
    finally:
        warehouse.close()
    path = location(path) if path else default_report_path(cfg, month, data.metric)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, render(data))
    return path, data.metric, data.run["run_id"] if data.run else None


def record_report(cfg: Config, month: date, metric: str, path: Path, run_id: str | None) -> None:
    """Note a page drawn again in the run folder of the run it shows, when that folder is on
    this machine (``run.json``: ``reports`` = {metric: path})."""
    from pipeline.runner import read_run_state, run_dir, update_run_state

    if run_id is None:
        return
    folder = run_dir(cfg, month, run_id)
    if not (folder / "run.json").exists():
        return
    reports = read_run_state(folder).get("reports", {}) | {metric: str(path)}
    update_run_state(folder, reports=reports)


# ---------------------------------------------------------------- what the page shows


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
    from pipeline.customers import attributes_by_customer, read_customers

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
        picked = _thin(list(range(n + 1)))
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
    return _thin(points)


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


def _thin(points: list[dict], limit: int = CURVE_POINTS) -> list[dict]:
    """At most ``limit`` points, evenly spaced, keeping the first and the last."""
    if len(points) <= limit:
        return points
    step = (len(points) - 1) / (limit - 1)
    return [points[round(i * step)] for i in range(limit)]


# ---------------------------------------------------------------- cost to serve

SERVICE_LIST_LIMIT = 15  # customers per list of the "Cost to serve" section
STRATEGIC_VALUES = ("true", "t", "yes", "y", "1")


def is_strategic(attributes: dict | None) -> bool:
    """The customers source's ``strategic`` attribute, as text (true, yes, 1) or a boolean."""
    value = (attributes or {}).get("strategic")
    return str(value).strip().lower() in STRATEGIC_VALUES if value is not None else False


def cost_to_serve(
    cfg: Config, warehouse, month: date, tier_rows: list[dict], customers
) -> dict | None:
    """The "Cost to serve" section's data (spec: "Service effort and cost to serve"), from
    the month's customer_service_profile, customer_service_kind and customer_tier rows of
    the tier window; None without a [service] source. Strategic customers are kept apart:
    they are listed in their own box, never among the customers to move away from."""
    if cfg.service is None:
        return None
    from pipeline.customers import attributes_by_customer

    profile = warehouse.read_table("customer_service_profile", month).to_pylist()
    kinds = warehouse.read_table("customer_service_kind", month).to_pylist()
    window = max((r["window_months"] for r in profile), default=None)
    profile = [r for r in profile if r["window_months"] == window]
    kinds = [r for r in kinds if r["window_months"] == window]
    tier_of = {r["customer_id"]: r for r in tier_rows}
    profile_of = {r["customer_id"]: r for r in profile}
    ids = set(profile_of) | set(tier_of)
    attributes = attributes_by_customer(customers, ids)
    strategic = {c for c in ids if is_strategic(attributes.get(c))}
    top_kinds: dict[str, list[dict]] = defaultdict(list)
    for r in sorted(kinds, key=lambda r: (r["customer_id"], r["kind_rank"])):
        if r["kind_rank"] <= 3:
            top_kinds[r["customer_id"]].append(r)

    def row(customer_id: str) -> dict:
        tier, prof = tier_of.get(customer_id, {}), profile_of.get(customer_id, {})
        found = attributes.get(customer_id, {})
        return {
            "customer_id": customer_id,
            "name": found.get("name"),
            "owner_email": found.get("owner_email"),
            "tier": tier.get("tier"),
            "revenue": tier.get("revenue", prof.get("revenue")),
            "margin": tier.get("margin"),
            "cost_to_serve": tier.get("cost_to_serve"),
            "loaded_margin": tier.get("loaded_margin"),
            "effort": prof.get("effort"),
            "effort_share": prof.get("effort_share"),
            "revenue_share": prof.get("revenue_share"),
            "profile": prof.get("profile"),
            "strategic": customer_id in strategic,
            "top_kinds": [(k["kind"], k["effort"]) for k in top_kinds.get(customer_id, [])],
        }

    troublesome = sorted(
        (row(c) for c, r in profile_of.items() if r["profile"] == "troublesome"),
        key=lambda r: (-(r["effort_share"] or 0), r["customer_id"]),
    )
    tier4 = sorted(
        (row(c) for c, r in tier_of.items() if r["tier"] == 4),
        key=lambda r: (-(r["cost_to_serve"] or 0), r["loaded_margin"] or 0, r["customer_id"]),
    )
    tier3 = [c for c, r in tier_of.items() if r["tier"] == 3 and c not in strategic]
    tier3_kinds: dict[str, list] = defaultdict(lambda: [0, Decimal(0), Decimal(0)])
    for r in kinds:
        if r["customer_id"] in tier3:
            entry = tier3_kinds[r["kind"]]
            entry[0] += r["activities"]
            entry[1] += r["effort"] or 0
            entry[2] += r["cost_to_serve"] or 0
    kept = [row(c) for c in sorted(strategic) if c in profile_of or c in tier_of]
    kept = [r for r in kept if r["tier"] in (3, 4) or r["profile"] == "troublesome"]
    has_loaded = any(r.get("loaded_margin") is not None for r in tier_rows)
    return {
        "window": window,
        "has_loaded": has_loaded,
        "total_effort": sum((r["effort"] for r in profile), Decimal(0)),
        "total_cost": sum((r["cost_to_serve"] or 0 for r in tier_rows), Decimal(0)),
        "troublesome": [r for r in troublesome if not r["strategic"]][:SERVICE_LIST_LIMIT],
        "n_troublesome": sum(1 for r in troublesome if not r["strategic"]),
        "tier4": [r for r in tier4 if not r["strategic"]][:SERVICE_LIST_LIMIT],
        "n_tier4": sum(1 for r in tier4 if not r["strategic"]),
        "tier3_customers": len(tier3),
        "tier3_kinds": sorted(
            (
                {"kind": k, "activities": v[0], "effort": v[1], "cost": v[2]}
                for k, v in tier3_kinds.items()
            ),
            key=lambda r: (-r["effort"], -r["cost"], r["kind"]),
        )[:5],
        "strategic": kept,
        "effort_curve": _cumulative(profile, "effort"),
        "profit_curve": _cumulative(tier_rows, "margin"),
        "loaded_whale": _loaded_whale(tier_rows) if has_loaded else [],
    }


def _loaded_whale(rows: list[dict]) -> list[dict]:
    """The whale curve on the loaded margin: customers ranked by it (highest first) against
    the cumulative loaded margin, in money (its total may well be negative once service
    costs are counted, so a share of it would turn the curve upside down)."""
    ranked = sorted(rows, key=lambda r: (-r["loaded_margin"], r["customer_id"]))
    if not ranked:
        return []
    points, running = [{"customers": 0.0, "profit": 0.0, "tier": None}], Decimal(0)
    for i, r in enumerate(ranked, start=1):
        running += r["loaded_margin"]
        points.append({"customers": i / len(ranked), "profit": float(running), "tier": r["tier"]})
    return _thin(points)


def _cumulative(rows: list[dict], key: str) -> list[dict]:
    """The Pareto curve of ``key`` over the customers with a positive one: the share of
    customers (ranked by it, highest first) against the cumulative share of its total."""
    values = sorted(
        ((r[key], r["customer_id"]) for r in rows if r[key] is not None and r[key] > 0),
        key=lambda v: (-v[0], v[1]),
    )
    total = sum((v for v, _ in values), Decimal(0))
    if not values:
        return []
    points, running = [{"customers": 0.0, "share": 0.0}], Decimal(0)
    for i, (value, _) in enumerate(values, start=1):
        running += value
        points.append({"customers": i / len(values), "share": float(running / total)})
    return _thin(points)


def service_charts(data: ReportData) -> dict:
    """The charts of "Cost to serve": the effort Pareto curve beside the profit curve, and
    the whale curve on the loaded margin; none without a [service] source."""
    import altair as alt

    if data.service is None:
        return {}
    service, charts = data.service, {}
    curves = [p | {"curve": "service effort"} for p in service["effort_curve"]]
    curves += [p | {"curve": "profit (margin)"} for p in service["profit_curve"]]
    if curves:
        charts["effort"] = _spec(
            alt.Chart(alt.Data(values=curves))
            .mark_line()
            .encode(
                x=alt.X(
                    "customers:Q",
                    title="share of customers (ranked by each)",
                    axis=alt.Axis(format="%"),
                ),
                y=alt.Y(
                    "share:Q",
                    title="cumulative share",
                    axis=alt.Axis(format="%"),
                    scale=alt.Scale(domain=[0, 1]),
                ),
                color=alt.Color(
                    "curve:N",
                    title=None,
                    scale=alt.Scale(
                        domain=["service effort", "profit (margin)"], range=["#c0392b", "#1f5fa8"]
                    ),
                ),
                tooltip=[
                    "curve:N",
                    alt.Tooltip("customers:Q", format=".1%"),
                    alt.Tooltip("share:Q", format=".1%"),
                ],
            ),
            520,
            300,
        )
    if service["loaded_whale"]:
        line = (
            alt.Chart(alt.Data(values=service["loaded_whale"]))
            .mark_line(color="#c0392b")
            .encode(
                x=alt.X(
                    "customers:Q",
                    title="share of customers (ranked by loaded margin)",
                    axis=alt.Axis(format="%"),
                ),
                y=alt.Y(
                    "profit:Q",
                    title=f"cumulative loaded margin ({data.currency})",
                    axis=alt.Axis(format=",.0f"),
                ),
                tooltip=[
                    alt.Tooltip("customers:Q", format=".1%"),
                    alt.Tooltip("profit:Q", format=",.2f"),
                ],
            )
        )
        rule = (
            alt.Chart(alt.Data(values=[{"y": 0.0}]))
            .mark_rule(strokeDash=[4, 4], color="#888")
            .encode(y="y:Q")
        )
        charts["loaded_whale"] = _spec(alt.layer(line, rule), 520, 280)
    return charts


# ---------------------------------------------------------------- charts (Vega-Lite)


def list_quality_chart(data: ReportData) -> dict:
    """Per judged month: the share of leaving customers among all alerts, the first 20 by
    value at stake and the first 20 by call_rank."""
    import altair as alt

    groups = (
        ("leaving_all", "all alerts"),
        ("leaving_top_stake", f"first {TOP} by value at stake"),
        ("leaving_top_call", f"first {TOP} by call_rank"),
    )
    values = [
        {"month": format_month(r["month"]), "list": label, "share": r[key]}
        for r in data.list_quality
        if r["month"] is not None
        for key, label in groups
        if r[key] is not None
    ]
    return _spec(
        alt.Chart(alt.Data(values=values))
        .mark_bar()
        .encode(
            x=alt.X("month:N", title="month of the list", axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("list:N", sort=[label for _, label in groups]),
            y=alt.Y(
                "share:Q",
                title="leaving 3 months later",
                axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[0, 1]),
            ),
            color=alt.Color(
                "list:N",
                sort=[label for _, label in groups],
                scale=alt.Scale(range=["#b0b0b0", "#f0a500", "#1f5fa8"]),
                legend=alt.Legend(title=None, orient="bottom"),
            ),
            tooltip=["month:N", "list:N", alt.Tooltip("share:Q", format=".0%")],
        ),
        420,
        220,
    )


def pareto_chart(data: ReportData) -> dict:
    import altair as alt

    curves = [
        {"window": f"{window} mo", "customers": customers, "cum_share": share}
        for window, pareto in sorted(data.pareto.items())
        for customers, share in pareto.curve
    ]
    bands = [
        {"band": "A", "low": 0.0, "high": data.a_share},
        {"band": "B", "low": data.a_share, "high": data.b_share},
        {"band": "C", "low": data.b_share, "high": 1.0},
    ]
    band_layer = (
        alt.Chart(alt.Data(values=bands))
        .mark_rect(opacity=0.12)
        .encode(
            y=alt.Y("low:Q"),
            y2="high:Q",
            color=alt.Color(
                "band:N",
                scale=alt.Scale(domain=list(CLASSES), range=["#2f7d32", "#f0a500", "#b0b0b0"]),
                legend=alt.Legend(title="class band"),
            ),
        )
    )
    lines = (
        alt.Chart(alt.Data(values=curves))
        .mark_line()
        .encode(
            x=alt.X(
                "customers:Q",
                title="share of customers (ranked by value)",
                axis=alt.Axis(format="%"),
            ),
            y=alt.Y(
                "cum_share:Q",
                title=f"cumulative share of {data.metric}",
                axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[0, 1]),
            ),
            color=alt.Color(
                "window:N",
                title="window",
                sort=[f"{w} mo" for w in sorted(data.pareto)],
                scale=alt.Scale(scheme="darkmulti"),
            ),
            tooltip=[
                "window:N",
                alt.Tooltip("customers:Q", format=".1%"),
                alt.Tooltip("cum_share:Q", format=".1%"),
            ],
        )
    )
    return _spec(alt.layer(band_layer, lines).resolve_scale(color="independent"), 520, 320)


def whale_chart(data: ReportData) -> dict:
    import altair as alt

    line = (
        alt.Chart(alt.Data(values=data.whale))
        .mark_line(color="#1f5fa8")
        .encode(
            x=alt.X(
                "customers:Q",
                title="share of customers (ranked by profit)",
                axis=alt.Axis(format="%"),
            ),
            y=alt.Y(
                "profit:Q", title="cumulative share of total profit", axis=alt.Axis(format="%")
            ),
            tooltip=[
                alt.Tooltip("customers:Q", format=".1%"),
                alt.Tooltip("profit:Q", format=".1%"),
            ],
        )
    )
    rule = (
        alt.Chart(alt.Data(values=[{"y": 1.0}]))
        .mark_rule(strokeDash=[4, 4], color="#888")
        .encode(y="y:Q")
    )
    return _spec(alt.layer(line, rule), 520, 280)


def tier_chart(data: ReportData) -> dict:
    import altair as alt

    values = [
        {"tier": f"Tier {t['tier']}", "measure": measure, "amount": float(t[measure])}
        for t in data.tiers
        for measure in ("revenue", "margin")
    ]
    chart = (
        alt.Chart(alt.Data(values=values))
        .mark_bar()
        .encode(
            x=alt.X("tier:N", title=None, axis=alt.Axis(labelAngle=0)),
            xOffset="measure:N",
            y=alt.Y("amount:Q", title=data.currency),
            color=alt.Color("measure:N", scale=alt.Scale(range=["#1f5fa8", "#2f7d32"])),
            tooltip=["tier:N", "measure:N", alt.Tooltip("amount:Q", format=",.2f")],
        )
    )
    return _spec(chart, 360, 240)


def overlap_chart(data: ReportData) -> dict:
    import altair as alt

    values = [
        {"a": r["metric_a"], "b": r["metric_b"], "jaccard": r["jaccard"]}
        for r in data.overlap
        if r["jaccard"] is not None
    ]
    base = alt.Chart(alt.Data(values=values)).encode(
        x=alt.X("a:N", sort=list(ALL_METRICS), title=None, axis=alt.Axis(labelAngle=0)),
        y=alt.Y("b:N", sort=list(ALL_METRICS), title=None),
    )
    heat = base.mark_rect().encode(
        color=alt.Color("jaccard:Q", scale=alt.Scale(domain=[0, 1], scheme="blues"))
    )
    text = base.mark_text(fontSize=13).encode(text=alt.Text("jaccard:Q", format=".2f"))
    return _spec(alt.layer(heat, text), 260, 200)


def _spec(chart, width: int, height: int) -> dict:
    spec = chart.properties(width=width, height=height).to_dict()
    spec.pop("$schema", None)  # nothing in the page points at the network
    return spec


_VEGA_BUNDLE: list[str] = []  # made once per process (seconds: vl-convert bundles it)


def vega_bundle() -> str:
    """Vega, Vega-Lite and Vega-Embed as one script, for the Vega-Lite version Altair
    writes (it exposes ``vegaEmbed`` on ``window``)."""
    if not _VEGA_BUNDLE:
        import altair as alt
        import vl_convert as vlc

        version = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
        bundle = vlc.javascript_bundle(vl_version=version)
        _VEGA_BUNDLE.append(bundle.replace("</script", "<\\/script"))
    return _VEGA_BUNDLE[0]


def set_vega_bundle(bundle: str) -> None:
    """Use ``bundle`` (``vega_bundle()`` of another process of this installation): the
    Airflow scheduler gets it from a child process (``pipeline.preload``)."""
    _VEGA_BUNDLE[:] = [bundle]


# ---------------------------------------------------------------- the page


def _script_json(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def template_environment(**options: Any):
    """Jinja2 over ``pipeline/templates/`` (the report and the call-list mails): HTML
    escaped, a missing variable is an error, not an empty string."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("pipeline", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        **options,
    )


def render(data: ReportData) -> str:
    env = template_environment(keep_trailing_newline=True)
    integer = data.metric in ("payments", "units")
    env.filters |= {
        "money": lambda v: _money(v),
        "value": lambda v: _value(v, integer),
        "signed_value": lambda v: _signed(v, integer),
        "pct": lambda v, digits=1: "—" if v is None else f"{100 * v:.{digits}f} %",
        "points": lambda v: "—" if v is None else f"{100 * v:+.1f} pts",
        "ratio": lambda v: "—" if v is None else f"{v:.3f}",
        "signed_ratio": lambda v: "—" if v is None else f"{v:+.3f}",
        "count": lambda v: "—" if v is None else f"{v:,}",
        "signed_count": lambda v: "—" if v is None else f"{v:+,}",
        "month": format_month,
        "spark": _sparkline,
        "exact": lambda v: "" if v is None else str(v),
    }
    charts = {
        "pareto": pareto_chart(data),
        "whale": whale_chart(data) if data.whale else None,
        "tiers": tier_chart(data) if data.tier_window else None,
        "overlap": overlap_chart(data) if data.overlap else None,
        "list_quality": list_quality_chart(data) if len(data.list_quality) > 1 else None,
        **service_charts(data),
    }
    template = env.get_template("report.html.j2")
    return template.render(
        d=data,
        classes=CLASSES,
        migration_from=[*CLASSES, "new"],
        migration_to=[*CLASSES, "lost"],
        unit=data.currency if not integer else data.metric,
        charts={k: _script_json(v) for k, v in charts.items() if v is not None},
        vega_bundle=vega_bundle(),
        sections=SECTIONS,
    )


def _money(value) -> str:
    return "—" if value is None else f"{Decimal(value):,.2f}"


def _value(value, integer: bool) -> str:
    if value is None:
        return "—"
    return f"{int(value):,}" if integer else f"{Decimal(value):,.2f}"


def _signed(value, integer: bool) -> str:
    if value is None:
        return "—"
    return f"{int(value):+,}" if integer else f"{Decimal(value):+,.2f}"


_BLOCKS = "▁▂▃▄▅▆▇█"


def _sparkline(values: list[Decimal]) -> str:
    """Six months as block characters, the lowest value (or 0) at the bottom."""
    low = min([Decimal(0), *values])
    high = max(values, default=Decimal(0))
    if high == low:
        return _BLOCKS[0] * len(values)
    return "".join(
        _BLOCKS[min(len(_BLOCKS) - 1, math.floor((v - low) / (high - low) * len(_BLOCKS)))]
        for v in values
    )
