"""Airflow plugin: each run of tiers_monthly shows the business month it processes.

Run ids name the moment a run may start (``backfill__2025-07-31T22:00:00+00:00`` is month
2025-07 for an Oslo business), so the scheduler writes "Business month YYYY-MM" into the
run's note when the run starts, by the same rules the tasks use (``pipeline.run.schedule``).
A note given at trigger time is kept, after the month. A run whose month is refused says
why.

Enable it with ``[core] plugins_folder`` = this folder (``make airflow`` and the tests do);
``dags/.airflowignore`` keeps the DAG processor from parsing it as a DAG file.
"""

from __future__ import annotations

import logging

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

from pipeline.run.schedule import DAG_ID, MONTH_PARAM, ScheduleError, run_month, schedule_timezone

log = logging.getLogger(__name__)
NOTE_PREFIX = "Business month"


def month_note(dag_run) -> str:
    """The note of a run: its business month, or why it has none."""
    try:
        month = run_month(
            dag_run.run_type,
            (dag_run.conf or {}).get(MONTH_PARAM),
            dag_run.data_interval_start,
            dag_run.data_interval_end,
            dag_run.logical_date,
            timezone=schedule_timezone(),
        )
    except ScheduleError as exc:
        return f"No business month: {exc}"[:1000]
    return f"{NOTE_PREFIX} {month}"


class BusinessMonthNotes:
    @hookimpl
    def on_dag_run_running(self, dag_run, msg: str) -> None:
        if dag_run.dag_id != DAG_ID:
            return
        note = month_note(dag_run)
        existing = dag_run.note
        if existing and existing.startswith((NOTE_PREFIX, "No business month")):
            return  # a cleared run that starts again keeps its note
        dag_run.note = f"{note} - {existing}"[:1000] if existing else note
        log.info("%s %s: %s", DAG_ID, dag_run.run_id, note)


class TiersMonthNotesPlugin(AirflowPlugin):
    name = "tiers_month_notes"
    listeners = [BusinessMonthNotes()]
