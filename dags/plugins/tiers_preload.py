"""Airflow plugin: the scheduler imports what the tasks of tiers_monthly import, once.

With the LocalExecutor, every task process is forked from the scheduler (through the
executor's worker and the task's supervisor), so the modules the scheduler holds are
already imported in each task: DuckDB, Arrow, Great Expectations with the gates'
context, the pipeline and Vega's bundle for the report (``pipeline/run/preload.py`` says
how and why). This saves seconds of CPU per task; what a task does is unchanged.

The listener runs when a job starts (``on_starting``, before the scheduler starts its
executor) and does its work only for the job of ``airflow scheduler`` with a
LocalExecutor: the DAG processor, the triggerer, the API server, the tasks themselves
and Celery deployments import nothing more. Off with ``TIERS_AIRFLOW_PRELOAD=false``.
Enabled by ``[core] plugins_folder``, like ``tiers_month_notes.py``.
"""

from __future__ import annotations

import sys

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin


def runs_local_tasks(component: object, argv: list[str], executor: str) -> bool:
    """This is the scheduler's job starting, and its executor forks the tasks from it.

    A task process calls ``on_starting`` too (with a ``TaskRunnerMarker``), and has the
    scheduler's ``sys.argv``, being forked from it: only a ``Job`` counts."""
    is_job = type(component).__name__ == "Job"
    return is_job and argv[1:2] == ["scheduler"] and "LocalExecutor" in executor


class PreloadForTasks:
    @hookimpl
    def on_starting(self, component) -> None:
        from airflow.configuration import conf

        from pipeline.run import preload

        executor = conf.get("core", "executor")
        if preload.enabled() and runs_local_tasks(component, sys.argv, executor):
            preload.preload()


class TiersPreloadPlugin(AirflowPlugin):
    name = "tiers_preload"
    listeners = [PreloadForTasks()]
