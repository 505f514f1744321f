"""tiers_monthly: one business month of payments -> customer segments in the warehouse.

**Which month.** Scheduled and backfill runs process the month of their data interval:
the run that starts on the 1st of month M+1 processes M. A manual run processes the month
in its `month` Param (YYYY-MM), whatever its dates, and carries no logical date (one that
is the 1st of a month would take the date of that month's scheduled or backfill run and
is refused). `pipeline/run/schedule.py` has the rules. Every task logs the month, and its
`month` (and `cascade`) show in the run's conf.

    extract -> raw_gate -> compute -> output_gates -> load -> report -> publish -> notify
                                                        load -----------> publish -> cascade

* Run or re-run a month: `airflow dags trigger tiers_monthly --conf '{"month": "2026-02"}'`
  (or the UI's trigger form). A range: `airflow backfill create` (README).
* Cascade a restatement: `--conf '{"month": "2026-02", "cascade": true}'` re-extracts the
  month, loads it, then recomputes and loads every later month in the lake that reads it,
  in order, in the `cascade` task.
* The configuration path comes from the Airflow Variable `tiers_config`, else from the
  environment variable `TIERS_CONFIG`; both are read when a task runs, never at parse
  time. The schedule's time zone is `TIERS_TIMEZONE` (default UTC) and must equal the
  configuration's `business.timezone`: a task refuses to run otherwise.
* An error that retrying cannot fix fails the task at once: bad input (bad rows, a CSV
  the parser cannot read), a missing source file, table or column, a failed gate, an
  invalid configuration or month. `pipeline/errors.py` marks every foreseen error
  permanent or transient, for this DAG and the CLI alike. A month whose history is
  missing from the lake fails at once with the command that extracts it, unless an
  active run of this DAG is processing that history: then it is retried, as are
  transient errors (a database or object store that cannot be reached, the warehouse
  locked by another load, a full disk) and unforeseen ones, with exponential backoff.
* `load` and `cascade` run in the pool `tiers_warehouse` (one slot): the warehouse has a
  single writer, while extract and compute of different months run in parallel.
* `report` draws the month's HTML report from the warehouse. Scheduled and manual runs
  draw it; a backfill only for its last month (the pages nobody opens cost seconds each):
  `load` skips `report` otherwise and its log says how to draw the page (`tiers report
  --month`, or the Param `report`: true draws it in any run, false in none).
* `publish` updates the Asset `tiers_reporting_tables`; BI DAGs schedule on it and find
  the month and the report's path (null when not drawn) in the asset event's `extra`.
  `notify` then mails the month's call list to the recipients of `[notify]` (skipped
  without it; a recipient is never mailed twice for a month, so a retry after an SMTP
  fault sends only what is missing). `cascade` is skipped unless asked for. A skipped
  task starts no process: `load` and `publish` choose what follows them (branches).
* Speed: with the LocalExecutor the scheduler imports DuckDB, Arrow, Great Expectations
  and the pipeline once, before it forks the task processes (plugin
  `plugins/tiers_preload.py`), so each task starts warm.

Tasks only: each calls a step of `pipeline.run.steps` (the cascade `pipeline.run.backfill`)
with the configuration loaded once and the month parsed once; what waits, cascades or is
retried is decided there and in `pipeline/errors.py`, as for the CLI. Only
`pipeline.run.schedule` (pure Python) is imported here: DuckDB, Arrow and Great
Expectations load inside the tasks, so parsing this file stays fast.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any, NamedTuple

import pendulum
from airflow.sdk import (
    Asset,
    CronDataIntervalTimetable,
    Param,
    Variable,
    dag,
    get_current_context,
    task,
)

from pipeline.run.schedule import (
    CASCADE_PARAM,
    CONFIG_VARIABLE,
    DAG_ID,
    MONTH_PARAM,
    MONTH_PATTERN,
    REPORT_PARAM,
    check_business_timezone,
    config_path,
    month_start,
    pipeline_run_id,
    report_due,
    run_month,
    schedule_timezone,
)

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


class _Run(NamedTuple):
    """What every task of a run needs: loaded and parsed once per task."""

    path: str
    cfg: Any  # pipeline.config.Config
    month: date
    run_id: str


def _this_run() -> _Run:
    """The configuration (once the schedule's zone is known to be the business one), the
    run's business month and the pipeline's run id."""
    from pipeline.config import load_config
    from pipeline.months import parse_month

    context = get_current_context()
    path = config_path(Variable.get(CONFIG_VARIABLE, default=None))
    cfg = load_config(path)
    check_business_timezone(SCHEDULE_TIMEZONE, cfg.business.timezone)
    dag_run = context["dag_run"]
    month = run_month(
        dag_run.run_type,
        (context.get("params") or {}).get(MONTH_PARAM),
        context.get("data_interval_start"),
        context.get("data_interval_end"),
        context.get("logical_date"),
        timezone=SCHEDULE_TIMEZONE,
    )
    return _Run(path, cfg, parse_month(month), pipeline_run_id(dag_run.run_id))


def _run(name: str, step: Callable[..., dict[str, Any]]) -> tuple[_Run, dict[str, Any]]:
    """Run ``step`` (a step of pipeline.run.steps) for this DAG run's month; log its summary.
    Returns the run (its configuration, loaded once for the task) and the summary."""
    from pipeline.errors import MissingMonthError
    from pipeline.run.steps import describe

    run = None
    try:
        run = _this_run()
        month = f"{run.month:%Y-%m}"
        log.info("%s: month %s, run %s, configuration %s", name, month, run.run_id, run.path)
        summary = step(run.cfg, run.month, run.run_id)
    except MissingMonthError as exc:
        _fail_unless_history_is_on_its_way(run, exc)
        raise
    except Exception as exc:
        _fail_now_if_permanent(name, exc)
        raise
    log.info("%s %s: %s", name, month, describe(name, summary))
    log.info("%s %s summary: %s", name, month, json.dumps(summary, sort_keys=True, default=str))
    return run, summary


def _fail_now_if_permanent(what: str, error: Exception, kind: str | None = None) -> None:
    """Fail the task at once (AirflowFailException) on an error that retrying cannot fix:
    ``kind``, by default ``error``'s class in pipeline.errors, is permanent. A transient or
    unforeseen error returns, for the caller to re-raise and Airflow to retry."""
    from airflow.sdk.exceptions import AirflowFailException

    from pipeline.errors import PERMANENT, classify

    if (kind or classify(error)) == PERMANENT:
        raise AirflowFailException(f"{what}: {error}") from error


def _fail_unless_history_is_on_its_way(run: _Run | None, error: Exception) -> None:
    """Retry only while an active run of this DAG extracts a month the lake lacks
    (``pipeline.run.backfill.wait_for_history`` decides); else fail at once, with the
    command that extracts the history."""
    from airflow.sdk.exceptions import AirflowFailException

    from pipeline.run.backfill import wait_for_history

    if run is None:  # no month to wait for
        _fail_now_if_permanent("history", error)
        return
    ti = get_current_context()["ti"]

    def active_runs(months: list) -> int:
        return ti.get_dr_count(
            dag_id=DAG_ID,
            logical_dates=[month_start(m, SCHEDULE_TIMEZONE) for m in months],
            states=["queued", "running"],
        )

    retry, message = wait_for_history(
        run.cfg, run.month, active_runs, config=run.path, timezone=SCHEDULE_TIMEZONE
    )
    if retry:
        if message:
            log.info("%s", message)
        return
    raise AirflowFailException(f"{error}. {message}") from error


def _after_load(run: _Run) -> list[str]:
    """The tasks that follow a load: ``report`` when the month's report is due
    (``pipeline.run.schedule.report_due``), and ``publish``. A report not due is skipped,
    with why and how to draw it in this task's log; ``run.json`` then names no report."""
    from pipeline.months import add_months
    from pipeline.run import steps

    context = get_current_context()
    wanted = (context.get("params") or {}).get(REPORT_PARAM)
    run_type = str(getattr(context["dag_run"].run_type, "value", context["dag_run"].run_type))
    try:

        def next_month_has_run() -> bool:
            later = month_start(add_months(run.month, 1), SCHEDULE_TIMEZONE)
            return context["ti"].get_dr_count(dag_id=DAG_ID, logical_dates=[later]) > 0

        due, why = report_due(wanted, run_type, run.month, next_month_has_run)
        log.info("report %s: %s: %s", f"{run.month:%Y-%m}", "to draw" if due else "not drawn", why)
        if due:
            return ["report", "publish"]
        steps.report_not_drawn(run.cfg, run.month, run.run_id, why)
    except Exception as exc:
        _fail_now_if_permanent("load (choosing the next tasks)", exc)
        raise
    return ["publish"]


def _after_publish(run: _Run) -> list[str]:
    """The tasks that follow publish: ``notify`` when ``[notify]`` is configured and
    ``cascade`` when the run asks for it; the others are skipped (this task's log says
    why) without starting a process."""
    context = get_current_context()
    follow = []
    if run.cfg.notify is not None:
        follow.append("notify")
    else:
        log.info("notify: skipped: no [notify] section in %s, so no call list is mailed", run.path)
    if (context.get("params") or {}).get(CASCADE_PARAM):
        follow.append("cascade")
    else:
        log.info("cascade: skipped: no cascade asked for (Param %s is false)", CASCADE_PARAM)
    return follow


def _cascade() -> dict[str, Any]:
    """With the cascade Param: recompute and load the later months that read this one
    (``pipeline.run.backfill.cascade``, as ``tiers run --cascade``)."""
    from airflow.sdk.exceptions import AirflowSkipException

    from pipeline.months import format_month
    from pipeline.run import backfill

    context = get_current_context()
    if not (context.get("params") or {}).get(CASCADE_PARAM):
        # skipped, not successful: a skipped task sends no asset event
        raise AirflowSkipException(f"no cascade asked for (Param {CASCADE_PARAM} is false)")
    try:
        run = _this_run()
    except Exception as exc:
        _fail_now_if_permanent("cascade", exc)
        raise
    month = format_month(run.month)
    later = backfill.cascade_months(run.cfg, run.month)
    if not later:
        raise AirflowSkipException(f"cascade {month}: no later month in the lake reads it")
    run_id = run.run_id + "-cascade"
    log.info(
        "cascade %s: recomputing %s .. %s (run %s)",
        month,
        format_month(later[0]),
        format_month(later[-1]),
        run_id,
    )
    results = backfill.cascade(run.cfg, later, run_id=run_id)
    for result in results:
        log.info(
            "cascade %s: %s %s %s",
            month,
            format_month(result.month),
            result.status,
            result.error or "",
        )
    failed = [r for r in results if r.status != "loaded"]
    if failed:
        error = RuntimeError("; ".join(f"{format_month(r.month)}: {r.error}" for r in failed))
        _fail_now_if_permanent(f"cascade {month}", error, backfill.failure_kind(results))
        raise error
    return {"months": [format_month(r.month) for r in results], "run_id": run_id}


@dag(
    dag_id=DAG_ID,
    schedule=CronDataIntervalTimetable("0 0 1 * *", timezone=SCHEDULE_TIMEZONE),
    start_date=pendulum.datetime(2020, 1, 1, tz=SCHEDULE_TIMEZONE),
    catchup=False,  # history goes through `airflow backfill create`, deliberately
    max_active_runs=4,
    dagrun_timeout=timedelta(hours=12),
    default_args=DEFAULT_ARGS,
    params={
        MONTH_PARAM: Param(
            None,
            type=["null", "string"],
            pattern=MONTH_PATTERN,
            title="Business month (YYYY-MM)",
            description=(
                "The month a manual run processes (required for manual runs). Scheduled and "
                "backfill runs take it from their data interval."
            ),
        ),
        REPORT_PARAM: Param(
            None,
            type=["null", "boolean"],
            title="Draw the report",
            description=(
                "Draw the month's HTML report. Empty: scheduled and manual runs draw it, a "
                "backfill only for its last month. true: always (e.g. every month of a "
                "backfill, with --dag-run-conf). false: never."
            ),
        ),
        CASCADE_PARAM: Param(
            False,
            type="boolean",
            title="Cascade",
            description=(
                "After loading the month, recompute and load every later month in the lake "
                "that reads it, in order (a restatement)."
            ),
        ),
    },
    tags=["tiers", "segmentation"],
    doc_md=__doc__,
)
def tiers_monthly() -> None:
    @task
    def extract() -> dict[str, Any]:
        """Read the month from the source into its lake partition."""
        from pipeline.run import steps

        return _run("extract", steps.extract_step)[1]

    @task
    def raw_gate() -> dict[str, Any]:
        """Check the extracted payments before anything is computed."""
        from pipeline.run import steps

        return _run("raw_gate", steps.raw_gate_step)[1]

    @task
    def compute() -> dict[str, Any]:
        """Compute every reporting table of the month from the lake."""
        from pipeline.run import steps

        return _run("compute", steps.compute_step)[1]

    @task
    def output_gates() -> dict[str, Any]:
        """Check the computed tables against the spec's rules."""
        from pipeline.run import steps

        return _run("output_gates", steps.output_gates_step)[1]

    @task.branch(pool=WAREHOUSE_POOL, pool_slots=1)
    def load() -> list[str]:
        """Replace the month in the warehouse, atomically (one writer: the pool has one
        slot); then draw the report if it is due (a backfill: its last month), else skip it."""
        from pipeline.run import steps

        run, _ = _run("load", steps.load_step)
        return _after_load(run)

    @task
    def report() -> dict[str, Any]:
        """Draw the month's report (a self-contained HTML page) from the warehouse."""
        from pipeline.run import steps

        return _run("report", steps.report_step)[1]

    # after load and the report, or after load alone when the report is skipped
    @task.branch(outlets=[REPORTING_TABLES], trigger_rule="none_failed_min_one_success")
    def publish() -> list[str]:
        """Announce the loaded month and its report to the Asset's consumers; then notify
        (when configured) and cascade (when asked for)."""
        from pipeline.run import steps

        run, summary = _run("publish", steps.publish_step)
        get_current_context()["outlet_events"][REPORTING_TABLES].extra = {
            "month": summary.get("month"),
            "run_id": summary.get("run_id"),
            "rows": summary.get("rows", {}),
            "report": summary.get("report"),
        }
        return _after_publish(run)

    @task
    def notify() -> dict[str, Any]:
        """Send the month's call list to its recipients ([notify]; nothing when not set)."""
        from pipeline.run import steps

        return _run("notify", steps.notify_step)[1]

    @task(outlets=[REPORTING_TABLES], pool=WAREHOUSE_POOL, pool_slots=1)
    def cascade() -> dict[str, Any]:
        """With the cascade Param: recompute and load the later months that read this one."""
        summary = _cascade()
        get_current_context()["outlet_events"][REPORTING_TABLES].extra = {
            "month": summary["months"][-1],
            "months": summary["months"],
            "run_id": summary["run_id"],
        }
        return summary

    loaded = extract() >> raw_gate() >> compute() >> output_gates() >> load()
    announced = publish()
    loaded >> report() >> announced
    loaded >> announced
    announced >> [notify(), cascade()]


tiers_monthly_dag = tiers_monthly()
