"""Warm task processes: what every task of ``tiers_monthly`` imports, imported once.

Airflow 3's LocalExecutor forks its worker processes from the scheduler when it starts;
a worker forks each task's supervisor and the supervisor forks the task's process (Task
SDK, ``airflow/sdk/execution_time/supervisor.py``: ``os.fork`` without ``exec`` on
Linux). Whatever the scheduler has imported before its executor starts is therefore
already in every task process. Without this, each task imports DuckDB, Arrow and the
pipeline again, and each gate task Great Expectations and sets up its context (3.4 s of
CPU on two cores, while other tasks compete for them).

``preload()`` is called by the plugin ``dags/plugins/tiers_preload.py`` in the
scheduler, before the LocalExecutor forks its workers. It imports the modules only: it
opens no database, file or connection, so nothing is shared between the forked tasks
but read-only code and constants. Vega's JavaScript bundle (for the report) is made in
a child process, so that no V8 or Tokio thread runs in the scheduler when it forks.

Off with ``TIERS_AIRFLOW_PRELOAD=false`` (tasks then import on their own, as with the
CeleryExecutor, whose workers do not fork from the scheduler).
"""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys
import time

log = logging.getLogger(__name__)

PRELOAD_ENV = "TIERS_AIRFLOW_PRELOAD"
_preloaded = False  # inherited by forked processes: a task does not preload again
# the modules the steps of the DAG import, in the order they need them
TASK_MODULES = (
    "pipeline.config",
    "pipeline.run.steps",
    "pipeline.run.backfill",
    "pipeline.lake.extract",
    "pipeline.gates",
    "pipeline.compute.month",
    "pipeline.warehouse",
    "pipeline.deliver.report",
    "pipeline.deliver.notify",
    "altair",  # the report's charts (imported when drawn: 0.6 s at every report)
)


def enabled(environ: dict[str, str] | None = None) -> bool:
    value = (os.environ if environ is None else environ).get(PRELOAD_ENV, "true")
    return value.strip().lower() not in ("0", "false", "no", "off")


def preload(modules: tuple[str, ...] = TASK_MODULES) -> dict[str, float]:
    """Import the tasks' modules, Great Expectations with the gates' context, and Vega's
    bundle; return the seconds each took. A failure is logged, never raised: the tasks
    then import what is missing themselves. Once per process (and its forks): a second
    call does nothing and returns ``{}``."""
    global _preloaded
    if _preloaded:
        return {}
    _preloaded = True
    seconds: dict[str, float] = {}

    def timed(name: str, action) -> None:
        started = time.perf_counter()
        try:
            action()
        except Exception as exc:  # a task that needs it will raise it, with its context
            log.warning("tiers preload: %s failed (%s); the tasks import it themselves", name, exc)
            return
        seconds[name] = round(time.perf_counter() - started, 2)

    for module in modules:
        timed(module, lambda module=module: importlib.import_module(module))
    if "pipeline.gates" in seconds:
        timed("great_expectations", sys.modules["pipeline.gates"].preload_gx)
    if "pipeline.compute.month" in seconds:
        # the call list's model (pymc-marketing, pymc, pytensor: ~4 s of imports in compute)
        timed("pymc_marketing", sys.modules["pipeline.compute.call_score"].import_model)
    if "pipeline.deliver.report" in seconds:
        timed("vega_bundle", _preload_vega_bundle)
    log.info("tiers preload (seconds): %s", seconds)
    return seconds


def _preload_vega_bundle() -> None:
    from pipeline.deliver import report_charts

    script = (
        "import sys, pipeline.deliver.report_charts as r; "
        "sys.stdout.buffer.write(r.vega_bundle().encode())"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=300, check=True
    )
    report_charts.set_vega_bundle(done.stdout.decode())
