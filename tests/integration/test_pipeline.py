"""The whole pipeline: source file -> lake -> SQL -> gates -> warehouse."""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.compute.models import MONTH_ORDER
from pipeline.config import load_config
from pipeline.run import backfill, steps
from pipeline.schema.tables import TABLES, month_tables
from pipeline.sql import SQL_DIR

from support import (
    assert_same_reporting_tables,
    backfill_matching_golden,
    backfilled_through_the_cli,
    csv_config,
    typed_source,
    warehouse_rows,
    write_payments,
)

GOLDEN_CASES = {
    # case: (business time zone, history_start, last month)
    "basics": ("UTC", "2026-01", "2026-03"),
    "full": ("Europe/Oslo", "2025-01", "2026-03"),
    # the payments of full plus activities.csv (spec: "Service effort and cost to serve")
    "service": ("Europe/Oslo", "2025-01", "2026-03"),
}


def test_every_model_of_sql_has_its_place_in_the_months_order() -> None:
    """A model file of sql/ runs in the month's one order (pipeline/compute/models.py); the
    others stage a source's rows for the extract, define the BI views or the backtest."""
    staging = {"staging_payments", "staging_activities", "month_payments", "month_activities"}
    others = {"warehouse_views", "backtest"}
    models = {path.stem for path in SQL_DIR.glob("*.sql")} - staging - others
    assert {sql_file for sql_file, _, _ in MONTH_ORDER} == models


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_golden_case_through_the_pipeline(golden, tmp_path, case) -> None:
    zone, start, last = GOLDEN_CASES[case]
    activities = golden / case / "activities.csv"
    service = {"service": {"kind": "csv", "path": str(activities)}} if activities.exists() else {}
    cfg = csv_config(
        tmp_path, golden / case / "payments.csv", timezone=zone, history_start=start, **service
    )
    results = backfill_matching_golden(cfg, case, start, last)
    runs = warehouse_rows(cfg, "pipeline_run").to_pylist()
    assert len(runs) == len(results)
    assert {r["status"] for r in runs} == {"loaded"}
    assert all(r["checks_failed"] == 0 and r["checks_passed"] > 0 for r in runs)


def _snapshot(cfg) -> dict[str, list]:
    return {name: sorted(warehouse_rows(cfg, name).to_pylist(), key=repr) for name in TABLES}


def test_backfill_in_parallel_gives_the_same_warehouse(golden, tmp_path) -> None:
    source = golden / "full" / "payments.csv"
    configs = []
    for name in ("serial", "parallel"):
        (tmp_path / name).mkdir()
        configs.append(
            csv_config(tmp_path / name, source, timezone="Europe/Oslo", history_start="2025-01")
        )
    serial, parallel = configs
    backfill.backfill(serial, date(2025, 1, 1), date(2025, 8, 1), jobs=1)
    results = backfill.backfill(parallel, date(2025, 1, 1), date(2025, 8, 1), jobs=2)
    assert [r.status for r in results] == ["loaded"] * 8
    assert _snapshot(serial) == _snapshot(parallel)


def test_running_a_month_twice_gives_identical_tables(golden, tmp_path) -> None:
    cfg = csv_config(tmp_path, golden / "basics" / "payments.csv")
    backfill.backfill(cfg, date(2026, 1, 1), date(2026, 3, 1))
    before = _snapshot(cfg)
    backfill.run_month(cfg, date(2026, 2, 1))
    assert _snapshot(cfg) == before
    runs = warehouse_rows(cfg, "pipeline_run").to_pylist()
    assert [r["month"] for r in runs].count(date(2026, 2, 1)) == 2  # both runs are recorded


def test_a_bad_month_loads_nothing_and_is_recorded(tmp_path) -> None:
    source = tmp_path / "p.csv"
    source.write_text(
        "payment_id,customer_id,paid_at,amount,currency\n"
        "p1,c1,2026-01-05,10.00,EUR\np2,c1,2026-02-05,ten,EUR\n"
    )
    cfg = csv_config(tmp_path, source)
    results = backfill.backfill(cfg, date(2026, 1, 1), date(2026, 2, 1))
    assert [r.status for r in results] == ["loaded", "failed"]
    assert "unparseable amount" in results[1].error
    months = set(warehouse_rows(cfg, "customer_month").column("month").to_pylist())
    assert months == {date(2026, 1, 1)}
    runs = {r["month"]: r for r in warehouse_rows(cfg, "pipeline_run").to_pylist()}
    assert runs[date(2026, 2, 1)]["status"] == "failed"
    assert "extract" in runs[date(2026, 2, 1)]["error"]


def test_cascade_recomputes_the_months_that_read_a_restated_month(golden, tmp_path) -> None:
    source = tmp_path / "p.csv"
    source.write_text((golden / "basics" / "payments.csv").read_text())
    cfg = csv_config(tmp_path, source)
    backfill.backfill(cfg, date(2026, 1, 1), date(2026, 3, 1))
    assert backfill.months_reading(cfg, date(2026, 1, 1)) == [
        date(2026, 1, 1),
        date(2026, 2, 1),
        date(2026, 3, 1),
    ]
    # a late payment of January makes c07 the biggest customer of the quarter
    source.write_text(source.read_text() + "p999,c07,2026-01-28T10:00:00Z,5000.00,EUR\n")
    backfill.run_month(cfg, date(2026, 1, 1))
    for month in backfill.months_reading(cfg, date(2026, 1, 1))[1:]:
        backfill.run_month(cfg, month, extract=False)
    rows = warehouse_rows(cfg, "customer_abc").to_pylist()
    march = [
        r
        for r in rows
        if r["month"] == date(2026, 3, 1)
        and r["metric"] == "revenue"
        and r["window_months"] == 3
        and r["rank"] == 1
    ]
    assert march[0]["customer_id"] == "c07"


LOAD_KILLER = """
import os, signal, sys
from datetime import date
from pipeline.config import load_config
from pipeline.run import backfill
from pipeline.warehouse.duckdb import DuckDBWarehouse

real = DuckDBWarehouse._insert_run
def die(self, run):  # every table of the month deleted and inserted, not committed
    os.kill(os.getpid(), signal.SIGKILL)
DuckDBWarehouse._insert_run = die
backfill.run_month(load_config(sys.argv[1]), date(2026, 2, 1), extract=False)
"""


def test_a_load_killed_mid_transaction_leaves_the_previous_month(golden, tmp_path) -> None:
    source = tmp_path / "p.csv"
    source.write_text((golden / "basics" / "payments.csv").read_text())
    cfg = csv_config(tmp_path, source)
    backfill.backfill(cfg, date(2026, 1, 1), date(2026, 3, 1))
    before = _snapshot(cfg)
    source.write_text(source.read_text() + "p999,c07,2026-02-28T10:00:00Z,5000.00,EUR\n")
    steps.extract_step(cfg, date(2026, 2, 1), "restatement")
    script = tmp_path / "kill_load.py"
    script.write_text(LOAD_KILLER)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "tiers.toml")],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    assert _snapshot(cfg) == before
    backfill.run_month(cfg, date(2026, 2, 1), extract=False)
    february = [
        r
        for r in warehouse_rows(cfg, "customer_month").to_pylist()
        if r["month"] == date(2026, 2, 1) and r["customer_id"] == "c07"
    ]
    assert str(february[0]["revenue"]) == "5060.00"


def test_a_month_large_enough_to_run_in_parallel_computes_to_the_same_bytes(tmp_path) -> None:
    """DuckDB splits a big month over its threads: the lake partition and every computed
    table must still be the same bytes, run after run (exact sums, a total order)."""
    import duckdb

    from pipeline.compute.month import write_month
    from pipeline.lake.extract import extract
    from pipeline.lake.partition import month_files

    source = tmp_path / "payments.parquet"
    duckdb.sql(
        f"""
        copy (
            select 'p' || i as payment_id, 'c' || (hash(i) % 30000) as customer_id,
                timestamptz '2026-01-01 00:00:00+00' + to_seconds(i * 8) as paid_at,
                ((hash(i * 7) % 200000)::decimal(18, 2) / 100 - 100)::decimal(18, 2) as amount,
                'EUR' as currency, (i % 5)::integer as units,
                ((hash(i * 3) % 5000)::decimal(18, 2) / 100)::decimal(18, 2) as cost
            from range(300000) as r(i)
        ) to '{source}' (format parquet)
        """
    )
    cfg = csv_config(tmp_path, source, source={"kind": "parquet"})
    january, lake_bytes = date(2026, 1, 1), []
    for _ in range(2):
        extract(cfg, january)
        lake_bytes.append([Path(f).read_bytes() for f in month_files(cfg.lake.root, january)])
    assert lake_bytes[0] == lake_bytes[1]
    first = write_month(cfg, january, tmp_path / "first")
    second = write_month(cfg, january, tmp_path / "second")
    assert first.keys() == second.keys() == {t.name for t in month_tables(service=False)}
    for name in first:
        assert first[name].read_bytes() == second[name].read_bytes(), name


# The months of the golden full case that the source-kind tests backfill (three months,
# payments within hours of month ends, a duplicate delivery, units and cost).
SOURCE_KIND_MONTHS = ("2025-01", "2025-03")


def test_every_file_source_kind_backfills_to_the_bytes_of_the_csv(golden, tmp_path) -> None:
    """The same payments as CSV text, as a typed Parquet file and as a DuckDB table: a
    backfill of three months with ``tiers backfill`` gives the same reporting tables, file
    for file (a typed source is opened for the range, then for each month, on one
    connection). test_postgres.py does the same for a PostgreSQL source."""
    payments, found = golden / "full" / "payments.csv", {}
    for kind in ("csv", "parquet", "duckdb"):
        folder = tmp_path / kind
        folder.mkdir()
        source = (
            {} if kind == "csv" else typed_source(folder, kind, payments, timezone="Europe/Oslo")
        )
        cfg = csv_config(
            folder, payments, timezone="Europe/Oslo", history_start="2025-01", source=source
        )
        assert cfg.source.kind == kind
        found[kind] = backfilled_through_the_cli(folder / "tiers.toml", *SOURCE_KIND_MONTHS)
    for kind in ("parquet", "duckdb"):
        assert_same_reporting_tables(found[kind], found["csv"], months=3)


def test_parquet_as_pandas_writes_it_loads_as_its_cents(tmp_path) -> None:
    """pandas writes float64 money, nanosecond timestamps and its index as a column
    (__index_level_0__): the months load as the CSV of the same cents does, and the rounded
    floats are counted in the manifest, the CLI's summary and pipeline_run."""
    import pandas as pd
    from typer.testing import CliRunner

    from pipeline.cli import app

    text = [
        # payment_id, customer_id, paid_at (Oslo wall clock), amount, units, cost
        ("p1", "c1", "2026-01-05 10:00:00", "139.93", 7, "30.00"),  # 7 x 19.99 in a float
        ("p2", "c1", "2026-01-31 23:30:00", "0.30", 1, "0.10"),  # 0.1 + 0.2
        ("p3", "c2", "2026-01-10 08:00:00.123456789", "-19.99", 0, "0.00"),  # a refund
        ("p4", "c2", "2026-02-01 00:10:00", "0.00", 1, "0.00"),  # 4.440892e-16
        ("p5", "c3", "2026-02-02 12:00:00", "1000.10", 2, "250.00"),
    ]
    frame = pd.DataFrame(
        {
            "payment_id": [r[0] for r in text],
            "customer_id": [r[1] for r in text],
            "paid_at": pd.to_datetime([r[2] for r in text], format="ISO8601"),
            "amount": [7 * 19.99, 0.1 + 0.2, -19.990000000000002, 4.440892e-16, 1000.1],
            "currency": "EUR",
            "units": [r[4] for r in text],
            "cost": [30.0, 0.1, 0.0, 0.0, 250.0],
        },
        index=[7, 3, 11, 2, 5],
    )
    assert frame["amount"].tolist()[0] == 139.92999999999998
    (tmp_path / "pandas").mkdir()
    frame.to_parquet(tmp_path / "pandas" / "payments.parquet")
    assert "__index_level_0__" in pq.read_schema(tmp_path / "pandas" / "payments.parquet").names
    assert str(pq.read_schema(tmp_path / "pandas" / "payments.parquet").field("paid_at").type) == (
        "timestamp[ns]"
    )
    (tmp_path / "csv").mkdir()
    header = ("payment_id", "customer_id", "paid_at", "amount", "currency", "units", "cost")
    csv_rows = [(r[0], r[1], r[2], r[3], "EUR", r[4], r[5]) for r in text]
    write_payments(tmp_path / "csv" / "payments.csv", csv_rows, header)
    found = {}
    for kind, name in (("csv", "payments.csv"), ("parquet", "payments.parquet")):
        folder = tmp_path / ("pandas" if kind == "parquet" else kind)
        csv_config(
            folder,
            folder / name,
            timezone="Europe/Oslo",
            source={"kind": kind},
        )
        found[kind] = backfilled_through_the_cli(folder / "tiers.toml", "2026-01", "2026-02")
    assert_same_reporting_tables(found["parquet"], found["csv"], months=2)
    cfg = load_config(tmp_path / "pandas" / "tiers.toml")
    runs = {r["month"]: r["rows_rounded"] for r in warehouse_rows(cfg, "pipeline_run").to_pylist()}
    assert runs == {date(2026, 1, 1): 3, date(2026, 2, 1): 1}
    extracted = CliRunner().invoke(
        app, ["extract", "-c", str(tmp_path / "pandas" / "tiers.toml"), "-m", "2026-01"]
    )
    assert extracted.exit_code == 0, extracted.output
    assert "3 row(s) read, 0 duplicate(s) dropped, 3 float(s) rounded to the cent" in (
        extracted.output
    )
