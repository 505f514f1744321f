"""Hand-computed edge cases of the segmentation SQL (spec: ../shared/spec/segmentation.md)."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import duckdb
import pytest

from pipeline.compute.month import compute_month
from pipeline.errors import ComputeError, MissingMonthError
from pipeline.lake.extract import extract
from pipeline.lake.partition import partition_dir
from pipeline.months import months_between, parse_month

from support import csv_config, extracted, write_payments

JAN, FEB, MAR = date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)


def rows_of(tables, name, **where):
    return [r for r in tables[name].to_pylist() if all(r[k] == v for k, v in where.items())]


def by_customer(rows):
    return {r["customer_id"]: r for r in rows}


def test_a_month_with_one_paying_customer(tmp_path) -> None:
    cfg = extracted(tmp_path, [("p1", "solo", "2026-01-10", "42.00", "EUR")], ["2026-01"])
    tables = compute_month(cfg, JAN)
    (abc,) = rows_of(tables, "customer_abc", metric="revenue", window_months=1)
    assert (abc["rank"], abc["share"], abc["cum_share"], abc["abc_class"]) == (1, 1.0, 1.0, "A")
    assert abc["xyz_class"] is None  # only the 12-month rows carry XYZ
    (twelve,) = rows_of(tables, "customer_abc", metric="revenue", window_months=12)
    assert twelve["xyz_class"] == "Z"  # one month of twelve: cv = sqrt(11)
    (segment,) = rows_of(tables, "customer_segment", metric="revenue")
    assert (segment["segment"], segment["movement"]) == ("vip", None)  # first month: unknown
    (summary,) = rows_of(tables, "pareto_summary", metric="revenue", window_months=1)
    assert summary["n_customers"] == 1
    assert summary["total_value"] == Decimal("42.00")
    assert (summary["gini"], summary["hhi"], summary["top1_share"], summary["top20_share"]) == (
        0.0,
        1.0,
        1.0,
        1.0,
    )
    assert (summary["n_class_a"], summary["n_class_b"], summary["n_class_c"]) == (1, 0, 0)
    assert rows_of(tables, "customer_alert") == []
    assert rows_of(tables, "vip_roster_change") == []


def test_all_customers_tied(tmp_path) -> None:
    rows = [(f"p{i}", f"c{i}", "2026-01-10", "10.00", "EUR") for i in range(1, 6)]
    cfg = extracted(tmp_path, rows, ["2026-01"])
    tables = compute_month(cfg, JAN)
    abc = by_customer(rows_of(tables, "customer_abc", metric="revenue", window_months=1))
    assert [abc[f"c{i}"]["rank"] for i in range(1, 6)] == [1, 2, 3, 4, 5]  # customer_id breaks ties
    # cum_value_before 0, 10, 20, 30 < 0.8 x 50 = 40 -> A; 40 < 47.5 -> B
    assert [abc[f"c{i}"]["abc_class"] for i in range(1, 6)] == ["A", "A", "A", "A", "B"]
    segments = by_customer(rows_of(tables, "customer_segment", metric="revenue"))
    # k_vip = ceil(0.2 x 5) = 1, k_good = ceil(0.2 x 4) = 1
    assert [segments[f"c{i}"]["segment"] for i in range(1, 6)] == [
        "vip",
        "good",
        "regular",
        "regular",
        "regular",
    ]
    (summary,) = rows_of(tables, "pareto_summary", metric="revenue", window_months=1)
    assert summary["gini"] == pytest.approx(0.0, abs=1e-12)
    assert summary["hhi"] == pytest.approx(0.2, abs=1e-12)
    assert summary["top20_share"] == pytest.approx(0.2, abs=1e-12)


def test_a_month_that_nets_to_zero_and_a_refund_larger_than_the_payments(tmp_path) -> None:
    rows = [
        ("p1", "zero", "2026-01-05", "10.00", "EUR"),
        ("p2", "zero", "2026-01-06", "-10.00", "EUR"),
        ("p3", "refunded", "2026-01-05", "5.00", "EUR"),
        ("p4", "refunded", "2026-01-07", "-20.00", "EUR"),
        ("p5", "payer", "2026-01-07", "1.00", "EUR"),
    ]
    cfg = extracted(tmp_path, rows, ["2026-01"])
    tables = compute_month(cfg, JAN)
    month = by_customer(rows_of(tables, "customer_month"))
    assert (
        month["zero"]["revenue"],
        month["zero"]["gross_revenue"],
        month["zero"]["refunds"],
        month["zero"]["payments"],
    ) == (Decimal("0.00"), Decimal("10.00"), Decimal("10.00"), 1)
    assert (
        month["refunded"]["revenue"],
        month["refunded"]["gross_revenue"],
        month["refunded"]["refunds"],
    ) == (Decimal("-15.00"), Decimal("5.00"), Decimal("20.00"))
    assert month["zero"]["units"] is None and month["zero"]["margin"] is None
    # by revenue only the payer is ranked; by payments all three paid once
    assert list(by_customer(rows_of(tables, "customer_segment", metric="revenue"))) == ["payer"]
    by_payments = by_customer(rows_of(tables, "customer_segment", metric="payments"))
    assert sorted(by_payments) == ["payer", "refunded", "zero"]
    assert by_payments["payer"]["segment"] == "vip"  # ties broken by customer_id


def test_an_empty_month_inside_the_history(tmp_path) -> None:
    rows = [(f"j{i}", f"c{i}", "2026-01-10", f"{100 - i}.00", "EUR") for i in range(10)]
    rows += [(f"m{i}", f"c{i}", "2026-03-10", f"{10 + i}.00", "EUR") for i in range(10)]
    closed = {"accept": ["2026-02"]}  # a month without payments is accepted explicitly
    cfg = extracted(tmp_path, rows, ["2026-01", "2026-02", "2026-03"], **{"checks.volume": closed})
    february = compute_month(cfg, FEB)
    assert february["customer_month"].num_rows == 0
    assert february["customer_segment"].num_rows == 0
    assert rows_of(february, "pareto_summary", window_months=1) == []  # empty population
    assert len(rows_of(february, "pareto_summary", window_months=3)) == 2
    stopped = rows_of(february, "customer_alert", metric="revenue")
    assert [(a["customer_id"], a["alert"]) for a in stopped] == [
        ("c0", "vip_stopped_paying"),
        ("c1", "vip_stopped_paying"),
    ]
    roster = by_customer(rows_of(february, "vip_roster", metric="revenue"))
    assert sorted(roster) == ["c0", "c1"]
    assert not roster["c0"]["is_vip_this_month"]
    march = compute_month(cfg, MAR)
    segments = by_customer(rows_of(march, "customer_segment", metric="revenue"))
    assert (segments["c9"]["segment"], segments["c9"]["movement"]) == ("vip", "new_vip")
    assert segments["c0"]["movement"] is None  # not VIP in February (nobody was)
    (three,) = [
        r
        for r in rows_of(march, "customer_abc", metric="revenue", window_months=3)
        if r["customer_id"] == "c0"
    ]
    assert three["value"] == Decimal("110.00")  # January's 100 + March's 10


def test_history_shorter_than_twelve_months(tmp_path) -> None:
    rows = [
        ("p1", "a", "2026-01-10", "10.00", "EUR"),
        ("p2", "a", "2026-02-10", "10.00", "EUR"),
        ("p3", "b", "2026-02-10", "30.00", "EUR"),
    ]
    cfg = extracted(tmp_path, rows, ["2026-01", "2026-02"])
    tables = compute_month(cfg, FEB)
    twelve = by_customer(rows_of(tables, "customer_abc", metric="revenue", window_months=12))
    assert twelve["a"]["value"] == Decimal("20.00")
    assert twelve["b"]["value"] == Decimal("30.00")
    # months before history_start count as 0: a = [0]*10 + [10, 10] -> cv = sqrt(5) > 1
    assert twelve["a"]["xyz_class"] == "Z"


def test_xyz_classes_over_a_full_year(tmp_path) -> None:
    months = [f"2025-{m:02d}" for m in range(1, 13)]
    rows = []
    for index, month in enumerate(months):
        rows.append((f"s{index}", "steady", f"{month}-15", "100.00", "EUR"))
        rows.append(
            (f"w{index}", "wobbly", f"{month}-15", "50.00" if index % 2 else "150.00", "EUR")
        )
        if index % 3 == 0:
            rows.append((f"r{index}", "rare", f"{month}-15", "100.00", "EUR"))
    cfg = extracted(tmp_path, rows, months, history_start="2025-01")
    tables = compute_month(cfg, date(2025, 12, 1))
    xyz = {
        r["customer_id"]: r["xyz_class"]
        for r in rows_of(tables, "customer_abc", metric="revenue", window_months=12)
    }
    # steady: cv 0 -> X; wobbly: cv 0.5 -> X (<= 0.5); rare: 4 of 12 months -> cv sqrt(2) -> Z
    assert xyz == {"steady": "X", "wobbly": "X", "rare": "Z"}
    xyz_3 = {
        r["customer_id"]: r["xyz_class"]
        for r in rows_of(tables, "customer_abc", metric="revenue", window_months=3)
    }
    assert set(xyz_3.values()) == {None}


def test_xyz_is_decided_on_the_cents(tmp_path) -> None:
    """Alternating 3.03 and 1.01 is cv = (3.03 - 1.01) / (3.03 + 1.01) = 0.5 exactly: X.
    With n = 12, s = 24.24 and q = 6 * (3.03^2 + 1.01^2): n * q - s^2 = 0.25 * s^2 (in
    cents, 1,468,944 both). A total rounded to whole units (s = 24) would make it Y."""
    months = [f"2025-{m:02d}" for m in range(1, 13)]
    rows = [
        (f"w{index}", "wobbly", f"{month}-15", "1.01" if index % 2 else "3.03", "EUR")
        for index, month in enumerate(months)
    ]
    cfg = extracted(tmp_path, rows, months, history_start="2025-01")
    tables = compute_month(cfg, date(2025, 12, 1))
    (wobbly,) = rows_of(tables, "customer_abc", metric="revenue", window_months=12)
    assert wobbly["xyz_class"] == "X"


def test_a_missing_month_in_the_history_fails_with_its_name(tmp_path) -> None:
    rows = [("p1", "a", "2026-01-10", "10.00", "EUR"), ("p2", "a", "2026-03-10", "10.00", "EUR")]
    cfg = extracted(tmp_path, rows, ["2026-01", "2026-03"])
    with pytest.raises(MissingMonthError, match="2026-02"):
        compute_month(cfg, MAR)
    with pytest.raises(ComputeError, match=r"before the history's start, \[business\] history_"):
        compute_month(cfg, date(2025, 12, 1))


def test_months_before_history_start_are_not_needed(tmp_path) -> None:
    cfg = extracted(tmp_path, [("p1", "a", "2026-01-10", "10.00", "EUR")], ["2026-01"])
    assert compute_month(cfg, JAN)["customer_month"].num_rows == 1


def test_metrics_follow_the_source_columns_and_the_config(tmp_path) -> None:
    cfg = extracted(tmp_path, [("p1", "a", "2026-01-10", "10.00", "EUR")], ["2026-01"])
    tables = compute_month(cfg, JAN)
    assert set(tables["customer_abc"].column("metric").to_pylist()) == {"revenue", "payments"}
    assert tables["customer_tier"].num_rows == 0  # no cost column, no tiers
    pairs = [(r["metric_a"], r["metric_b"]) for r in tables["criteria_overlap"].to_pylist()]
    assert pairs == [("revenue", "payments")]


def test_asking_for_an_unavailable_metric_fails(tmp_path) -> None:
    cfg = extracted(
        tmp_path,
        [("p1", "a", "2026-01-10", "10.00", "EUR")],
        ["2026-01"],
        segmentation={"metrics": ["revenue", "margin"]},
    )
    with pytest.raises(ComputeError, match="margin"):
        compute_month(cfg, JAN)


def test_tiers_and_margin_erosion(tmp_path) -> None:
    header = ("payment_id", "customer_id", "paid_at", "amount", "currency", "units", "cost")
    rows = [
        # big: margin 40 % in Jan and Feb, 20 % in March -> erosion of 20 points
        ("b1", "big", "2026-01-10", "1000.00", "EUR", "1", "600.00"),
        ("b2", "big", "2026-02-10", "1000.00", "EUR", "1", "600.00"),
        ("b3", "big", "2026-03-10", "1000.00", "EUR", "1", "800.00"),
        ("l1", "loser", "2026-03-10", "100.00", "EUR", "1", "150.00"),  # margin < 0: tier 4
        ("t1", "thin", "2026-03-10", "100.00", "EUR", "1", "96.00"),  # 4 % < 5 %: tier 3
        ("e1", "edge", "2026-03-10", "100.00", "EUR", "1", "95.00"),  # exactly 5 %: not tier 3
        ("r1", "refund", "2026-03-10", "-10.00", "EUR", "0", "0.00"),  # margin -10: tier 4
        ("n1", "netzero", "2026-03-10", "10.00", "EUR", "1", "0.00"),  # revenue 0, margin 0:
        ("n2", "netzero", "2026-03-11", "-10.00", "EUR", "0", "0.00"),  # tier 3
    ]
    source = write_payments(tmp_path / "p.csv", rows, header=header)
    cfg = csv_config(tmp_path, source)
    for month in ("2026-01", "2026-02", "2026-03"):
        extract(cfg, parse_month(month))
    tables = compute_month(cfg, MAR)
    tiers = {r["customer_id"]: r for r in rows_of(tables, "customer_tier")}
    assert {c: t["tier"] for c, t in tiers.items()} == {
        "big": 1,
        "loser": 4,
        "thin": 3,
        "edge": 2,
        "refund": 4,
        "netzero": 3,
    }
    assert tiers["big"]["margin"] == Decimal("1000.00")  # 400 + 400 + 200 over 3 months
    assert tiers["big"]["margin_pct"] == pytest.approx(1000 / 3000)
    assert tiers["netzero"]["margin_pct"] is None
    erosion = [a for a in rows_of(tables, "customer_alert") if a["alert"] == "margin_erosion"]
    # big is VIP by every metric in March (by payments and units it wins the tie on its id)
    assert sorted((a["metric"], a["customer_id"]) for a in erosion) == [
        ("margin", "big"),
        ("payments", "big"),
        ("revenue", "big"),
        ("units", "big"),
    ]
    assert all("20.0 %" in a["detail"] and "40.0 %" in a["detail"] for a in erosion)


@pytest.mark.parametrize(("march_cost", "alert"), [("70.00", False), ("70.01", True)])
def test_margin_erosion_needs_strictly_more_than_the_threshold(tmp_path, march_cost, alert):
    header = ("payment_id", "customer_id", "paid_at", "amount", "currency", "units", "cost")
    rows = [
        ("a1", "vip", "2026-01-10", "100.00", "EUR", "1", "60.00"),  # 40 %
        ("a2", "vip", "2026-02-10", "100.00", "EUR", "1", "60.00"),  # 40 %
        ("a3", "vip", "2026-03-10", "100.00", "EUR", "1", march_cost),  # 30 % or 29.99 %
    ]
    cfg = csv_config(tmp_path, write_payments(tmp_path / "p.csv", rows, header=header))
    for month in ("2026-01", "2026-02", "2026-03"):
        extract(cfg, parse_month(month))
    erosion = [
        a
        for a in compute_month(cfg, MAR)["customer_alert"].to_pylist()
        if a["alert"] == "margin_erosion"
    ]
    assert bool(erosion) is alert


def test_customers_with_tens_of_millions_a_month_do_not_overflow(tmp_path) -> None:
    """XYZ squares the monthly values: 20,000,000.00 squared does not fit DECIMAL(18), and
    used to stop the month. a = [0] * 9 + [x, x, x] -> cv = sqrt(12 * 3x^2 - 9x^2) / 3x
    = sqrt(3), whatever x."""
    months = ["2026-01", "2026-02", "2026-03"]
    rows = [(f"a{i}", "a", f"{m}-10", "20000000.00", "EUR") for i, m in enumerate(months)]
    rows += [(f"b{i}", "b", f"{m}-10", "10.00", "EUR") for i, m in enumerate(months)]
    cfg = extracted(tmp_path, rows, months)
    tables = compute_month(cfg, MAR)
    twelve = by_customer(rows_of(tables, "customer_abc", metric="revenue", window_months=12))
    assert twelve["a"]["value"] == Decimal("60000000.00")
    assert twelve["a"]["xyz_class"] == twelve["b"]["xyz_class"] == "Z"
    (summary,) = rows_of(tables, "pareto_summary", metric="revenue", window_months=12)
    total = Decimal("60000000.00") + Decimal("30.00")
    expected_hhi = (Decimal("60000000.00") ** 2 + Decimal("30.00") ** 2) / total**2
    assert summary["hhi"] == pytest.approx(float(expected_hhi), rel=1e-15)


@pytest.mark.slow
def test_floating_figures_are_the_same_bytes_on_every_run(tmp_path) -> None:
    """A month large enough for DuckDB to split its sums over threads: the floating
    columns (shares, gini, hhi, cv) come out bit-identical run after run."""
    source = tmp_path / "payments.parquet"
    con = duckdb.connect()
    con.execute(
        f"""
        copy (
            select
                'p' || i as payment_id,
                'c' || (hash(i) % 300000) as customer_id,
                timestamptz '2026-01-01 00:00:00+00' + to_seconds(hash(i, 1) % 2678000) as paid_at,
                ((hash(i, 2) % 1000000) / 100 + 0.01)::decimal(18, 2) as amount,
                'EUR' as currency
            from range(400000) as t(i)
        ) to '{source}' (format parquet)
        """
    )
    con.close()
    cfg = csv_config(tmp_path, source, source={"kind": "parquet"})
    extract(cfg, JAN)
    runs = [compute_month(cfg, JAN) for _ in range(3)]
    for name in ("pareto_summary", "customer_abc"):
        first = runs[0][name]
        assert first.num_rows > (200_000 if name == "customer_abc" else 0)
        assert all(run[name].equals(first) for run in runs[1:]), name


def test_partitions_without_derived_files_compute_the_same(golden, tmp_path) -> None:
    """A lake written before partitions carried their customer_month and monthly ranking
    (schema version 1) gives the same tables: the computation derives what is missing."""
    cfg = csv_config(
        tmp_path, golden / "full" / "payments.csv", timezone="Europe/Oslo", history_start="2025-01"
    )
    months = months_between(date(2025, 1, 1), MAR)
    for month in months:
        extract(cfg, month)
    with_derived = compute_month(cfg, MAR)
    for month in months[::2]:  # every other month, so that both kinds are read together
        path = partition_dir(cfg.lake.root, month) / "manifest.json"
        manifest = json.loads(path.read_text())
        manifest.update(schema_version=1, customer_month_file=None, monthly_ranking_file=None)
        path.write_text(json.dumps(manifest))
    without = compute_month(cfg, MAR)
    for name, table in with_derived.items():
        assert without[name].equals(table), name
