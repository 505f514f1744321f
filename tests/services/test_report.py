"""The month's report opened in a real browser (headless Chromium): every section is
there, the charts draw without console errors or network requests, and the numbers shown
are the warehouse's."""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from pipeline.deliver.report import SECTIONS, default_report_path, write_report
from pipeline.errors import ReportError
from pipeline.months import add_months
from pipeline.run.state import run_dir
from pipeline.run.steps import report_step
from pipeline.warehouse import open_warehouse

from golden import GOLDEN
from month_support import FULL_LAST, FULL_LOADED, browser_page, reconfigured

pytestmark = pytest.mark.slow
pytest_plugins = ["pg_support"]  # fixtures: pg_dsn, pg_schema


@pytest.fixture(scope="module")
def loaded(full_case):
    return full_case


def warehouse_table(cfg, name, month=None) -> list[dict]:
    warehouse = open_warehouse(cfg)
    try:
        return warehouse.read_table(name, month).to_pylist()
    finally:
        warehouse.close()


def test_the_report_in_a_browser_shows_the_warehouse(loaded, tmp_path) -> None:
    cfg, month = loaded, FULL_LAST
    path, metric, run_id = write_report(cfg, month)
    assert (path, metric) == (default_report_path(cfg, month, "revenue"), "revenue")
    html = path.read_text()
    assert "<script src=" not in html and "<link" not in html  # everything is inline

    with browser_page() as page:
        page.goto(path.as_uri())
        page.wait_for_function("document.body.dataset.charts !== 'pending'", timeout=30_000)
        assert page.evaluate("document.body.dataset.charts") == "ready"
        assert page.problems == []
        assert [u for u in page.requests if not u.startswith("file:")] == []
        for section in SECTIONS:
            assert page.locator(f"section#{section}").is_visible(), section
            assert page.locator(f"section#{section} h2").inner_text().strip()
        for chart in ("pareto", "tiers", "whale", "overlap"):
            assert page.locator(f'[data-chart="{chart}"] svg').count() == 1, chart
        # the watch rows are folded: hidden until their <details> is opened
        watch = page.locator("section#calls details#watch")
        assert watch.count() == 1 and watch.evaluate("e => e.open") is False
        assert not page.locator("#watch-list tr[data-customer-id]").first.is_visible()
        assert page.locator("#call-list tr[data-customer-id]").first.is_visible()
        folded_label = watch.locator("summary").inner_text()
        watch.locator("summary").click()
        assert page.locator("#watch-list tr[data-customer-id]").first.is_visible()
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        shown = page.evaluate(
            """() => ({
            figures: Object.fromEntries([...document.querySelectorAll('[data-figure]')]
                .map(e => [e.dataset.figure, e.dataset.exact])),
            calls: [...document.querySelectorAll('section#calls tr[data-customer-id]')].map(e => ({
                customer: e.dataset.customerId, alert: e.dataset.alert,
                stake: e.dataset.valueAtStake, rank: +e.dataset.callRank,
                priority: e.dataset.priority, pAlive: e.dataset.pAlive,
                risk: e.dataset.valueAtRisk, table: e.closest('table').id,
                folded: e.closest('details') !== null, text: e.innerText})),
            tiers: [...document.querySelectorAll('#tier-summary tr[data-tier]')].map(e => ({
                tier: +e.dataset.tier, customers: +e.dataset.customers,
                revenue: e.dataset.revenue, margin: e.dataset.margin})),
            overlap: [...document.querySelectorAll('#overlap-table tr[data-metric-a]')].map(e =>
                [e.dataset.metricA, e.dataset.metricB, e.dataset.jaccard]),
            migration: [...document.querySelectorAll('table.migration[data-kind=count] td')]
                .map(e => [e.dataset.from, e.dataset.to, +e.dataset.exact]),
            health: Object.fromEntries([...document.querySelectorAll('#run-health [data-field]')]
                .map(e => [e.dataset.field, e.innerText.replace(/,/g, '')])),
            runId: document.querySelector('#run-health').dataset.runId,
            pareto: [...document.querySelectorAll('#pareto-classes tr[data-window]')].map(e =>
                [+e.dataset.window, +e.cells[1].innerText]),
        })"""
        )
    assert (tmp_path / "report.png").stat().st_size > 10_000

    # headline = pareto_summary (revenue, window 1) of the month
    (summary,) = [
        r
        for r in warehouse_table(cfg, "pareto_summary", month)
        if r["metric"] == "revenue" and r["window_months"] == 1
    ]
    assert int(shown["figures"]["customers"]) == summary["n_customers"]
    assert Decimal(shown["figures"]["value"]) == summary["total_value"]
    assert float(shown["figures"]["top20"]) == pytest.approx(summary["top20_share"], abs=1e-12)
    assert float(shown["figures"]["gini"]) == pytest.approx(summary["gini"], abs=1e-12)

    # the call list = customer_alert of the month (revenue), in customer_call's order: the
    # 'call' rows first as today's list, the 'watch' rows folded below
    alerts = [r for r in warehouse_table(cfg, "customer_alert", month) if r["metric"] == "revenue"]
    assert sorted((c["customer"], c["alert"]) for c in shown["calls"]) == sorted(
        (r["customer_id"], r["alert"]) for r in alerts
    )
    assert len(shown["calls"]) == 4
    order = sorted(
        (r for r in warehouse_table(cfg, "customer_call", month) if r["metric"] == "revenue"),
        key=lambda r: (r["priority"] != "call", r["call_rank"]),
    )
    assert [(c["customer"], c["alert"], c["rank"], c["priority"]) for c in shown["calls"]] == [
        (r["customer_id"], r["alert"], r["call_rank"], r["priority"]) for r in order
    ]
    calls = [c for c in shown["calls"] if c["priority"] == "call"]
    watched = [c for c in shown["calls"] if c["priority"] == "watch"]
    assert calls and watched  # the golden month has both
    assert {(c["table"], c["folded"]) for c in calls} == {("call-list", False)}
    assert {(c["table"], c["folded"]) for c in watched} == {("watch-list", True)}
    assert [c["rank"] for c in calls] == sorted(c["rank"] for c in calls)
    assert [c["rank"] for c in watched] == sorted(c["rank"] for c in watched)
    assert folded_label == f"{len(watched)} more to watch: likely back, or past the caps"
    assert int(shown["figures"]["calls"]) == len(calls)
    for c, r in zip(shown["calls"], order, strict=True):
        assert float(c["pAlive"]) == r["p_alive"] and Decimal(c["risk"]) == r["value_at_risk"]
        assert r["call_reason"] in c["text"]  # the line a person reads
        assert f"{100 * r['p_alive']:.0f} %" in c["text"]
        assert f"{r['value_at_risk']:,.2f}" in c["text"]
    six = [add_months(month, -i) for i in range(6)]
    stake = Counter()
    for m in six:
        for r in warehouse_table(cfg, "customer_month", m):
            stake[r["customer_id"]] += r["revenue"]
    assert [Decimal(c["stake"]) for c in shown["calls"]] == [
        stake[c["customer"]] for c in shown["calls"]
    ]
    by_customer = {c["customer"]: c["text"] for c in shown["calls"]}
    assert (
        "Fjord Bakery AS" in by_customer["k00013"] and "anna@example.com" in by_customer["k00013"]
    )
    for customer, paid in last_payment_days(month).items():
        if customer in by_customer:
            assert paid.isoformat() in by_customer[customer], customer

    # profitability tiers = customer_tier of the month
    tiers = warehouse_table(cfg, "customer_tier", month)
    for row in shown["tiers"]:
        members = [t for t in tiers if t["tier"] == row["tier"]]
        assert row["customers"] == len(members)
        assert Decimal(row["revenue"]) == sum((t["revenue"] for t in members), Decimal(0))
        assert Decimal(row["margin"]) == sum((t["margin"] for t in members), Decimal(0))
    assert sum(r["customers"] for r in shown["tiers"]) == len(tiers)

    overlap = warehouse_table(cfg, "criteria_overlap", month)
    assert sorted((a, b, float(j)) for a, b, j in shown["overlap"]) == sorted(
        (r["metric_a"], r["metric_b"], r["jaccard"]) for r in overlap
    )

    # migration: every customer ranked (window 1) in M-1 or M counted once
    abc = defaultdict(dict)
    for m in (add_months(month, -1), month):
        for r in warehouse_table(cfg, "customer_abc", m):
            if r["metric"] == "revenue" and r["window_months"] == 1:
                abc[r["customer_id"]][m] = r["abc_class"]
    expected = Counter(
        (c.get(add_months(month, -1), "new"), c.get(month, "lost")) for c in abc.values()
    )
    assert {(f, t): n for f, t, n in shown["migration"] if n} == dict(expected)

    pareto = Counter(
        r["window_months"]
        for r in warehouse_table(cfg, "customer_abc", month)
        if r["metric"] == "revenue"
    )
    assert dict(shown["pareto"]) == dict(pareto)
    assert set(pareto) == {1, 3, 6, 12}

    (run,) = [r for r in warehouse_table(cfg, "pipeline_run", month) if r["run_id"] == run_id]
    assert shown["runId"] == run_id
    for field in ("rows_read", "rows_duplicate", "rows_rounded", "rows_quarantined", "rows_loaded"):
        assert int(shown["health"][field]) == run[field], field


def last_payment_days(month: date) -> dict[str, date]:
    """Each customer's last payment date (Oslo) in M-1 .. M, from the golden input."""
    zone, latest = ZoneInfo("Europe/Oslo"), {}
    with (GOLDEN / "full" / "payments.csv").open() as handle:
        for row in csv.DictReader(handle):
            day = datetime.fromisoformat(row["paid_at"]).astimezone(zone).date()
            if add_months(month, -1) <= day.replace(day=1) <= month:
                latest[row["customer_id"]] = max(day, latest.get(row["customer_id"], day))
    return latest


def test_a_month_loaded_before_customer_call_renders_as_before(loaded, tmp_path, monkeypatch):
    from pipeline.deliver import report_data
    from pipeline.deliver.call_list import build_calls

    cfg, month = loaded, FULL_LAST
    # a month without customer_call rows: build_calls gets none to order by
    monkeypatch.setattr(report_data, "build_calls", lambda *args: build_calls(*args[:6]))
    path, _, _ = write_report(cfg, month, tmp_path / "before.html")
    html = path.read_text()
    assert "<details" not in html and 'id="watch-list"' not in html
    assert "the most valuable call first" in html and "data-call-rank" not in html
    alerts = [r for r in warehouse_table(cfg, "customer_alert", month) if r["metric"] == "revenue"]
    assert f"<h2>Call list ({len(alerts)})</h2>" in html
    with browser_page() as page:
        page.goto(path.as_uri())
        rows = page.evaluate(
            """() => [...document.querySelectorAll('#call-list tr[data-customer-id]')]
                .map(e => [e.dataset.customerId, e.dataset.valueAtStake, e.cells[0].innerText])"""
        )
        figure = page.locator('[data-figure="calls"]').get_attribute("data-exact")
    assert sorted(c for c, _, _ in rows) == sorted(r["customer_id"] for r in alerts)
    stakes = [Decimal(s) for _, s, _ in rows]
    assert stakes == sorted(stakes, reverse=True)  # the first order: value at stake
    assert [n for _, _, n in rows] == [str(i) for i in range(1, len(rows) + 1)]
    assert int(figure) == len(alerts)


def test_the_page_is_deterministic_and_the_step_records_it(loaded) -> None:
    cfg, month = loaded, FULL_LAST
    (run,) = [r for r in warehouse_table(cfg, "pipeline_run", month)]
    first = report_step(cfg, month, run["run_id"])
    folder = run_dir(cfg, month, run["run_id"])
    assert first["report"] == str(folder / "report.html")
    state = json.loads((folder / "run.json").read_text())
    assert state["report"] == first["report"] and state["report_metric"] == "revenue"
    before = (folder / "report.html").read_bytes()
    report_step(cfg, month, run["run_id"])
    assert (folder / "report.html").read_bytes() == before
    # the step leaves the month's record alone
    assert [r["status"] for r in warehouse_table(cfg, "pipeline_run", month)] == ["loaded"]


def test_another_metric_and_the_errors(loaded, tmp_path) -> None:
    cfg, month = loaded, FULL_LAST
    path, metric, _ = write_report(cfg, month, tmp_path / "margin.html", metric="margin")
    assert metric == "margin"
    html = path.read_text()
    margin_alerts = [
        r for r in warehouse_table(cfg, "customer_alert", month) if r["metric"] == "margin"
    ]
    assert html.count('<tr data-customer-id="') >= len(margin_alerts)
    for r in margin_alerts:
        assert f'data-customer-id="{r["customer_id"]}" data-alert="{r["alert"]}"' in html
    # a month with nothing to call by margin: the list says so and every alert is watched
    priorities = {
        r["priority"]
        for r in warehouse_table(cfg, "customer_call", month)
        if r["metric"] == "margin"
    }
    if priorities == {"watch"}:
        assert "No customer to call this month." in html
        assert f"{len(margin_alerts)} more to watch" in html
    with pytest.raises(ReportError, match="2024-01 is not loaded"):
        write_report(cfg, date(2024, 1, 1))


def test_tiers_report_prints_and_records_the_path(loaded) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    cfg, month = loaded, FULL_LAST
    config = str(cfg.base_dir / "tiers.toml")
    result = CliRunner().invoke(app, ["report", "-c", config, "-m", "2026-03", "--metric", "units"])
    assert result.exit_code == 0, result.output
    path = default_report_path(cfg, month, "units")
    assert str(path) in result.output.replace("\n", "") and path.exists()
    (run,) = warehouse_table(cfg, "pipeline_run", month)
    state = json.loads((run_dir(cfg, month, run["run_id"]) / "run.json").read_text())
    assert state["reports"]["units"] == str(path)

    result = CliRunner().invoke(app, ["report", "-c", config, "-m", "2024-01"])
    assert result.exit_code == 1
    assert "2024-01 is not loaded" in result.output


@pytest.mark.postgres
def test_a_postgresql_warehouse_draws_the_same_page(loaded, tmp_path, pg_dsn, pg_schema) -> None:
    from pipeline.months import months_between
    from pipeline.schema.tables import TABLES

    cfg = loaded
    pg_cfg = reconfigured(
        cfg,
        tmp_path,
        warehouse={"url": pg_dsn, "schema": pg_schema},
        runs={"root": str(cfg.runs.root)},
    )
    source, target = open_warehouse(cfg), open_warehouse(pg_cfg)
    try:
        target.ensure_schema()
        for month in months_between(FULL_LOADED, FULL_LAST):
            tables = {name: source.read_table(name, month) for name in TABLES}
            (run,) = source.read_table("pipeline_run", month).to_pylist()
            target.load_month(month, tables, run)
    finally:
        source.close()
        target.close()
    from_duckdb, _, _ = write_report(cfg, FULL_LAST, tmp_path / "duckdb.html")
    from_postgres, _, _ = write_report(pg_cfg, FULL_LAST, tmp_path / "postgres.html")
    assert from_postgres.read_bytes() == from_duckdb.read_bytes()
