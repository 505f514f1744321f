"""The report's "Cost to serve" section, from the warehouse (a [service] source only), and
the thinning of the page's curves that every section shares."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal

from pipeline.config import Config

CURVE_POINTS = 400  # points per curve in the page; the tables keep every customer


def thin(points: list[dict], limit: int = CURVE_POINTS) -> list[dict]:
    """At most ``limit`` points, evenly spaced, keeping the first and the last."""
    if len(points) <= limit:
        return points
    step = (len(points) - 1) / (limit - 1)
    return [points[round(i * step)] for i in range(limit)]


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
    from pipeline.sources.customers import attributes_by_customer

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
    return thin(points)


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
    return thin(points)
