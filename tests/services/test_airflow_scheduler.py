"""The DAG under a real Airflow scheduler (LocalExecutor, PostgreSQL metadata database).

One Airflow serves the whole story, as an operator would live it on the golden ``basics``
case (2026-01 .. 2026-03), asserting on the warehouse after each step:

1. a REST trigger with the ``month`` Param loads exactly that month;
2. ``airflow backfill create`` over that month and the next two, after the manual run,
   creates and loads all three months: none is skipped;
3. a restatement of January, triggered with ``cascade``, re-extracts January and
   recomputes February and March: the warehouse equals ``tiers backfill`` on the new data;
4. a bad row fails the run at once (no retry) and loads nothing.

The quality gates are off here (they run in ``test_dags.py``): this test is about which
months run and what the warehouse ends up holding.
"""

from __future__ import annotations

import json
import time
from datetime import date

import pytest
from airflow_server import AirflowServer

from pipeline.lake.partition import read_manifest
from pipeline.months import parse_month
from pipeline.run.schedule import pipeline_run_id
from pipeline.schema.tables import TABLES

from golden import table_differences
from pg_support import require_postgres
from support import write_config

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

JAN, FEB, MAR = (parse_month(m) for m in ("2026-01", "2026-02", "2026-03"))
MONTH_CHAIN = [
    "extract",
    "raw_gate",
    "compute",
    "output_gates",
    "load",
    "report",
    "publish",
]
# what publish skips without starting them: no [notify] here, and no cascade asked for
SKIPPED = {"notify": ("skipped", 0), "cascade": ("skipped", 0)}


def config(folder, payments):
    folder.mkdir(parents=True, exist_ok=True)
    return write_config(
        folder,
        {
            "source": {"kind": "csv", "path": str(payments)},
            "business": {"timezone": "UTC", "currency": "EUR", "history_start": "2026-01"},
            # the gates are Great Expectations runs of 10-40 s per task on two cores; the
            # dag.test() tests cover them, this test covers which months run and load
            "checks": {"enabled": False},
        },
    )


def table(config_file, name):
    from pipeline.config import load_config
    from pipeline.warehouse import open_warehouse

    warehouse = open_warehouse(load_config(config_file))
    try:
        return warehouse.read_table(name)
    finally:
        warehouse.close()


def loaded_months(config_file) -> dict[str, set]:
    return {name: set(table(config_file, name).column("month").to_pylist()) for name in TABLES}


def records(config_file) -> set[tuple]:
    return {
        (r["month"], r["run_id"], r["status"])
        for r in table(config_file, "pipeline_run").to_pylist()
    }


def rows(config_file, name) -> list:
    return sorted(table(config_file, name).to_pylist(), key=repr)


def preloads(server, timeout: float = 120) -> int:
    """How many times the scheduler's log says it preloaded (waiting for the first)."""
    deadline = time.monotonic() + timeout
    while True:
        found = (server.home / "scheduler.log").read_text().count("tiers preload (seconds)")
        if found or time.monotonic() > deadline:
            return found
        time.sleep(1)


def run_state(config_file, month: str, airflow_run_id: str) -> dict:
    folder = config_file.parent / "runs" / pipeline_run_id(airflow_run_id) / f"month={month}"
    return json.loads((folder / "run.json").read_text())


def states(server, run_id) -> dict[str, tuple[str, int]]:
    return {
        task: (ti["state"], ti["try_number"]) for task, ti in server.task_instances(run_id).items()
    }


def test_runs_under_a_real_scheduler_load_exactly_the_months_asked_for(golden, tmp_path):
    started = time.monotonic()
    phases: dict[str, float] = {}

    def phase(name: str) -> None:
        phases[name] = round(time.monotonic() - started - sum(phases.values()), 1)

    pg_dsn = require_postgres()
    payments = tmp_path / "payments.csv"
    payments.write_text((golden / "basics" / "payments.csv").read_text())
    config_file = config(tmp_path / "airflow", payments)

    with AirflowServer(
        tmp_path / "airflow-home", pg_dsn, env={"TIERS_CONFIG": str(config_file)}
    ) as server:
        phase("start")
        # the scheduler imports the tasks' modules before forking its workers, once
        assert preloads(server) == 1, server.logs()
        # 1. REST, no logical date, the month as a Param: exactly January is loaded
        january = server.trigger({"month": "2026-01"}, note="first load")
        run = server.wait_for_runs([january])[january]
        assert run["state"] == "success", server.logs()
        # the month shows on the run in the UI: the plugin writes it before the user's note
        assert run["note"] == "Business month 2026-01 - first load"
        assert (run["logical_date"], run["conf"]["month"]) == (None, "2026-01")
        assert states(server, january) == {
            **{task: ("success", 1) for task in MONTH_CHAIN},
            **SKIPPED,
        }
        assert set().union(*loaded_months(config_file).values()) == {JAN}
        assert records(config_file) == {(JAN, pipeline_run_id(january), "loaded")}
        problems = []
        for name in TABLES:
            problems += table_differences("basics", name, table(config_file, name), {JAN})
        assert problems == []

        phase("rest_month")
        # 2. the README's backfill over January .. March, after the manual run of January
        output = server.cli(
            "backfill",
            "create",
            "--dag-id",
            "tiers_monthly",
            "--from-date",
            "2026-01-01T00:00:00+00:00",
            "--to-date",
            "2026-03-01T00:00:00+00:00",
        )
        backfill_runs = [r for r in server.runs() if r["run_type"] == "backfill"]
        assert [r["logical_date"][:10] for r in backfill_runs] == [
            "2026-01-01",
            "2026-02-01",
            "2026-03-01",
        ], output
        finished = server.wait_for_runs([r["dag_run_id"] for r in backfill_runs], timeout=420)
        assert {r["state"] for r in finished.values()} == {"success"}, server.logs()
        assert [finished[r["dag_run_id"]]["note"] for r in backfill_runs] == [
            "Business month 2026-01",
            "Business month 2026-02",
            "Business month 2026-03",
        ]
        by_month = {r["logical_date"][:7]: r["dag_run_id"] for r in backfill_runs}
        # the backfill draws the report of its last month only; the others say how to
        reports = {
            m: run_state(config_file, m, run_id).get("report") for m, run_id in by_month.items()
        }
        assert reports["2026-01"] is None and reports["2026-02"] is None, reports
        assert reports["2026-03"].endswith("month=2026-03/report.html"), reports
        for month in ("2026-01", "2026-02"):  # skipped without a process; load says why
            assert states(server, by_month[month])["report"] == ("skipped", 0)
            assert f"tiers report --month {month}" in server.task_log(by_month[month], "load")
        assert states(server, by_month["2026-03"])["report"] == ("success", 1)
        assert "report 2026-03: to draw: the last month of the backfill" in server.task_log(
            by_month["2026-03"], "load"
        )
        assert {
            (parse_month(m), pipeline_run_id(run_id), "loaded") for m, run_id in by_month.items()
        } <= records(config_file)
        problems = []
        for name in TABLES:
            problems += table_differences("basics", name, table(config_file, name), {JAN, FEB, MAR})
        assert problems == []

        phase("backfill")
        # 3. January is restated (a late refund): cascade re-extracts it, recomputes the rest
        before = read_manifest(tmp_path / "airflow" / "lake", JAN).fingerprint
        restated = payments.read_text() + "p990,c02,2026-01-30T12:00:00Z,-7.00,EUR\n"
        payments.write_text(restated)
        # with the README's CLI command: no --logical-date, the month and cascade as conf
        cascade = server.cli_trigger({"month": "2026-01", "cascade": True})
        run = server.wait_for_runs([cascade], timeout=300)[cascade]
        assert run["state"] == "success", server.logs()
        assert (run["run_type"], run["logical_date"]) == ("manual", None)
        assert run["note"] == "Business month 2026-01"
        assert states(server, cascade) == {
            **{task: ("success", 1) for task in [*MONTH_CHAIN, "cascade"]},
            "notify": ("skipped", 0),
        }
        assert read_manifest(tmp_path / "airflow" / "lake", JAN).fingerprint != before
        this_run = pipeline_run_id(cascade)
        assert {
            (JAN, this_run, "loaded"),
            (FEB, this_run + "-cascade", "loaded"),
            (MAR, this_run + "-cascade", "loaded"),
        } <= records(config_file)
        from pipeline.config import load_config
        from pipeline.run import backfill

        cli_payments = tmp_path / "cli" / "payments.csv"
        cli_payments.parent.mkdir()
        cli_payments.write_text(restated)
        cli_config = config(tmp_path / "cli", cli_payments)
        results = backfill.backfill(load_config(cli_config), date(2026, 1, 1), date(2026, 3, 1))
        assert [r.status for r in results] == ["loaded"] * 3
        for name in TABLES:
            if name != "pipeline_run":
                assert rows(config_file, name) == rows(cli_config, name), name
        assert rows(config_file, "customer_month") != []
        changed = table_differences(
            "basics", "customer_month", table(config_file, "customer_month")
        )
        assert changed, "the restated January must differ from the golden case"

        phase("cascade")
        # 4. a bad row: the run fails at once, without retries, and loads nothing
        bad = tmp_path / "bad" / "payments.csv"
        bad.parent.mkdir()
        bad.write_text(
            (golden / "basics" / "payments.csv").read_text()
            + "p900,c01,2026-01-12T10:00:00Z,twelve,EUR\n"
        )
        bad_config = config(tmp_path / "bad", bad)
        server.set_variable("tiers_config", str(bad_config))
        failing = server.trigger({"month": "2026-01"})
        run = server.wait_for_runs([failing])[failing]
        assert run["state"] == "failed"
        assert states(server, failing) == {
            "extract": ("failed", 1),
            **{task: ("upstream_failed", 0) for task in [*MONTH_CHAIN[1:], *SKIPPED]},
        }
        assert "unparseable amount" in server.task_log(failing, "extract")
        assert all(months == set() for months in loaded_months(bad_config).values())
        phase("bad_row")

        # 5. a manual run given the logical date of a scheduled month is refused at once:
        # it would make `airflow backfill create` skip 2025-06
        dated = server.cli_trigger({"month": "2025-05"}, "--logical-date", "2025-06-01T00:00:00Z")
        run = server.wait_for_runs([dated])[dated]
        assert run["state"] == "failed"
        assert states(server, dated)["extract"] == ("failed", 1)
        assert run["note"].startswith("No business month: this manual run has logical date")
        assert "`airflow backfill create` would skip 2025-06" in server.task_log(dated, "extract")
        phase("dated_manual_run")
        assert preloads(server) == 1  # no task, forked from the scheduler, preloaded again
    phase("stop")
    print(json.dumps({"real_scheduler_seconds": phases}))
