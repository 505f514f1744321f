"""The Airflow DAG ``tiers_monthly``: parsing, schedule -> month mapping, and real runs.

Three tiers, as in the project's examples: integrity of the DAG file (parsed in a fresh
interpreter, timed, with the modules it pulls in), the month of every kind of run (with
the intervals Airflow's own timetable code produces), and ``dag.test()`` runs against a
throw-away SQLite metadata DB that load the golden ``basics`` case into a warehouse.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from pipeline.months import parse_month
from pipeline.run.schedule import (
    CONFIG_ENV,
    ScheduleError,
    backfill_window,
    check_business_timezone,
    config_path,
    missing_history_command,
    month_for_interval,
    pipeline_run_id,
    report_due,
    run_month,
    schedule_timezone,
)
from pipeline.schema.tables import TABLES

import airflow_support as af
from golden import expected_rows, table_differences
from support import write_config

PROBE_ZONE = "Europe/Oslo"  # the DAG is parsed with TIERS_TIMEZONE set to it
# the month's chain; after publish, notify and cascade both follow it
TASK_CHAIN = ["extract", "raw_gate", "compute", "output_gates", "load", "report", "publish"]
AFTER_PUBLISH = ["notify", "cascade"]
# a month of the basics case: no [notify] section and no cascade asked for, so publish
# skips both (without starting them); load draws the report of a manual run
MONTH_STATES = {**dict.fromkeys(TASK_CHAIN, "success"), "notify": "skipped", "cascade": "skipped"}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- the DAG file ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> dict:
    return af.probe(tmp_path_factory.mktemp("probe"), env={"TIERS_TIMEZONE": PROBE_ZONE})


def test_dag_file_parses_fast_without_heavy_imports(probe):
    assert probe["parse_seconds"] < 2.0
    assert all(seconds < 2.0 for seconds in probe["dagbag"]["file_seconds"])
    watched = {"duckdb", "pyarrow", "great_expectations", "pandas", "pipeline.lake.partition"}
    assert watched | {"pipeline.compute.month", "pipeline.run.steps"} <= set(af.HEAVY_MODULES)
    assert probe["heavy_modules"] == []  # none of them is in sys.modules after parsing
    # from the project, only the pure scheduling helpers are imported at parse time
    allowed = {
        "pipeline",
        "pipeline.errors",
        "pipeline.months",
        "pipeline.run",
        "pipeline.run.schedule",
    }
    assert set(probe["pipeline_modules"]) <= allowed


def test_dagbag_imports_the_dag_without_errors_or_warnings(probe):
    assert probe["dagbag"]["dag_ids"] == ["tiers_monthly"]
    assert probe["dagbag"]["import_errors"] == {}
    assert probe["dagbag"]["warnings"] == {}  # DagBag warns on unknown pools, among others


def test_tasks_form_the_monthly_chain(probe):
    tasks = probe["dag"]["tasks"]
    assert set(tasks) == {*TASK_CHAIN, *AFTER_PUBLISH}
    for task_id, next_id in zip(TASK_CHAIN[:4], TASK_CHAIN[1:5], strict=True):
        assert tasks[task_id]["downstream"] == [next_id]
    # load goes on to the report when it is due, and to publish either way
    assert tasks["load"]["downstream"] == ["publish", "report"]
    assert tasks["report"]["downstream"] == ["publish"]
    assert sorted(tasks["publish"]["downstream"]) == sorted(AFTER_PUBLISH)
    assert tasks["cascade"]["downstream"] == tasks["notify"]["downstream"] == []


def test_load_and_publish_choose_what_follows_them(probe):
    tasks = probe["dag"]["tasks"]
    branches = {
        name for name, t in tasks.items() if t["operator"] == "_BranchPythonDecoratedOperator"
    }
    assert branches == {"load", "publish"}  # a skipped task then starts no process
    # publish runs after a drawn report and after a skipped one, never after a failure
    assert tasks["publish"]["trigger_rule"] == "TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS"
    others = {t["trigger_rule"] for name, t in tasks.items() if name != "publish"}
    assert others == {"TriggerRule.ALL_SUCCESS"}


def test_retries_back_off_exponentially(probe):
    for task_id, task in probe["dag"]["tasks"].items():
        assert task["retries"] >= 2, task_id
        assert task["retry_delay"] > 0, task_id
        assert task["retry_exponential_backoff"] >= 2.0, task_id
        assert task["max_retry_delay"] and task["max_retry_delay"] > task["retry_delay"], task_id


def test_only_the_loading_tasks_hold_the_single_warehouse_slot(probe):
    tasks = probe["dag"]["tasks"]
    for loader in ("load", "cascade"):
        assert (tasks[loader]["pool"], tasks[loader]["pool_slots"]) == ("tiers_warehouse", 1)
    others = {t["pool"] for name, t in tasks.items() if name not in {"load", "cascade"}}
    assert others == {"default_pool"}
    assert 1 < probe["dag"]["max_active_runs"] <= 8  # months compute in parallel, boundedly
    assert probe["dag"]["catchup"] is False


def test_publish_and_cascade_update_the_reporting_asset(probe):
    tasks = probe["dag"]["tasks"]
    asset = [{"name": "tiers_reporting_tables", "uri": "x-tiers://warehouse/reporting_tables"}]
    assert tasks["publish"]["outlets"] == asset
    assert tasks["cascade"]["outlets"] == asset  # a skipped cascade sends no event
    assert all(not t["outlets"] for name, t in tasks.items() if name not in {"publish", "cascade"})


def test_month_and_cascade_params_are_validated(probe):
    params = probe["dag"]["params"]
    month, cascade = params["month"], params["cascade"]
    assert month["value"] is None
    assert month["schema"]["type"] == ["null", "string"]
    import re

    pattern = re.compile(month["schema"]["pattern"])
    assert pattern.match("2026-02") and pattern.match("1999-12")
    assert not any(pattern.match(t) for t in ("2026-13", "2026-00", "2026-2", "26-02", "2026/02"))
    assert (cascade["value"], cascade["schema"]["type"]) == (False, "boolean")


def test_report_param_is_empty_true_or_false(probe):
    report = probe["dag"]["params"]["report"]
    assert (report["value"], report["schema"]["type"]) == (None, ["null", "boolean"])


def test_the_report_is_drawn_by_scheduled_and_manual_runs_and_a_backfills_last_month():
    march = parse_month("2026-03")

    def never_asked() -> bool:
        raise AssertionError("only a backfill run without the Param asks for the next month")

    for run_type in ("scheduled", "manual", "asset_triggered"):
        assert report_due(None, run_type, march, never_asked)[0], run_type
    # a backfill: only when the DAG has no run for the month after (the backfill's last)
    assert report_due(None, "backfill", march, lambda: False) == (
        True,
        "the last month of the backfill",
    )
    due, why = report_due(None, "backfill", march, lambda: True)
    assert not due
    assert "2026-04 has a run of its own" in why
    assert "tiers report --month 2026-03" in why  # how to draw it after all
    assert """--dag-run-conf '{"report": true}'""" in why
    # the Param decides when set, whatever the run
    assert report_due(True, "backfill", march, never_asked) == (
        True,
        "the run's Param report is true",
    )
    assert report_due(False, "manual", march, never_asked) == (
        False,
        "the run's Param report is false",
    )


def test_dag_docs_are_markdown_without_rest_literals():
    doc = af.load_dag_module().tiers_monthly_dag.doc_md
    assert "``" not in doc  # reST literals show their backticks in the UI's Markdown
    assert '"month": "2026-02"' in doc


def test_schedule_is_monthly_in_the_business_zone(probe):
    dag = probe["dag"]
    assert dag["timetable"] == "CronDataIntervalTimetable"
    assert dag["expression"] == "0 0 1 * *"
    assert dag["timezone"] == PROBE_ZONE


# --- which month a run processes ---------------------------------------------------------


def test_scheduled_runs_process_the_month_that_just_ended(probe):
    zone = probe["intervals"]["timezone"]
    runs = probe["intervals"]["scheduled"]
    months = [
        month_for_interval(at(r["start"]), at(r["end"]), at(r["logical_date"]), timezone=zone)
        for r in runs
    ]
    assert months == ["2026-01", "2026-02", "2026-03", "2026-04"]
    # each run starts at midnight of the 1st of the next month, business time
    starts = [at(r["run_after"]).astimezone(_zone(zone)) for r in runs]
    assert [(s.month, s.day, s.hour) for s in starts] == [
        (2, 1, 0),
        (3, 1, 0),
        (4, 1, 0),
        (5, 1, 0),
    ]


def test_manual_runs_process_their_month_param_whatever_their_dates():
    oslo = "Europe/Oslo"
    now = at("2026-11-24T16:00:00+00:00")  # Airflow's CLI infers the interval from "now"
    october = (at("2026-10-01T00:00:00+02:00"), at("2026-11-01T00:00:00+01:00"))
    assert run_month("manual", "2024-11", *october, None, timezone=oslo) == "2024-11"
    assert run_month("manual", "2024-11", None, None, None, timezone=oslo) == "2024-11"
    assert run_month("manual", "2024-11", None, None, now, timezone=oslo) == "2024-11"
    # scheduled and backfill runs keep the month of their data interval
    assert run_month("backfill", None, *october, october[0], timezone=oslo) == "2026-10"
    assert run_month("scheduled", "2026-10", *october, october[0], timezone=oslo) == "2026-10"


def test_manual_runs_without_a_month_or_on_a_scheduled_date_are_refused():
    oslo = "Europe/Oslo"
    with pytest.raises(ScheduleError, match="a manual run needs the month Param") as caught:
        run_month("manual", None, None, None, at("2024-12-01T00:00:00+01:00"), timezone=oslo)
    assert """airflow dags trigger tiers_monthly --conf '{"month": "YYYY-MM"}'""" in str(
        caught.value
    )
    # the 1st at midnight in the business zone is the logical date of a scheduled run
    with pytest.raises(ScheduleError, match="backfill create` would skip 2025-01") as caught:
        run_month("manual", "2024-12", None, None, at("2025-01-01T00:00:00+01:00"), timezone=oslo)
    assert """--conf '{"month": "2024-12"}'""" in str(caught.value)
    # a UTC midnight is not an Oslo month start: no collision, the Param wins
    assert (
        run_month("manual", "2024-12", None, None, at("2025-01-01T00:00:00+00:00"), timezone=oslo)
        == "2024-12"
    )
    for bad in ("2024-13", "next month", "2024/12"):
        with pytest.raises(ScheduleError, match="month Param"):
            run_month("manual", bad, None, None, None, timezone=oslo)
    with pytest.raises(ScheduleError, match="its month Param says 2026-09"):
        run_month(
            "backfill",
            "2026-09",
            at("2026-10-01T00:00:00+00:00"),
            at("2026-11-01T00:00:00+00:00"),
            None,
        )


def test_the_missing_history_message_has_both_commands():
    text = missing_history_command(
        "/srv/tiers.toml", date(2025, 1, 1), date(2025, 3, 1), "Europe/Oslo"
    )
    assert "tiers backfill --config /srv/tiers.toml --from 2025-01 --to 2025-03" in text
    assert (
        "airflow backfill create --dag-id tiers_monthly --from-date 2025-01-01T00:00:00+01:00 "
        "--to-date 2025-03-01T00:00:00+01:00" in text
    )


def test_interval_mapping_of_manual_intervals_airflow_infers(probe):
    zone = probe["intervals"]["timezone"]
    manual = probe["intervals"]["manual"]
    months = [
        month_for_interval(at(r["start"]), at(r["end"]), at(r["logical_date"]), timezone=zone)
        for r in manual
    ]
    # 2026-02-01T00:00Z and 02-17 -> January; 2026-03-01 Oslo -> February;
    # 2026-03-31T23:30Z is already April 1st in Oslo -> March
    assert months == ["2026-01", "2026-01", "2026-02", "2026-03"]
    # a zero-width interval at the same logical date maps to the same month
    zero_width = [
        month_for_interval(
            at(r["logical_date"]), at(r["logical_date"]), at(r["logical_date"]), timezone=zone
        )
        for r in manual
    ]
    assert zero_width == months


def test_backfill_window_creates_exactly_the_requested_months(probe):
    zone = probe["intervals"]["timezone"]
    backfill = probe["intervals"]["backfill"]
    assert (backfill["from_date"], backfill["to_date"]) == (
        "2026-01-01T00:00:00+01:00",
        "2026-03-01T00:00:00+01:00",
    )
    months = [
        month_for_interval(at(r["start"]), at(r["end"]), at(r["logical_date"]), timezone=zone)
        for r in backfill["runs"]
    ]
    assert months == ["2026-01", "2026-02", "2026-03"]


def _zone(name: str):
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def test_month_mapping_follows_the_business_zone_across_dst():
    oslo = _zone("Europe/Oslo")
    # summer time starts on 2026-03-29: the interval is one hour short of 31 days
    start, end = datetime(2026, 3, 1, tzinfo=oslo), datetime(2026, 4, 1, tzinfo=oslo)
    assert month_for_interval(start, end, start, timezone="Europe/Oslo") == "2026-03"
    # the same instants in UTC are what the scheduler stores
    assert (
        month_for_interval(start.astimezone(UTC), end.astimezone(UTC), None, timezone="Europe/Oslo")
        == "2026-03"
    )


def test_interval_that_is_not_a_business_month_is_refused():
    utc_jan = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))
    with pytest.raises(ScheduleError, match="not one calendar month in Europe/Oslo"):
        month_for_interval(*utc_jan, utc_jan[0], timezone="Europe/Oslo")
    two_months = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))
    with pytest.raises(ScheduleError, match="not one calendar month"):
        month_for_interval(*two_months, two_months[0])
    with pytest.raises(ScheduleError, match="ends before it starts"):
        month_for_interval(utc_jan[1], utc_jan[0], None)


def test_runs_without_interval_use_logical_date_then_run_after():
    feb_2nd = datetime(2026, 2, 2, 9, 0, tzinfo=UTC)
    assert month_for_interval(None, None, feb_2nd) == "2026-01"
    assert month_for_interval(None, None, None, run_after=feb_2nd) == "2026-01"
    assert month_for_interval(None, None, datetime(2026, 1, 1, tzinfo=UTC)) == "2025-12"
    eastern = timezone(timedelta(hours=-5))
    # 2026-02-01 03:00 UTC is still January in New York: the month before is December
    assert (
        month_for_interval(
            None, None, datetime(2026, 1, 31, 22, 0, tzinfo=eastern), timezone="America/New_York"
        )
        == "2025-12"
    )
    with pytest.raises(ScheduleError, match="neither"):
        month_for_interval(None, None, None)
    with pytest.raises(ScheduleError, match="no time zone"):
        month_for_interval(None, None, datetime(2026, 2, 2))


def test_backfill_window_is_midnight_of_the_first_in_the_business_zone():
    assert backfill_window(date(2026, 1, 1), date(2026, 7, 1), "Europe/Oslo") == (
        "2026-01-01T00:00:00+01:00",
        "2026-07-01T00:00:00+02:00",
    )
    assert backfill_window(date(2026, 1, 1), date(2026, 3, 1), "UTC") == (
        "2026-01-01T00:00:00+00:00",
        "2026-03-01T00:00:00+00:00",
    )


def test_schedule_timezone_comes_from_the_environment():
    assert schedule_timezone({}) == "UTC"
    assert schedule_timezone({"TIERS_TIMEZONE": "Europe/Oslo"}) == "Europe/Oslo"
    with pytest.raises(ScheduleError, match="not an IANA time zone"):
        schedule_timezone({"TIERS_TIMEZONE": "Mars/Olympus"})


def test_business_zone_must_match_the_schedule():
    check_business_timezone("Europe/Oslo", "Europe/Oslo")
    with pytest.raises(ScheduleError, match="TIERS_TIMEZONE=Europe/Oslo"):
        check_business_timezone("UTC", "Europe/Oslo")


def test_configuration_path_prefers_the_variable_over_the_environment():
    assert config_path("/srv/a.toml", {CONFIG_ENV: "/srv/b.toml"}) == "/srv/a.toml"
    assert config_path(None, {CONFIG_ENV: "/srv/b.toml"}) == "/srv/b.toml"
    assert config_path("  ", {CONFIG_ENV: "/srv/b.toml"}) == "/srv/b.toml"
    with pytest.raises(ScheduleError, match="tiers_config.*TIERS_CONFIG"):
        config_path(None, {})


def test_pipeline_run_id_is_a_safe_folder_name():
    assert pipeline_run_id("scheduled__2026-02-01T00:00:00+00:00") == (
        "scheduled__2026-02-01T00_00_00_00_00"
    )
    assert pipeline_run_id("manual__2026-02-03T10:11:12.123456+00:00") == (
        "manual__2026-02-03T10_11_12.123456_00_00"
    )
    assert "/" not in pipeline_run_id("../../etc/passwd") and not pipeline_run_id(
        "../../etc/passwd"
    ).startswith(".")
    with pytest.raises(ScheduleError):
        pipeline_run_id("///")


# --- failing at once or retrying: pipeline/errors.py decides ------------------------------


@pytest.fixture(scope="module")
def dag_module():
    return af.load_dag_module()


def run_failing_step(dag_module, monkeypatch, error, *, at_month=False):
    """``_run`` as a task runs it, with a step that raises ``error`` (or with the month
    that cannot be told, when ``at_month``)."""
    from types import SimpleNamespace

    def extract_step(cfg, month, run_id):
        raise error

    def this_run():
        if at_month:
            raise error
        return dag_module._Run("t.toml", None, parse_month("2026-01"), "manual")

    context = {"dag_run": SimpleNamespace(run_id="manual__2026-02-03T10:00:00+00:00")}
    monkeypatch.setattr(dag_module, "get_current_context", lambda: context)
    monkeypatch.setattr(dag_module, "_this_run", this_run)
    return dag_module._run("extract", extract_step)[1]


def test_a_missing_source_file_fails_the_task_at_once(dag_module, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from pipeline.errors import SourceError

    error = SourceError("source file not found: /data/payments.csv")
    with pytest.raises(AirflowFailException) as caught:  # Airflow does not retry it
        run_failing_step(dag_module, monkeypatch, error)
    assert str(caught.value) == "extract: source file not found: /data/payments.csv"
    assert caught.value.__cause__ is error


def test_a_month_that_cannot_be_told_fails_the_task_at_once(dag_module, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    error = ScheduleError("the month Param '2026-13': month 13 is out of range")
    with pytest.raises(AirflowFailException, match="extract: the month Param '2026-13'"):
        run_failing_step(dag_module, monkeypatch, error, at_month=True)


@pytest.mark.parametrize("unforeseen", [False, True])
def test_a_transient_or_unforeseen_error_is_raised_as_it_is_for_a_retry(
    dag_module, monkeypatch, unforeseen
):
    from pipeline.errors import WarehouseConnectionError

    error = (
        RuntimeError("something nobody foresaw")
        if unforeseen
        else WarehouseConnectionError("warehouse postgresql://x:***@db/x cannot be reached")
    )
    with pytest.raises(type(error)) as caught:  # any error but AirflowFailException: retried
        run_failing_step(dag_module, monkeypatch, error)
    assert caught.value is error


def test_a_cascade_fails_at_once_only_when_no_month_can_load_on_a_retry(dag_module):
    from airflow.sdk.exceptions import AirflowFailException

    from pipeline.errors import PERMANENT, TRANSIENT

    error = RuntimeError("2026-02: load: warehouse cannot be reached")
    assert dag_module._fail_now_if_permanent("cascade 2026-01", error, TRANSIENT) is None
    with pytest.raises(AirflowFailException, match="^cascade 2026-01: 2026-02: load"):
        dag_module._fail_now_if_permanent("cascade 2026-01", error, PERMANENT)


# --- real runs with dag.test() -----------------------------------------------------------

JAN, FEB = parse_month("2026-01"), parse_month("2026-02")
# dag.test() runs are manual: the month Param says which month, no logical date
RUN_JANUARY, RUN_FEBRUARY = af.manual("2026-01"), af.manual("2026-02")


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-home")
    af.migrate(home)
    return home


def basics_config(folder, golden, payments=None, **sections):
    folder.mkdir(parents=True, exist_ok=True)
    return write_config(
        folder,
        {
            "source": {"kind": "csv", "path": str(payments or golden / "basics" / "payments.csv")},
            "business": {"timezone": "UTC", "currency": "EUR", "history_start": "2026-01"},
            **sections,
        },
    )


def warehouse_table(config_file, name):
    from pipeline.config import load_config
    from pipeline.warehouse import open_warehouse

    warehouse = open_warehouse(load_config(config_file))
    try:
        return warehouse.read_table(name)
    finally:
        warehouse.close()


def task_states(run) -> dict[str, str]:
    return {task_id: ti["state"] for task_id, ti in run["tasks"].items()}


@pytest.mark.slow
def test_two_months_through_airflow_match_the_golden_case_and_the_cli(
    airflow_home, golden, tmp_path
):
    config_file = basics_config(tmp_path / "airflow", golden)
    result, output = af.dag_test(
        airflow_home, [RUN_JANUARY, RUN_FEBRUARY], config_variable=str(config_file)
    )
    runs = result["runs"]

    assert [r["state"] for r in runs] == ["success", "success"], output[-6000:]
    for run in runs:
        assert task_states(run) == MONTH_STATES
        # every task that ran ran once; notify and cascade never started (try 0)
        tries = {task: ti["try_number"] for task, ti in run["tasks"].items()}
        assert tries == {**dict.fromkeys(TASK_CHAIN, 1), "notify": 0, "cascade": 0}
    # manual runs carry no logical date: none can take a scheduled or backfill run's date
    assert [(r["logical_date"], r["data_interval_start"]) for r in runs] == [(None, None)] * 2

    problems = []
    for name in TABLES:
        loaded = warehouse_table(config_file, name)
        assert set(loaded.column("month").to_pylist()) <= {JAN, FEB}, name
        problems += table_differences("basics", name, loaded, months={JAN, FEB})
    assert problems == []

    pipeline_runs = warehouse_table(config_file, "pipeline_run").to_pylist()
    assert sorted((r["month"], r["status"]) for r in pipeline_runs) == [
        (JAN, "loaded"),
        (FEB, "loaded"),
    ]
    assert {r["run_id"] for r in pipeline_runs} == {pipeline_run_id(r["run_id"]) for r in runs}

    # the task logs state the counts and the checks
    assert "extract 2026-01: 11 row(s) read, 0 duplicate(s) dropped" in output
    assert "extract 2026-02: 9 row(s) read, 1 duplicate(s) dropped" in output
    for step in ("raw_gate", "output_gates", "load"):
        assert f"{step} 2026-02: " in output
    assert "passed, 0 failed" in output

    events = [
        e for e in result["asset_events"] if e["source_run_id"] in {r["run_id"] for r in runs}
    ]
    assert [(e["name"], e["uri"], e["extra"]["month"]) for e in events] == [
        ("tiers_reporting_tables", "x-tiers://warehouse/reporting_tables", "2026-01"),
        ("tiers_reporting_tables", "x-tiers://warehouse/reporting_tables", "2026-02"),
    ]
    february_customers = len(expected_rows("basics", "customer_month", {FEB}))
    assert events[1]["extra"]["rows"]["customer_month"] == february_customers
    # the event names the month's report, drawn after the load
    report = Path(events[1]["extra"]["report"])
    assert report.name == "report.html" and "month=2026-02" in str(report)
    assert report.is_file() and "2026-02" in report.read_text()

    # the same months through the CLI's backfill give the same reporting tables
    from pipeline.config import load_config
    from pipeline.run import backfill

    cli_config = basics_config(tmp_path / "cli", golden)
    assert [
        r.status
        for r in backfill.backfill(load_config(cli_config), date(2026, 1, 1), date(2026, 2, 1))
    ] == [
        "loaded",
        "loaded",
    ]
    for name in TABLES:
        assert _rows(warehouse_table(config_file, name)) == _rows(
            warehouse_table(cli_config, name)
        ), name


def _rows(table) -> list:
    return sorted(table.to_pylist(), key=repr)


@pytest.mark.slow
def test_bad_row_fails_extract_at_once_and_loads_nothing(airflow_home, golden, tmp_path):
    payments = tmp_path / "payments.csv"
    payments.write_text(
        (golden / "basics" / "payments.csv").read_text()
        + "p900,c01,2026-01-12T10:00:00Z,twelve,EUR\n"
    )
    config_file = basics_config(tmp_path, golden, payments, lake={"quarantine": False})
    # no Variable this time: the path comes from TIERS_CONFIG; one retry is allowed
    result, output = af.dag_test(
        airflow_home, [RUN_JANUARY], env={CONFIG_ENV: str(config_file)}, retries=1
    )
    (run,) = result["runs"]

    assert run["state"] == "failed"
    assert task_states(run) == {
        "extract": "failed",
        **dict.fromkeys([*TASK_CHAIN[1:], *AFTER_PUBLISH], "upstream_failed"),
    }
    assert run["tasks"]["extract"]["try_number"] == 1  # bad data is not retried
    assert "unparseable amount" in output
    assert not (tmp_path / "lake" / "payments" / "month=2026-01").exists()
    for name in TABLES:
        assert warehouse_table(config_file, name).num_rows == 0, name
    (record,) = warehouse_table(config_file, "pipeline_run").to_pylist()
    assert (record["month"], record["status"]) == (JAN, "failed")
    assert record["run_id"] == pipeline_run_id(run["run_id"])
    assert not [e for e in result["asset_events"] if e["source_run_id"] == run["run_id"]]


@pytest.mark.slow
def test_month_whose_history_no_run_extracts_fails_at_once_with_the_fix(
    airflow_home, golden, tmp_path
):
    config_file = basics_config(tmp_path, golden)
    # February alone: its computation reads January, which no active run extracts, so
    # retrying cannot help; the task says which command extracts it
    result, output = af.dag_test(
        airflow_home, [RUN_FEBRUARY], config_variable=str(config_file), retries=2
    )
    (run,) = result["runs"]

    assert run["state"] == "failed"
    failed = [task for task, state in task_states(run).items() if state == "failed"]
    assert failed == ["compute"], task_states(run)
    assert run["tasks"]["compute"]["try_number"] == 1
    assert "month 2026-01 is not in the lake" in output
    assert "No active run of tiers_monthly extracts 2026-01" in output
    assert f"tiers backfill --config {config_file} --from 2026-01 --to 2026-01" in output
    assert (
        "airflow backfill create --dag-id tiers_monthly --from-date 2026-01-01T00:00:00+00:00"
        in output
    )
    assert (tmp_path / "lake" / "payments" / "month=2026-02" / "manifest.json").exists()
    for name in TABLES:
        assert warehouse_table(config_file, name).num_rows == 0, name


@pytest.mark.slow
def test_month_whose_history_an_active_run_holds_is_retried(airflow_home, golden, tmp_path):
    config_file = basics_config(tmp_path, golden)
    # a queued backfill run of January stands for a backfill in progress: February's
    # computation waits for it (retries) instead of failing at once
    result, output = af.dag_test(
        airflow_home,
        [RUN_FEBRUARY],
        config_variable=str(config_file),
        retries=1,
        queued_run="2026-01-01T00:00:00+00:00",
    )
    (run,) = result["runs"]

    assert run["state"] == "failed"
    assert run["tasks"]["compute"]["try_number"] == 2, task_states(run)
    assert "1 active run(s) of tiers_monthly are extracting the missing month(s)" in output
    assert "No active run of tiers_monthly extracts" not in output


@pytest.mark.slow
def test_cascade_param_recomputes_the_later_months(airflow_home, golden, tmp_path):
    from pipeline.config import load_config
    from pipeline.run import backfill

    config_file = basics_config(tmp_path, golden)
    assert [r.status for r in backfill.backfill(load_config(config_file), JAN, FEB)] == [
        "loaded",
        "loaded",
    ]
    result, output = af.dag_test(
        airflow_home, [af.manual("2026-01", cascade=True)], config_variable=str(config_file)
    )
    (run,) = result["runs"]
    assert run["state"] == "success", output[-6000:]
    assert task_states(run) == {**MONTH_STATES, "cascade": "success"}
    this_run = pipeline_run_id(run["run_id"])
    records = {
        (r["month"], r["run_id"], r["status"])
        for r in warehouse_table(config_file, "pipeline_run").to_pylist()
    }
    assert {(JAN, this_run, "loaded"), (FEB, this_run + "-cascade", "loaded")} <= records
    events = [e for e in result["asset_events"] if e["source_run_id"] == run["run_id"]]
    assert [e["extra"]["month"] for e in events] == ["2026-01", "2026-02"]
    problems = []
    for name in TABLES:
        problems += table_differences(
            "basics", name, warehouse_table(config_file, name), months={JAN, FEB}
        )
    assert problems == []


@pytest.mark.slow
def test_a_run_asked_for_no_report_draws_none_and_publishes(airflow_home, golden, tmp_path):
    config_file = basics_config(tmp_path, golden)
    result, output = af.dag_test(
        airflow_home, [af.manual("2026-01", report=False)], config_variable=str(config_file)
    )
    (run,) = result["runs"]
    assert run["state"] == "success", output[-6000:]
    assert task_states(run) == {**MONTH_STATES, "report": "skipped"}
    assert "report 2026-01: not drawn: the run's Param report is false" in output
    folder = tmp_path / "runs" / pipeline_run_id(run["run_id"]) / "month=2026-01"
    assert not (folder / "report.html").exists()
    assert json.loads((folder / "run.json").read_text())["report"] is None
    (event,) = [e for e in result["asset_events"] if e["source_run_id"] == run["run_id"]]
    assert (event["extra"]["month"], event["extra"]["report"]) == ("2026-01", None)
    assert {r["month"] for r in warehouse_table(config_file, "pipeline_run").to_pylist()} == {JAN}


@pytest.mark.slow
def test_failing_gate_fails_the_run_at_once_and_loads_nothing(airflow_home, golden, tmp_path):
    from pipeline.config import load_config
    from pipeline.run import steps

    config_file = basics_config(tmp_path, golden)
    steps.extract_step(load_config(config_file), JAN, "earlier-extract")  # the lake as it stands
    # The operator overrides the currency and clears the run from raw_gate on, keeping the
    # extract: the raw gate finds EUR rows in a lake that should hold USD.
    result, output = af.dag_test(
        airflow_home,
        [RUN_JANUARY],
        config_variable=str(config_file),
        env={"TIERS__BUSINESS__CURRENCY": "USD"},
        retries=1,
        mark_success="extract",
    )
    (run,) = result["runs"]

    assert run["state"] == "failed"
    assert task_states(run) == {
        "extract": "success",
        "raw_gate": "failed",
        **dict.fromkeys([*TASK_CHAIN[2:], *AFTER_PUBLISH], "upstream_failed"),
    }
    assert run["tasks"]["raw_gate"]["try_number"] == 1  # a failed gate is not retried
    assert "raw.currency_is_configured" in output
    for name in TABLES:
        assert warehouse_table(config_file, name).num_rows == 0, name
    (record,) = warehouse_table(config_file, "pipeline_run").to_pylist()
    assert (record["month"], record["status"], record["checks_failed"]) == (JAN, "failed", 1)


@pytest.mark.slow
def test_missing_source_file_fails_extract_at_once_without_retry(airflow_home, golden, tmp_path):
    missing = tmp_path / "no-such-payments.csv"
    config_file = basics_config(tmp_path, golden, missing)
    result, output = af.dag_test(
        airflow_home, [RUN_JANUARY], config_variable=str(config_file), retries=1
    )
    (run,) = result["runs"]

    assert run["state"] == "failed"
    assert task_states(run) == {
        "extract": "failed",
        **dict.fromkeys([*TASK_CHAIN[1:], *AFTER_PUBLISH], "upstream_failed"),
    }
    assert run["tasks"]["extract"]["try_number"] == 1  # retrying cannot bring the file
    assert f"source file not found: {missing}" in output
    assert not (tmp_path / "lake" / "payments").exists()
    (record,) = warehouse_table(config_file, "pipeline_run").to_pylist()
    assert (record["month"], record["status"]) == (JAN, "failed")


@pytest.mark.slow
def test_unreachable_warehouse_is_retried(airflow_home, golden, tmp_path):
    config_file = basics_config(
        tmp_path, golden, warehouse={"url": "postgresql://postgres@127.0.0.1:1/test"}
    )
    result, output = af.dag_test(
        airflow_home, [RUN_JANUARY], config_variable=str(config_file), retries=1
    )
    (run,) = result["runs"]

    assert run["state"] == "failed"
    states = task_states(run)
    assert states["load"] == "failed", states
    assert all(states[task] == "success" for task in TASK_CHAIN[:4]), states
    assert run["tasks"]["load"]["try_number"] == 2  # the server may be back: retried
    assert "postgresql://postgres@127.0.0.1:1/test cannot be reached" in output
