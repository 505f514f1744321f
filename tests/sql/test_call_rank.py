"""customer_call: the risk model orders the alerts, the caps and the wobblers make 'watch'.

Hand-built histories (README "The call list"), computed through the real month computation
(lake extract, the SQL steps, pipeline/compute/call_score.py's BG/NBD fit).
"""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.compute.month import compute_month, write_month
from pipeline.months import add_months, months_between
from pipeline.run import backfill

from golden import SHARED
from support import extracted, warehouse_rows

NOV = date(2025, 11, 1)
MONTHS = [m.strftime("%Y-%m") for m in months_between(date(2025, 1, 1), NOV)]


def _history(until: date = NOV) -> list[tuple]:
    """Twenty steady small customers, twenty small ones who left early, and three VIPs of
    2025-10 with an alert in 2025-11:
    weekly: paid 100 every week from January to October, nothing in November;
    twice_a_year: paid 2000 in April and in October, nothing in November (as usual);
    wobbler: paid every week; big in May, small in June (out of the VIPs), big again from
    July to October, small in November (out again, still paying)."""
    rows = []

    def pay(customer: str, day: date, amount: str) -> None:
        rows.append((f"p{len(rows):05d}", customer, day.isoformat(), amount, "EUR"))

    for month in months_between(date(2025, 1, 1), until):
        for i in range(20):
            pay(f"steady{i:02d}", month + timedelta(days=i % 27), "50.00")
    for i in range(20):  # customers who left: weekly for 2 to 6 months, then never again
        day, stop = date(2025, 1, 3 + i % 5), date(2025, 3 + i % 5, 1)
        while day < stop:
            pay(f"gone{i:02d}", day, "10.00")
            day += timedelta(days=7)
    day = date(2025, 1, 2)
    while day < NOV:
        pay("weekly", day, "100.00")
        day += timedelta(days=7)
    pay("twice_a_year", date(2025, 4, 10), "2000.00")
    pay("twice_a_year", date(2025, 10, 10), "2000.00")
    day = date(2025, 5, 1)
    while day < add_months(until, 1):
        small = day.month in (6, 11)
        pay("wobbler", day, "5.00" if small else "150.00")
        day += timedelta(days=7)
    return rows


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calls")
    return folder, _history()


def _calls(folder, rows, **config):
    folder.mkdir()
    cfg = extracted(folder, rows, MONTHS, business={"history_start": "2025-01"}, **config)
    tables = compute_month(cfg, NOV)
    calls = [r for r in tables["customer_call"].to_pylist() if r["metric"] == "revenue"]
    alerts = [r for r in tables["customer_alert"].to_pylist() if r["metric"] == "revenue"]
    return cfg, {r["customer_id"]: r for r in calls}, alerts


def test_a_weekly_payer_who_stops_ranks_above_a_twice_a_year_payer(history) -> None:
    folder, rows = history
    _, calls, alerts = _calls(folder / "a", rows)
    # one row per alert, customer_alert unchanged by the order
    assert sorted((r["customer_id"], r["alert"]) for r in alerts) == sorted(
        (c, r["alert"]) for c, r in calls.items()
    )
    weekly, twice = calls["weekly"], calls["twice_a_year"]
    assert weekly["alert"] == twice["alert"] == "vip_stopped_paying"
    assert weekly["call_rank"] < twice["call_rank"]
    assert weekly["p_alive"] < 0.5 < twice["p_alive"]
    assert weekly["value_at_risk"] > 0 and weekly["priority"] == "call"
    assert weekly["paying_days"] == 44 and weekly["quiet_days"] == 31
    assert weekly["call_reason"].startswith("paid every 7 days for 10 months, nothing for 31 days")
    # call_rank is a total order 1..n per metric
    assert sorted(r["call_rank"] for r in calls.values()) == list(range(1, len(calls) + 1))


def test_a_wobbler_who_came_back_before_is_watched(history) -> None:
    folder, rows = history
    _, calls, _ = _calls(folder / "b", rows)
    wobbler = calls["wobbler"]
    assert (wobbler["alert"], wobbler["vip_dips"], wobbler["vip_returns"]) == ("vip_dropped", 1, 1)
    assert wobbler["priority"] == "watch"
    assert wobbler["call_reason"].startswith("VIP again likely: back above the cut after 1 of 1")
    assert wobbler["call_rank"] == len(calls)  # likely back: last


def test_the_caps_put_the_rest_under_watch(history) -> None:
    folder, rows = history
    _, calls, _ = _calls(folder / "c", rows, call_list={"max_calls": 1})
    called = [c for c, r in calls.items() if r["priority"] == "call"]
    assert called == ["weekly"]  # the first by call_rank; the others wait
    _, uncapped, _ = _calls(folder / "d", rows, call_list={"max_calls": 0})
    assert {r["priority"] for r in uncapped.values()} == {"watch"}


def test_the_call_order_is_the_same_bytes_twice(history, tmp_path) -> None:
    folder, rows = history
    (folder / "e").mkdir()
    cfg = extracted(folder / "e", rows, MONTHS, business={"history_start": "2025-01"})
    first = write_month(cfg, NOV, tmp_path / "first")["customer_call"].read_bytes()
    second = write_month(cfg, NOV, tmp_path / "second")["customer_call"].read_bytes()
    assert first == second


def test_padding_the_fit_sample_changes_no_score() -> None:
    """The fit sample is padded to [call_list] fit_customers rows with customers who bought
    nothing in no time (one compiled model per machine): the scores are those of the fit on
    the real customers alone."""
    import pyarrow as pa

    from pipeline.compute.call_score import _fitted, _padded, _predict

    n = 97  # a size no other fit uses: the unpadded fit compiles its own model
    fit = pa.table(
        {
            "customer_id": [f"c{i:03d}" for i in range(n)],
            "frequency": [i % 9 for i in range(n)],
            "recency": [(i % 9) * (7 + i % 13) for i in range(n)],
            "T": [(i % 9) * (7 + i % 13) + 9 * (i % 31) for i in range(n)],
        }
    )
    alerted = fit.slice(40, 30)
    alone = _predict(_fitted(fit), alerted, 91)
    padded = _predict(_fitted(_padded(fit, 400)), alerted, 91)
    assert _padded(fit, 400).num_rows == 400 and _padded(fit, 50) is fit
    assert alone["customer_id"] == padded["customer_id"]
    for column in ("p_alive", "expected_payments"):
        assert alone[column].to_pylist() == pytest.approx(padded[column].to_pylist(), abs=2e-4)
    assert len(set(alone["p_alive"].to_pylist())) > 5  # the scores differ between customers


def test_tiers_backtest_agrees_with_the_shared_tool(tmp_path) -> None:
    """The months 2025-06 .. 2026-02 loaded; the lists of 2025-09 .. 2025-11 have their 3
    months after: tiers backtest and ../shared/tools/call_precision.py give the same shares."""
    months = [m.strftime("%Y-%m") for m in months_between(date(2025, 6, 1), date(2026, 2, 1))]
    rows = [r for r in _history(until=date(2026, 2, 1)) if r[2] >= "2025-06"]
    cfg = extracted(tmp_path, rows, months, business={"history_start": "2025-06"})
    results = backfill.backfill(cfg, date(2025, 6, 1), date(2026, 2, 1), extract=False)
    assert {r.status for r in results} == {"loaded"}, [r.error for r in results]
    config = str(tmp_path / "tiers.toml")
    printed = CliRunner().invoke(
        app,
        ["backtest", "-c", config, "--from", "2025-09", "--to", "2025-11", "--top", "1"],
        env={"COLUMNS": "120"},
    )
    assert printed.exit_code == 0, printed.output
    overall = next(line for line in printed.output.splitlines() if "overall" in line)
    shares = [cell.strip() for cell in overall.split("│")[1:-1]][2:5]  # all, stake, rank
    tool = subprocess.run(
        [
            sys.executable,
            str(SHARED / "tools" / "call_precision.py"),
            str(tmp_path / "warehouse.duckdb"),
            "--from",
            "2025-09",
            "--to",
            "2025-11",
            "--k",
            "1",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # "alerts N over M months; leaving among all 0.667; top 1 by value at stake 1.000; ..."
    figures = [
        float(word.rstrip(";")) for word in tool.split() if word[:1].isdigit() and "." in word
    ]
    assert shares == [f"{f:.0%}" for f in figures[:3]], (printed.output, tool)
    # one row per month of the range with alerts (2025-09 has none): each is judged, its 3
    # months after are loaded
    judged = [
        line.split("│")[1].strip() for line in printed.output.splitlines() if "│ 2025-" in line
    ]
    assert judged == ["2025-10", "2025-11"]
    calls = warehouse_rows(cfg, "customer_call").to_pylist()
    weekly = [r for r in calls if r["month"] == NOV and r["customer_id"] == "weekly"]
    assert {(r["alert"], r["priority"]) for r in weekly} == {("vip_stopped_paying", "call")}
