"""Service effort and cost to serve (spec: "Service effort and cost to serve (optional)"):
the [service] source of activities through the lake, the computation, the gates and both
warehouses. The golden ``service`` case runs in test_pipeline.py; here the hand-computed
edges, every source kind and the lake's rules."""

from __future__ import annotations

import csv
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import psycopg
import pytest
from psycopg import sql

from pipeline.compute.month import compute_month, write_month
from pipeline.config import load_config
from pipeline.errors import BadInputError, MissingMonthError
from pipeline.lake.extract import extract
from pipeline.lake.partition import ACTIVITIES
from pipeline.months import parse_month
from pipeline.run import backfill
from pipeline.schema.tables import TABLES

from golden import GOLDEN, table_differences
from pg_support import pg, pg_dsn, pg_schema, source_schema  # noqa: F401 (fixtures)
from support import csv_config, warehouse_rows, write_config, write_payments

JAN, FEB, MAR = date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)
COSTED = ("payment_id", "customer_id", "paid_at", "amount", "currency", "units", "cost")
ACTIVITY_HEADER = ("activity_id", "customer_id", "occurred_at", "kind", "hours", "cost")
ZONE, START = "Europe/Oslo", "2025-01"


def write_activities(path: Path, rows, header=ACTIVITY_HEADER) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def served(tmp_path: Path, payments, activities, months, *, header=ACTIVITY_HEADER, **config):
    """Payments (with units and cost) and activities as CSV sources, ``months`` extracted
    (both sources); returns the configuration."""
    pay = write_payments(tmp_path / "payments.csv", payments, header=COSTED)
    act = write_activities(tmp_path / "activities.csv", activities, header)
    service = {"kind": "csv", "path": str(act)} | config.pop("service", {})
    cfg = csv_config(tmp_path, pay, service=service, **config)
    for month in map(parse_month, months):
        extract(cfg, month)
        extract(cfg, month, dataset=ACTIVITIES)
    return cfg


def rows_of(tables, name, **where):
    return [r for r in tables[name].to_pylist() if all(r[k] == v for k, v in where.items())]


def by_customer(rows):
    return {r["customer_id"]: r for r in rows}


def test_a_customer_served_but_never_paying_is_tier_4_when_it_costs_anything(tmp_path):
    payments = [
        ("p1", "payer", "2026-01-05", "100.00", "EUR", 1, "40.00"),
        ("p2", "small", "2026-01-06", "50.00", "EUR", 1, "10.00"),
    ]
    activities = [
        ("a1", "ghost", "2026-01-07T10:00:00", "visit", "2.00", "30.00"),  # never pays
        ("a2", "free", "2026-01-08T10:00:00", "call", "0.50", "0.00"),  # never pays, no cost
        ("a3", "payer", "2026-01-09T10:00:00", "ticket", "1.00", "55.00"),
    ]
    cfg = served(tmp_path, payments, activities, ["2026-01"])
    tiers = by_customer(rows_of(compute_month(cfg, JAN), "customer_tier"))
    ghost = tiers["ghost"]
    # served in the window without payments: revenue 0, margin 0, loaded margin -30
    assert (ghost["revenue"], ghost["margin"], ghost["margin_pct"]) == (
        Decimal(0),
        Decimal(0),
        None,
    )
    assert (ghost["cost_to_serve"], ghost["loaded_margin"]) == (Decimal("30.00"), Decimal("-30.00"))
    assert (ghost["loaded_margin_pct"], ghost["tier"]) == (None, 4)
    assert tiers["free"]["tier"] == 3  # costs nothing: loaded margin 0, revenue <= 0
    # payer: margin 60 - cost to serve 55 = 5, exactly 5 % of 100 (not below break-even);
    # by loaded margin small (40) is ranked first and takes the A class (0 < 0.8 x 45),
    # payer is B (40 >= 36): Tier 2, where its margin alone would have made it Tier 1
    payer = tiers["payer"]
    assert (payer["margin"], payer["loaded_margin"], payer["tier"]) == (
        Decimal("60.00"),
        Decimal("5.00"),
        2,
    )
    assert payer["loaded_margin_pct"] == pytest.approx(0.05)
    # small: 40 of 50, class A by loaded margin (the only other positive one: 40 > 5)
    assert (tiers["small"]["cost_to_serve"], tiers["small"]["tier"]) == (Decimal("0.00"), 1)


def test_effort_is_the_number_of_activities_without_an_hours_column(tmp_path):
    payments = [(f"p{i}", f"c{i}", "2026-01-05", "10.00", "EUR", 1, "1.00") for i in range(3)]
    activities = [
        ("a1", "c0", "2026-01-07", "ticket", "5.00"),
        ("a2", "c0", "2026-01-08", "ticket", "5.00"),
        ("a3", "c0", "2026-01-09", "call", "5.00"),
        ("a4", "c1", "2026-01-09", "call", "5.00"),
    ]
    header = ("activity_id", "customer_id", "occurred_at", "kind", "cost")
    cfg = served(tmp_path, payments, activities, ["2026-01"], header=header)
    tables = compute_month(cfg, JAN)
    service = by_customer(rows_of(tables, "customer_service"))
    assert (service["c0"]["activities"], service["c0"]["hours"]) == (3, None)
    assert service["c0"]["cost_to_serve"] == Decimal("15.00")
    (effort,) = rows_of(tables, "pareto_summary", metric="effort", window_months=1)
    assert (effort["n_customers"], effort["total_value"]) == (2, Decimal("4.00"))
    assert effort["top1_share"] == pytest.approx(0.75)
    profile = by_customer(rows_of(tables, "customer_service_profile"))
    assert profile["c0"]["effort"] == Decimal("3.00")
    assert profile["c0"]["effort_share"] == pytest.approx(0.75)
    # c0: effort class A, revenue share 1/3 < 0.75 / 2
    assert (profile["c0"]["effort_class"], profile["c0"]["profile"]) == ("A", "troublesome")
    assert profile["c2"]["effort"] == Decimal("0.00") and profile["c2"]["effort_class"] is None


def test_a_tie_at_the_80_percent_effort_cut(tmp_path):
    """Efforts 4, 4, 1, 1 (total 10): cum_value_before 0, 4, 8, 9 against 0.8 x 10 = 8 and
    0.95 x 10 = 9.5. b, tied with a and ranked after it by customer_id, brings the
    cumulated effort to exactly 80 % and is still A; c starts exactly at the cut and is B
    (cum_value_before < 8 is strict, decided on exact sums: 0.4 + 0.4 as floats is not
    0.8); d, tied with c, is B too (9 < 9.5)."""
    payments = [(f"p{x}", x, "2026-01-05", "10.00", "EUR", 1, "1.00") for x in "abcd"]
    activities = [
        ("a1", "a", "2026-01-07", "visit", "4.00", "1.00"),
        ("a2", "b", "2026-01-07", "visit", "4.00", "1.00"),
        ("a3", "c", "2026-01-07", "visit", "1.00", "1.00"),
        ("a4", "d", "2026-01-07", "visit", "1.00", "1.00"),
    ]
    cfg = served(tmp_path, payments, activities, ["2026-01"])
    tables = compute_month(cfg, JAN)
    profile = by_customer(rows_of(tables, "customer_service_profile"))
    assert {c: profile[c]["effort_class"] for c in "abcd"} == {
        "a": "A",
        "b": "A",
        "c": "B",
        "d": "B",
    }
    # revenue 10 each (share 0.25): a and b, at effort share 0.4, are not troublesome
    # (0.25 >= 0.4 / 2); everybody is revenue class A (0, 10, 20 < 32; 30 < 32)
    assert {c: profile[c]["profile"] for c in "abcd"} == {
        "a": "good",
        "b": "good",
        "c": "best",
        "d": "best",
    }
    (effort,) = rows_of(tables, "pareto_summary", metric="effort", window_months=1)
    assert (effort["n_class_a"], effort["n_class_b"], effort["n_class_c"]) == (2, 2, 0)
    ranks = by_customer(rows_of(tables, "customer_service_profile"))
    assert ranks["a"]["effort_share"] == ranks["b"]["effort_share"] == pytest.approx(0.4)


def test_a_month_with_payments_and_no_activity_source_is_as_before(tmp_path):
    """Without [service]: no service table, customer_tier without the service columns, the
    same bytes as a configuration that never heard of it; a warehouse loaded so shows the
    service tables empty and the three columns NULL."""
    payments = [
        ("p1", "a", "2026-01-05", "100.00", "EUR", 1, "40.00"),
        ("p2", "b", "2026-01-06", "50.00", "EUR", 1, "60.00"),
    ]
    source = write_payments(tmp_path / "payments.csv", payments, header=COSTED)
    cfg = csv_config(tmp_path, source)
    extract(cfg, date(2026, 1, 1))
    files = write_month(cfg, JAN, tmp_path / "tables")
    assert "customer_service" not in files and "customer_service_profile" not in files
    tier = files["customer_tier"]
    assert "cost_to_serve" not in duckdb.sql(f"select * from '{tier}'").columns
    result = backfill.run_month(cfg, date(2026, 1, 1), extract=False)
    assert result.status == "loaded"
    loaded = warehouse_rows(cfg, "customer_tier").to_pylist()
    assert {r["customer_id"]: r["tier"] for r in loaded} == {"a": 1, "b": 4}
    assert all(r["cost_to_serve"] is None and r["loaded_margin"] is None for r in loaded)
    assert warehouse_rows(cfg, "customer_service").num_rows == 0
    assert warehouse_rows(cfg, "customer_service_profile").num_rows == 0
    # the lake has no activity folder
    assert not (tmp_path / "lake" / "activities").exists()


def test_a_month_loaded_again_without_service_replaces_its_service_rows(tmp_path):
    """[service] removed from the configuration: the month loads again, and its service
    rows go with the rest of the month (the catalog's check that no month is hidden
    allows the month being replaced)."""
    payments = [("p1", "a", "2026-01-05", "100.00", "EUR", 1, "40.00")]
    activities = [("x1", "a", "2026-01-07", "visit", "1.00", "10.00")]
    cfg = served(tmp_path, payments, activities, ["2026-01"])
    assert backfill.run_month(cfg, date(2026, 1, 1), extract=False).status == "loaded"
    assert warehouse_rows(cfg, "customer_service").num_rows == 1
    plain = csv_config(tmp_path, tmp_path / "payments.csv")
    assert backfill.run_month(plain, date(2026, 1, 1), extract=False).status == "loaded"
    assert warehouse_rows(plain, "customer_service").num_rows == 0
    (tier,) = warehouse_rows(plain, "customer_tier").to_pylist()
    assert (tier["customer_id"], tier["cost_to_serve"]) == ("a", None)


def test_a_month_is_computed_only_once_its_activity_history_was_extracted(tmp_path):
    payments = [
        ("p1", "a", "2026-01-05", "100.00", "EUR", 1, "40.00"),
        ("p2", "a", "2026-02-05", "100.00", "EUR", 1, "40.00"),
        ("p3", "a", "2026-03-05", "100.00", "EUR", 1, "40.00"),
    ]
    activities = [("x1", "a", "2026-01-07", "visit", "1.00", "10.00")]  # none in Feb, Mar
    cfg = served(tmp_path, payments, activities, [])
    for month in ("2026-01", "2026-02", "2026-03"):
        extract(cfg, parse_month(month))
    extract(cfg, date(2026, 3, 1), dataset=ACTIVITIES)
    extract(cfg, date(2026, 1, 1), dataset=ACTIVITIES)
    with pytest.raises(MissingMonthError, match="activities of month 2026-02 are not in the lake"):
        compute_month(cfg, MAR)
    manifest = extract(cfg, date(2026, 2, 1), dataset=ACTIVITIES)  # a partition with no activity
    assert manifest.rows_written == 0
    tier = by_customer(rows_of(compute_month(cfg, MAR), "customer_tier"))["a"]
    assert tier["cost_to_serve"] == Decimal("10.00")  # January's, in the 3-month window


def test_activities_are_judged_deduplicated_and_quarantined_like_payments(tmp_path):
    payments = [("p1", "a", "2026-01-05", "100.00", "EUR", 1, "40.00")]
    activities = [
        ("x1", "a", "2026-01-07", "visit", "1.00", "10.00"),
        ("x1", "a", "2026-01-07", "visit", "1.00", "10.00"),  # a duplicate delivery
        ("x2", "a", "2026-01-08", "visit", "-1.00", "10.00"),  # negative hours
        ("x3", "a", "2026-01-08", "visit", "1.00", "1.234"),  # more than 2 decimals
    ]
    cfg = served(tmp_path, payments, activities, [])
    extract(cfg, date(2026, 1, 1))
    with pytest.raises(BadInputError) as caught:
        extract(cfg, date(2026, 1, 1), dataset=ACTIVITIES)
    told = str(caught.value)
    assert "month 2026-01 has 2 bad row(s)" in told
    assert "negative hours: 1 row(s)" in told and "cost with more than 2 decimals" in told
    assert "activity_id='x2'" in told
    manifest = extract(cfg, date(2026, 1, 1), quarantine=True, dataset=ACTIVITIES)
    assert (manifest.rows_read, manifest.rows_duplicate, manifest.rows_written) == (4, 1, 1)
    assert manifest.rows_quarantined == 2
    assert (tmp_path / "lake/quarantine/activities/month=2026-01/bad-rows.parquet").exists()


def test_an_activity_id_given_again_in_another_month_is_refused(tmp_path):
    payments = [("p1", "a", "2026-01-05", "100.00", "EUR", 1, "40.00")]
    activities = [
        ("x1", "a", "2026-01-07", "visit", "1.00", "10.00"),
        ("x1", "a", "2026-02-07", "visit", "1.00", "10.00"),
    ]
    cfg = served(tmp_path, payments, activities, [])
    with pytest.raises(BadInputError, match="activity_id the source gives again"):
        extract(cfg, date(2026, 1, 1), dataset=ACTIVITIES)


def test_a_re_extract_with_cascade_recomputes_the_months_that_read_it(tmp_path):
    payments = [(f"p{m}", "a", f"2026-0{m}-05", "100.00", "EUR", 1, "40.00") for m in (1, 2, 3)]
    activities = [("x1", "a", "2026-01-07", "visit", "1.00", "10.00")]
    cfg = served(tmp_path, payments, activities, [])
    assert {r.status for r in backfill.backfill(cfg, date(2026, 1, 1), date(2026, 3, 1))} == {
        "loaded"
    }
    march = by_customer(warehouse_rows(cfg, "customer_tier").to_pylist())
    assert march["a"]["cost_to_serve"] == Decimal("10.00")
    # January's activities are corrected at the source: the visit cost 70
    write_activities(
        tmp_path / "activities.csv", [("x1", "a", "2026-01-07", "visit", "1.00", "70.00")]
    )
    from typer.testing import CliRunner

    from pipeline.cli import app

    config = tmp_path / "tiers.toml"
    result = CliRunner().invoke(app, ["run", "-c", str(config), "--month", "2026-01", "--cascade"])
    assert result.exit_code == 0, result.output
    tiers = warehouse_rows(cfg, "customer_tier").to_pylist()
    loaded = {(r["month"], r["customer_id"]): r for r in tiers}
    for month in (JAN, FEB, MAR):  # every month whose tier window reads January
        assert loaded[(month, "a")]["cost_to_serve"] == Decimal("70.00")
    assert loaded[(MAR, "a")]["loaded_margin"] == Decimal("110.00")  # 3 x 60 - 70


# -- every source kind -----------------------------------------------------------------

KIND_MONTHS = ("2025-01", "2025-04")  # four months of the golden service case


def _typed_activities(folder: Path, kind: str, activities: Path) -> dict:
    """The golden activities as a typed source: occurred_at TIMESTAMPTZ (Parquet) or the
    business wall clock (DuckDB table), hours and cost DECIMAL(18, 2)."""
    time_type = "timestamptz" if kind == "parquet" else "timestamptz::timestamp"
    rows = (
        f"select activity_id, customer_id, occurred_at::{time_type} as occurred_at, kind, "
        "hours::decimal(18, 2) as hours, cost::decimal(18, 2) as cost "
        "from read_csv(?, header = true, all_varchar = true)"
    )
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = ?", [ZONE])
        if kind == "parquet":
            target = folder / "activities.parquet"
            con.execute(f"copy ({rows}) to '{target}' (format parquet)", [str(activities)])
            return {"kind": "parquet", "path": str(target)}
        target = folder / "service.duckdb"
        con.execute("attach ? as db", [str(target)])
        con.execute(f"create table db.activities as {rows}", [str(activities)])
        return {"kind": "duckdb", "path": str(target), "table": "activities"}
    finally:
        con.close()


def _backfilled(folder: Path, service: dict, environ=None, warehouse=None) -> dict:
    case = GOLDEN / "service"
    sections = {
        "source": {"kind": "csv", "path": str(case / "payments.csv")},
        "business": {"timezone": ZONE, "history_start": START},
        "service": service,
    }
    if warehouse:
        sections["warehouse"] = warehouse
    cfg = load_config(write_config(folder, sections), environ=environ)
    results = backfill.backfill(cfg, *map(parse_month, KIND_MONTHS))
    assert {r.status for r in results} == {"loaded"}, [r.error for r in results]
    months = {r.month for r in results}
    tables = {name: warehouse_rows(cfg, name) for name in TABLES}
    for name in ("customer_service", "customer_service_profile", "customer_tier"):
        assert table_differences("service", name, tables[name], months) == []
    return tables


def test_every_file_source_kind_of_activities_gives_the_tables_of_the_csv(tmp_path):
    activities = GOLDEN / "service" / "activities.csv"
    found = {}
    for kind in ("csv", "parquet", "duckdb"):
        folder = tmp_path / kind
        folder.mkdir()
        service = (
            {"kind": "csv", "path": str(activities)}
            if kind == "csv"
            else _typed_activities(folder, kind, activities)
        )
        found[kind] = _backfilled(folder, service)
    for kind in ("parquet", "duckdb"):
        for name, rows in found[kind].items():
            assert rows.equals(found["csv"][name]), (kind, name)


@pytest.mark.postgres
def test_activities_from_postgres_into_a_postgres_warehouse(
    tmp_path,
    pg,  # noqa: F811
    pg_dsn,  # noqa: F811
    pg_schema,  # noqa: F811
    source_schema,  # noqa: F811
):
    """A help desk's table in PostgreSQL (occurred_at timestamptz, hours and cost numeric),
    loaded into a PostgreSQL warehouse: the same rows as the CSV into DuckDB."""
    table = sql.Identifier(source_schema, "tickets")
    pg.execute(
        sql.SQL(
            "CREATE TABLE {} (ticket text, client text, opened timestamptz, kind text, "
            "hours numeric(10, 2), cost numeric(12, 2))"
        ).format(table)
    )
    activities = GOLDEN / "service" / "activities.csv"
    with pg.cursor() as cur:
        copy = sql.SQL(
            "COPY {} (ticket, client, opened, kind, hours, cost) FROM STDIN "
            "WITH (FORMAT csv, HEADER true)"
        ).format(table)
        with cur.copy(copy) as writer:
            writer.write(activities.read_bytes())
    service = {
        "kind": "postgres",
        "table": f"{source_schema}.tickets",
        "columns": {"activity_id": "ticket", "customer_id": "client", "occurred_at": "opened"},
    }
    (tmp_path / "pg").mkdir()
    in_postgres = _backfilled(
        tmp_path / "pg",
        service,
        environ={"TIERS__SERVICE__DSN": pg_dsn},
        warehouse={"url": pg_dsn, "schema": pg_schema},
    )
    (tmp_path / "csv").mkdir()
    in_duckdb = _backfilled(tmp_path / "csv", {"kind": "csv", "path": str(activities)})
    for name in TABLES:
        key = TABLES[name].key
        rows = sorted(in_postgres[name].to_pylist(), key=lambda r: [str(r[k]) for k in key])
        expected = sorted(in_duckdb[name].to_pylist(), key=lambda r: [str(r[k]) for k in key])
        assert rows == expected, name
    with psycopg.connect(pg_dsn) as conn:  # the BI views answer in PostgreSQL too
        conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(pg_schema)))
        tiers = conn.execute(
            "SELECT tier, n_customers, cost_to_serve FROM tier_cost_to_serve "
            "WHERE is_current ORDER BY tier"
        ).fetchall()
        troublesome = conn.execute("SELECT customer_id FROM troublesome_customers").fetchall()
    april = [r for r in in_duckdb["customer_tier"].to_pylist() if r["month"] == date(2025, 4, 1)]
    assert [t for t, _, _ in tiers] == sorted({r["tier"] for r in april})
    assert sum(n for _, n, _ in tiers) == len(april)
    assert sum(c for _, _, c in tiers) == sum(r["cost_to_serve"] for r in april)
    profile = in_duckdb["customer_service_profile"].to_pylist()
    assert {c for (c,) in troublesome} == {
        r["customer_id"]
        for r in profile
        if r["month"] == date(2025, 4, 1) and r["profile"] == "troublesome"
    }


# -- the report and the BI views ------------------------------------------------------

STRATEGIC_CUSTOMERS = (
    "customer_id,name,owner_email,strategic\n"
    "k00001,Fjord Freight,anna@example.com,true\n"
    "k00014,Berg Bakery,ola@example.com,false\n"
    "k00031,Nordlys Tools,ben@example.com,no\n"
)


@pytest.mark.slow
def test_the_cost_to_serve_section_in_a_browser(tmp_path):
    """Golden service case, 2025-01..2025-06, with a customers source marking k00001 (a Tier 4
    troublesome money loser in June) strategic: the section draws, lists the troublesome and
    the costliest Tier 4 customers as the warehouse says, and shows k00001 in the strategic
    box only, never in a move-away list. The BI views answer the two questions."""
    from pipeline.deliver.report import write_report
    from pipeline.warehouse import open_warehouse

    from month_support import browser_page

    customers = tmp_path / "customers.csv"
    customers.write_text(STRATEGIC_CUSTOMERS)
    case = GOLDEN / "service"
    cfg = load_config(
        write_config(
            tmp_path,
            {
                "source": {"kind": "csv", "path": str(case / "payments.csv")},
                "business": {"timezone": ZONE, "history_start": START},
                "service": {"kind": "csv", "path": str(case / "activities.csv")},
                "customers": {"kind": "csv", "path": str(customers)},
            },
        )
    )
    june = date(2025, 6, 1)
    assert {r.status for r in backfill.backfill(cfg, date(2025, 1, 1), date(2025, 6, 1))} == {
        "loaded"
    }
    profile = rows_of({"p": warehouse_rows(cfg, "customer_service_profile")}, "p", month=june)
    tiers = {
        r["customer_id"]: r
        for r in warehouse_rows(cfg, "customer_tier").to_pylist()
        if r["month"] == june
    }
    troublesome = {r["customer_id"] for r in profile if r["profile"] == "troublesome"}
    assert "k00001" in troublesome and tiers["k00001"]["tier"] == 4
    tier4 = {c for c, r in tiers.items() if r["tier"] == 4}

    path, _, _ = write_report(cfg, june)
    with browser_page(height=1200) as page:
        page.goto(path.as_uri())
        page.wait_for_function("document.body.dataset.charts !== 'pending'", timeout=30_000)
        assert page.evaluate("document.body.dataset.charts") == "ready"
        assert page.problems == []
        assert page.locator("section#service h2").inner_text().startswith("Cost to serve")
        for chart in ("effort", "loaded_whale"):
            assert page.locator(f'[data-chart="{chart}"] svg').count() == 1, chart
        shown = page.evaluate(
            """() => Object.fromEntries(['troublesome', 'tier4-costliest', 'strategic'].map(id =>
                [id, [...document.querySelectorAll('#' + id + ' tr[data-customer-id]')]
                    .map(e => e.dataset.customerId)]))"""
        )
        page.locator("section#service").screenshot(path=str(tmp_path / "cost_to_serve.png"))
    assert shown["strategic"] == ["k00001"]
    assert set(shown["troublesome"]) == troublesome - {"k00001"}
    assert "k00001" not in shown["tier4-costliest"]
    assert set(shown["tier4-costliest"]) <= tier4 and shown["tier4-costliest"]
    costs = [tiers[c]["cost_to_serve"] for c in shown["tier4-costliest"]]
    assert costs == sorted(costs, reverse=True)  # the costliest first

    warehouse = open_warehouse(cfg)
    try:
        catalog = duckdb.connect(str(warehouse.path), read_only=True)
    finally:
        warehouse.close()
    with catalog:
        named = catalog.sql(
            "select customer_id, strategic, action from troublesome_customers"
        ).fetchall()
        cost = catalog.sql(
            "select n_customers, cost_to_serve, loaded_margin "
            "from tier_cost_to_serve where tier = 3 and is_current"
        ).fetchall()
    assert {c for c, _, _ in named} == troublesome
    assert {c: (s, a) for c, s, a in named}["k00001"] == (
        True,
        "strategic: keep, serve deliberately",
    )
    tier3 = [r for r in tiers.values() if r["tier"] == 3]
    assert cost == [
        (
            len(tier3),
            sum(r["cost_to_serve"] for r in tier3),
            sum(r["loaded_margin"] for r in tier3),
        )
    ]


def test_the_gates_check_the_service_tables_against_the_lake(tmp_path):
    """The raw gate of the activity partition and the output gate's service checks pass on
    what was computed, and fail by name on a customer_service that lost a cost, a profile
    whose effort shares do not end at one, and a loaded margin that is not margin minus
    cost to serve."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from pipeline import gates

    payments = [
        ("p1", "a", "2026-01-05", "100.00", "EUR", 1, "40.00"),
        ("p2", "b", "2026-01-06", "50.00", "EUR", 1, "10.00"),
    ]
    activities = [
        ("x1", "a", "2026-01-07", "visit", "1.00", "10.00"),
        ("x2", "b", "2026-01-08", "call", "3.00", "5.00"),
    ]
    cfg = served(tmp_path, payments, activities, ["2026-01"])
    raw = gates.gate_raw_activities(cfg, JAN, tmp_path / "raw")
    assert raw.passed and "raw.activities.cost_sum_matches_manifest" in {
        r.check for r in raw.results
    }
    tables = compute_month(cfg, JAN)
    clean = gates.gate_outputs(cfg, JAN, tables, tmp_path / "clean")
    assert {r.check for r in clean.results if not r.success} == set()

    def changed(name: str, column: str, value) -> pa.Table:
        table = tables[name]
        index = table.column_names.index(column)
        values = pa.array([value] * table.num_rows, table.schema.field(column).type)
        return table.set_column(index, column, values)

    broken = tables | {
        "customer_service": changed("customer_service", "cost_to_serve", Decimal("1.00")),
        "customer_service_profile": changed("customer_service_profile", "effort_share", 0.9),
        "customer_tier": changed("customer_tier", "loaded_margin", Decimal("0.00")),
    }
    report = gates.gate_outputs(cfg, JAN, broken, tmp_path / "broken")
    assert {
        "outputs.customer_service.matches_lake",
        "outputs.customer_service_profile.shares_end_at_one",
        "outputs.customer_tier.loaded_margin_is_margin_minus_cost_to_serve",
    } <= {r.check for r in report.results if not r.success}
    assert pc.sum(tables["customer_service"]["cost_to_serve"]).as_py() == Decimal("15.00")
