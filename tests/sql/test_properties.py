"""Invariants of the segmentation on random payment sets (hypothesis)."""

from __future__ import annotations

import math
import tempfile
from collections import defaultdict
from datetime import date
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.compute.month import compute_month

from support import extracted

MONTHS = ["2026-01", "2026-02", "2026-03"]
MARCH = date(2026, 3, 1)

payment = st.tuples(
    st.integers(0, 14),  # customer
    st.sampled_from(MONTHS),
    st.integers(1, 28),  # day
    st.one_of(
        st.decimals(min_value=Decimal("0.01"), max_value=Decimal("5000"), places=2),
        st.decimals(min_value=Decimal("-300"), max_value=Decimal("-0.01"), places=2),
        st.sampled_from([Decimal("100.00"), Decimal("50.00")]),  # ties
    ),
)


def run(payments) -> dict:
    rows = [
        (f"p{i}", f"c{customer:02d}", f"{month}-{day:02d}", f"{amount:.2f}", "EUR")
        for i, (customer, month, day, amount) in enumerate(payments)
    ]
    with tempfile.TemporaryDirectory() as folder:
        accept = {"accept": MONTHS}  # a month without payments is part of the search space
        cfg = extracted(
            Path(folder), rows, MONTHS, history_start="2026-01", **{"checks.volume": accept}
        )
        first, second = compute_month(cfg, MARCH), compute_month(cfg, MARCH)
    for name in first:  # running a month twice gives identical tables
        assert first[name].equals(second[name]), name
    return first


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(payment, min_size=1, max_size=60))
def test_segmentation_invariants(payments) -> None:
    tables = run(payments)
    abc = tables["customer_abc"].to_pylist()
    groups = defaultdict(list)
    for row in abc:
        groups[(row["metric"], row["window_months"])].append(row)

    for (metric, window), rows in groups.items():
        rows.sort(key=lambda r: r["rank"])
        assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
        assert all(r["value"] > 0 for r in rows)
        assert math.isclose(sum(r["share"] for r in rows), 1.0, abs_tol=1e-9)
        cum = [r["cum_share"] for r in rows]
        assert all(b >= a for a, b in zip(cum, cum[1:], strict=False))
        assert math.isclose(cum[-1], 1.0, abs_tol=1e-9)
        assert rows[0]["abc_class"] == "A"  # A is never empty
        classes = [r["abc_class"] for r in rows]
        assert classes == sorted(classes)  # A before B before C along the ranking
        values = [r["value"] for r in rows]
        assert values == sorted(values, reverse=True)
        summary = [
            s
            for s in tables["pareto_summary"].to_pylist()
            if (s["metric"], s["window_months"]) == (metric, window)
        ]
        assert len(summary) == 1
        assert summary[0]["total_value"] == sum(values)  # exact
        assert 0 <= summary[0]["gini"] < 1
        assert summary[0]["n_class_a"] + summary[0]["n_class_b"] + summary[0]["n_class_c"] == len(
            rows
        )

    month_rows = tables["customer_month"].to_pylist()
    positive_revenue = sum(r["revenue"] for r in month_rows if r["revenue"] > 0)
    revenue_by_class = defaultdict(Decimal)
    for row in groups.get(("revenue", 1), []):
        revenue_by_class[row["abc_class"]] += row["value"]
    assert sum(revenue_by_class.values(), Decimal(0)) == positive_revenue

    segments = tables["customer_segment"].to_pylist()
    for metric in {"revenue", "payments"}:
        population = [r for r in groups.get((metric, 1), [])]
        segmented = [s for s in segments if s["metric"] == metric]
        # every customer of the population has exactly one segment
        assert sorted(s["customer_id"] for s in segmented) == sorted(
            r["customer_id"] for r in population
        )
        n = len(population)
        vips = [s for s in segmented if s["segment"] == "vip"]
        assert len(vips) == math.ceil(Decimal("0.20") * n)
        assert sorted(s["rank"] for s in vips) == list(range(1, len(vips) + 1))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(payment, min_size=1, max_size=40))
def test_roster_and_alerts_are_consistent(payments) -> None:
    tables = run(payments)
    for roster in tables["vip_roster"].to_pylist():
        assert 1 <= roster["months_as_vip"] <= 3  # only three months of history
        assert roster["first_vip_month"] <= roster["last_vip_month"] <= MARCH
    segments = {(s["metric"], s["customer_id"]): s for s in tables["customer_segment"].to_pylist()}
    roster = {(r["metric"], r["customer_id"]): r for r in tables["vip_roster"].to_pylist()}
    for key, segment in segments.items():
        if segment["segment"] == "vip":
            assert roster[key]["is_vip_this_month"]
    for alert in tables["customer_alert"].to_pylist():
        key = (alert["metric"], alert["customer_id"])
        if alert["alert"] == "vip_stopped_paying":
            assert key not in segments
        if alert["alert"] == "vip_dropped":
            assert segments[key]["movement"] == "dropped_vip"
            assert segments[key]["segment"] == "good"
