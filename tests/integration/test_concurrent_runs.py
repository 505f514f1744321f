"""Two runs of one month at once (a manual re-run while the scheduled run still goes).

With real processes: the lake's writers of a month take turns and keep the files a reader
still needs; a second `tiers run` of a month waits for the first (or, past
`[lake] lock_timeout`, says which run holds the month); and a run whose month was
extracted again from other rows while it computed loads nothing, so the warehouse never
goes back to the older delivery.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pyarrow.parquet as pq
import pytest

from pipeline.errors import MonthSupersededError, classify
from pipeline.lake.extract import extract
from pipeline.lake.partition import (
    Manifest,
    derived_file,
    month_files,
    partition_dir,
    read_manifest,
    read_month,
)
from pipeline.months import parse_month
from pipeline.run import backfill, steps

from pg_support import warehouse_url
from support import csv_config, files_of, write_payments
from test_faults import ROOT, assert_one_message, loaded_case, payments, tiers, warehouse_contents

pytest_plugins = ["pg_support"]  # fixtures: pg_dsn, pg_schema

JAN, FEB = parse_month("2026-01"), parse_month("2026-02")


def _partition_names(cfg, month) -> set[str]:
    return {p.name for p in partition_dir(cfg.lake.root, month).iterdir()}


def _named(manifest: Manifest) -> set[str]:
    return {*manifest.data_files, manifest.customer_month_file, manifest.monthly_ranking_file}


# --- the lake: superseded files stay for the grace period ---------------------------------


def test_a_replaced_partition_keeps_its_files_for_the_grace_period_then_removes_them(
    tmp_path,
) -> None:
    source = write_payments(tmp_path / "p.csv", [("p1", "c1", "2026-01-05", "10.00", "EUR")])
    cfg = csv_config(tmp_path, source, lake={"orphan_grace_seconds": 3600})
    first = extract(cfg, JAN)
    first_files = month_files(cfg.lake.root, JAN)
    write_payments(source, [("p1", "c1", "2026-01-05", "20.00", "EUR")])
    second = extract(cfg, JAN)
    # a run that read the first manifest still reads its files, whole and verified
    assert set(second.superseded) == _named(first)
    assert pq.read_table(first_files[0]).column("amount").to_pylist() == [Decimal("10.00")]
    assert read_month(cfg.lake.root, JAN).column("amount").to_pylist() == [Decimal("20.00")]
    # an hour later (the stamps moved back), the next extract removes the first version's
    # files and keeps the second's
    path = partition_dir(cfg.lake.root, JAN) / "manifest.json"
    manifest = json.loads(path.read_text())
    old = (datetime.now(UTC) - timedelta(seconds=3601)).isoformat(timespec="seconds")
    manifest["superseded"] = dict.fromkeys(manifest["superseded"], old)
    path.write_text(json.dumps(manifest))
    write_payments(source, [("p1", "c1", "2026-01-05", "30.00", "EUR")])
    third = extract(cfg, JAN)
    assert set(third.superseded) == _named(second)
    assert _partition_names(cfg, JAN) == {*_named(third), *_named(second), "manifest.json"}


def test_with_no_grace_a_replaced_partition_keeps_nothing(tmp_path) -> None:
    source = write_payments(tmp_path / "p.csv", [("p1", "c1", "2026-01-05", "10.00", "EUR")])
    cfg = csv_config(tmp_path, source, lake={"orphan_grace_seconds": 0})
    extract(cfg, JAN)
    write_payments(source, [("p1", "c1", "2026-01-05", "20.00", "EUR")])
    manifest = extract(cfg, JAN)
    assert manifest.superseded == {}
    assert _partition_names(cfg, JAN) == {*_named(manifest), "manifest.json"}


WRITER = """
import sys
from datetime import date
from pipeline.config import load_config
from pipeline.lake.extract import extract
cfg = load_config(sys.argv[1])
for _ in range(int(sys.argv[2])):
    extract(cfg, date(2026, 1, 1))
"""

READER = """
import sys, time
import pyarrow.parquet as pq
from pipeline.config import load_config
from pipeline.lake.partition import month_files
from pipeline.months import parse_month
cfg = load_config(sys.argv[1])
reads, deadline = 0, time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    for path in month_files(cfg.lake.root, parse_month("2026-01")):
        amounts = set(pq.read_table(path).column("amount").to_pylist())
        assert len(amounts) == 1, amounts  # one writer's delivery, never a mix
    reads += 1
print(reads)
"""


def test_concurrent_extracts_of_a_month_and_a_reader_never_miss_a_file(tmp_path) -> None:
    """Three writers re-extract the month from sources of their own (other amounts), 15
    times each, while a reader reads the month over and over: every process succeeds,
    and the month ends whole, as one writer delivered it."""
    lake_root = tmp_path / "lake"
    configs = []
    for amount in ("10.00", "20.00", "30.00"):
        folder = tmp_path / f"writer-{amount}"
        folder.mkdir()
        rows = [(f"p{i}", f"c{i % 7}", "2026-01-05", amount, "EUR") for i in range(40)]
        source = write_payments(folder / "p.csv", rows)
        csv_config(folder, source, lake={"root": str(lake_root)})
        configs.append(folder / "tiers.toml")
    extract(
        csv_config(tmp_path, tmp_path / "writer-10.00" / "p.csv", lake={"root": str(lake_root)}),
        JAN,
    )

    def start(script: str, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", script, *map(str, args)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    reader = start(READER, configs[0], 12)
    writers = [start(WRITER, config, 15) for config in configs]
    for process in [*writers, reader]:
        out, err = process.communicate(timeout=180)
        assert process.returncode == 0, err
    assert int(out) > 10  # the reader read the month many times over
    cfg = csv_config(tmp_path, tmp_path / "writer-10.00" / "p.csv", lake={"root": str(lake_root)})
    manifest = read_manifest(cfg.lake.root, JAN)
    amounts = read_month(cfg.lake.root, JAN).column("amount").to_pylist()
    assert len(amounts) == 40 and len(set(amounts)) == 1
    assert Decimal(manifest.amount_sum) == 40 * amounts[0]
    derived = pq.read_table(derived_file(cfg.lake.root, JAN, "customer_month"))
    assert sum(derived.column("revenue").to_pylist()) == Decimal(manifest.amount_sum)
    assert not [n for n in _partition_names(cfg, JAN) if n.startswith(".tmp")]


# --- two `tiers run` of one month -------------------------------------------------------

HOLD_MONTH = """
import sys, time
from pipeline.config import load_config
from pipeline.lake.partition import hold_months
from pipeline.months import parse_month
with hold_months(load_config(sys.argv[1]), [parse_month("2026-02")], "scheduled-1"):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_a_second_run_of_a_month_waits_for_the_first_and_then_loads(tmp_path) -> None:
    cfg = loaded_case(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_MONTH, str(tmp_path / "tiers.toml")],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    second = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", "-c", "tiers.toml", "-m", "2026-02"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    told = second.stderr.readline()  # the one line it says while it waits
    assert "month 2026-02: another run holds it (run scheduled-1, pid" in told, told
    before = warehouse_contents(cfg)
    time.sleep(1)
    assert second.poll() is None and warehouse_contents(cfg) == before  # it waits
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert holder.wait(timeout=30) == 0
    assert second.wait(timeout=180) == 0, second.stderr.read()
    amounts = read_month(cfg.lake.root, FEB).column("amount").to_pylist()
    assert Decimal("5000.00") in amounts  # the second run extracted and loaded the restated month
    assert warehouse_contents(cfg) != before


def test_a_month_held_longer_than_lock_timeout_is_named_and_nothing_changes(tmp_path) -> None:
    cfg = loaded_case(tmp_path, lake={"lock_timeout": 1})
    lake_before, warehouse_before = files_of(tmp_path / "lake"), warehouse_contents(cfg)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_MONTH, str(tmp_path / "tiers.toml")],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        result = tiers("run", "-c", "tiers.toml", "-m", "2026-02", cwd=tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert_one_message(
        result,
        "month 2026-02: another run still held it after 1 s",
        "run scheduled-1",
        "Wait for that run to end",
        "lock_timeout",
    )
    assert files_of(tmp_path / "lake") == lake_before
    assert warehouse_contents(cfg) == warehouse_before
    again = tiers("run", "-c", "tiers.toml", "-m", "2026-02", cwd=tmp_path)
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize("warehouse", ["duckdb", "postgresql"])
def test_two_runs_of_a_month_started_together_both_load_many_times_over(
    tmp_path, warehouse, request
) -> None:
    """The issue's case: two `tiers run` of one month started at once, three rounds, the
    source restated between rounds: both runs exit 0 every time and the warehouse holds
    the month as the source gives it."""
    config = {}
    if warehouse == "postgresql":
        config["warehouse"] = {
            "url": warehouse_url(request.getfixturevalue("pg_dsn")),
            "schema": request.getfixturevalue("pg_schema"),
        }
    cfg = loaded_case(tmp_path, **config)
    for round_ in range(3):
        extra = [(f"x{round_}", "c2", "2026-02-20", f"{100 + round_}.00", "EUR")]
        write_payments(tmp_path / "p.csv", payments(extra=extra))
        both = [
            subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "run", "-c", "tiers.toml", "-m", "2026-02"],
                cwd=tmp_path,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        for run in both:
            _, err = run.communicate(timeout=240)
            assert run.returncode == 0, err
        latest = runner_latest_run(cfg, FEB)
        assert latest["source_fingerprint"] == read_manifest(cfg.lake.root, FEB).fingerprint


def pipeline_runs(cfg, month) -> list[dict]:
    from pipeline.warehouse import open_warehouse

    warehouse = open_warehouse(cfg)
    try:
        rows = warehouse.read_table("pipeline_run").to_pylist()
    finally:
        warehouse.close()
    return sorted((r for r in rows if r["month"] == month), key=lambda r: r["recorded_at"])


def runner_latest_run(cfg, month) -> dict:
    return [r for r in pipeline_runs(cfg, month) if r["status"] == "loaded"][-1]


# --- Airflow's runs: steps in separate processes ----------------------------------------


def _first_steps(cfg, run_id: str) -> None:
    steps.extract_step(cfg, FEB, run_id)
    steps.raw_gate_step(cfg, FEB, run_id)


def _last_steps(cfg, run_id: str) -> None:
    steps.compute_step(cfg, FEB, run_id)
    steps.output_gates_step(cfg, FEB, run_id)
    steps.load_step(cfg, FEB, run_id)


def test_a_run_whose_month_was_extracted_again_meanwhile_loads_nothing(tmp_path) -> None:
    cfg = loaded_case(tmp_path)
    _first_steps(cfg, "scheduled")  # reads the restated February (with p999)
    write_payments(
        tmp_path / "p.csv", payments(extra=[("p998", "c2", "2026-02-26", "7.00", "EUR")])
    )
    backfill.run_month(cfg, FEB, run_id="manual")  # the manual re-run, start to end
    after_manual = warehouse_contents(cfg)
    with pytest.raises(MonthSupersededError) as refused:
        _last_steps(cfg, "scheduled")  # the scheduled run goes on, after its compute
    message = str(refused.value)
    assert "month 2026-02 was extracted again" in message
    assert "loads nothing" in message and "tiers run --month 2026-02" in message
    assert classify(refused.value) == "permanent"  # a retry of the load cannot help
    # the warehouse keeps the newer delivery; the refused run is recorded as failed
    assert warehouse_contents(cfg)["customer_month"] == after_manual["customer_month"]
    runs = pipeline_runs(cfg, FEB)
    assert [r["status"] for r in runs if r["run_id"] == "scheduled"] == ["failed"]
    assert runner_latest_run(cfg, FEB)["run_id"] == "manual"


def test_a_run_whose_month_was_extracted_again_unchanged_loads(tmp_path) -> None:
    cfg = loaded_case(tmp_path)
    _first_steps(cfg, "scheduled")
    backfill.run_month(cfg, FEB, run_id="manual")  # the same rows again
    _last_steps(cfg, "scheduled")  # same fingerprint: its results are the month's
    assert runner_latest_run(cfg, FEB)["run_id"] == "scheduled"
