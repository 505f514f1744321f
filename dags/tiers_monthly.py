"""tiers_monthly: one business month of payments -> customer segments in the warehouse.

The run that starts on the 1st of month M+1 processes month M (``pipeline/schedule.py``
explains the month of manual runs and ``dag.test()``). Each task calls one function of
``pipeline.runner``; the steps hand their results over through the run's folder, so a
retried or cleared task picks up where the run stands.

    extract -> raw_gate -> compute -> output_gates -> load -> publish

* The configuration path comes from the Airflow Variable ``tiers_config``, else from the
  environment variable ``TIERS_CONFIG``; both are read when a task runs, never at parse
  time. The schedule's time zone is ``TIERS_TIMEZONE`` (default UTC) and must equal the
  configuration's ``business.timezone``: a task refuses to run otherwise.
* Bad input, a failed gate or an invalid configuration fail the task at once (retrying
  cannot fix data); anything else (I/O, database, a month the computation needs that a
  parallel run has not extracted yet) is retried with exponential backoff.
* ``load`` runs in the pool ``tiers_warehouse`` (one slot): the warehouse has a single
  writer, while extract and compute of different months run in parallel.
* ``publish`` updates the Asset ``tiers_reporting_tables``; BI DAGs schedule on it and find
  the month in the asset event's ``extra``.

Only ``pipeline.schedule`` (pure Python) is imported here: DuckDB, Arrow and Great
Expectations load inside the tasks, so parsing this file stays fast.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, CronDataIntervalTimetable, Variable, dag, get_current_context, task

from pipeline.schedule import (
    CONFIG_VARIABLE,
    check_business_timezone,
    config_path,
    month_for_interval,
    pipeline_run_id,
    schedule_timezone,
)

DAG_ID = "tiers_monthly"
WAREHOUSE_POOL = "tiers_warehouse"
SCHEDULE_TIMEZONE = schedule_timezone()  # an environment variable, not a Variable: parse-safe
REPORTING_TABLES = Asset(
    name="tiers_reporting_tables",
    uri="x-tiers://warehouse/reporting_tables",
    group="tiers",
)

log = logging.getLogger(__name__)

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "data-platform",
    "retries": 4,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": 2.0,  # 1, 2, 4, 8 minutes
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(hours=2),
}


def _run_step(step: str) -> dict[str, Any]:
    """Run ``pipeline.runner.<step>_step`` for this DAG run's month and log its summary."""
    from airflow.sdk.exceptions import AirflowFailException

    from pipeline import runner
    from pipeline.checks import GateFailed

    context = get_current_context()
    try:
        path = config_path(Variable.get(CONFIG_VARIABLE, default=None))
        month = _month(context, path)
        run_id = pipeline_run_id(context["dag_run"].run_id)
        log.info("%s: month %s, run %s, configuration %s", step, month, run_id, path)
        summary = getattr(runner, f"{step}_step")(path, month, run_id)
    except (ValueError, GateFailed) as exc:
        # Bad rows, failed gates, invalid configuration: the same input fails the same way,
        # so fail now instead of retrying. Anything else (I/O, a database, a month another
        # run has not extracted yet) is retried with backoff.
        raise AirflowFailException(f"{step}: {exc}") from exc
    log.info("%s %s: %s", step, month, _describe(step, summary))
    log.info("%s %s summary: %s", step, month, json.dumps(summary, sort_keys=True, default=str))
    return summary


def _month(context: Any, path: str) -> str:
    """The run's business month, once the schedule's zone is known to be the business one."""
    from pipeline.config import load_config

    check_business_timezone(SCHEDULE_TIMEZONE, load_config(path).business.timezone)
    return month_for_interval(
        context.get("data_interval_start"),
        context.get("data_interval_end"),
        context.get("logical_date"),
        run_after=getattr(context["dag_run"], "run_after", None),
        timezone=SCHEDULE_TIMEZONE,
    )


def _describe(step: str, summary: dict[str, Any]) -> str:
    """One log line with the counts and check results of a step."""
    if step == "extract":
        return (
            f"{summary.get('rows_read')} row(s) read, {summary.get('rows_duplicate')} duplicate(s) "
            f"dropped, {summary.get('rows_quarantined')} quarantined, "
            f"{summary.get('rows_written')} written, amount {summary.get('amount_sum')}"
        )
    gates = _gate_reports(summary)
    if gates:
        return "; ".join(
            f"gate {name}: {g.get('n_passed')} passed, {g.get('n_failed')} failed, "
            f"{g.get('n_warned')} warned"
            for name, g in gates.items()
        )
    rows = summary.get("rows", summary)
    if isinstance(rows, dict) and rows and all(isinstance(v, int) for v in rows.values()):
        return f"{sum(rows.values())} row(s): " + ", ".join(
            f"{k}={v}" for k, v in sorted(rows.items())
        )
    return json.dumps(summary, sort_keys=True, default=str)


def _gate_reports(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    if "n_passed" in summary:
        return {str(summary.get("gate", "gate")): summary}
    return {k: v for k, v in summary.items() if isinstance(v, dict) and "n_passed" in v}


@dag(
    dag_id=DAG_ID,
    schedule=CronDataIntervalTimetable("0 0 1 * *", timezone=SCHEDULE_TIMEZONE),
    start_date=pendulum.datetime(2020, 1, 1, tz=SCHEDULE_TIMEZONE),
    catchup=False,  # history goes through `airflow backfill create`, deliberately
    max_active_runs=4,
    dagrun_timeout=timedelta(hours=12),
    default_args=DEFAULT_ARGS,
    tags=["tiers", "segmentation"],
    doc_md=__doc__,
)
def tiers_monthly() -> None:
    @task
    def extract() -> dict[str, Any]:
        """Read the month from the source into its lake partition."""
        return _run_step("extract")

    @task
    def raw_gate() -> dict[str, Any]:
        """Check the extracted payments before anything is computed."""
        return _run_step("raw_gate")

    @task
    def compute() -> dict[str, Any]:
        """Compute every reporting table of the month from the lake."""
        return _run_step("compute")

    @task
    def output_gates() -> dict[str, Any]:
        """Check the computed tables against the spec's rules."""
        return _run_step("output_gates")

    @task(pool=WAREHOUSE_POOL, pool_slots=1)
    def load() -> dict[str, Any]:
        """Replace the month in the warehouse, atomically (one writer: the pool has one slot)."""
        return _run_step("load")

    @task(outlets=[REPORTING_TABLES])
    def publish() -> dict[str, Any]:
        """Announce the loaded month to the Asset's consumers."""
        summary = _run_step("publish")
        get_current_context()["outlet_events"][REPORTING_TABLES].extra = {
            "month": summary.get("month"),
            "run_id": summary.get("run_id"),
            "rows": summary.get("rows", {}),
        }
        return summary

    extract() >> raw_gate() >> compute() >> output_gates() >> load() >> publish()


tiers_monthly_dag = tiers_monthly()
