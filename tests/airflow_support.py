"""Running the DAGs for real in tests: a throw-away Airflow home with an SQLite metadata DB.

Airflow reads its configuration once per process, so everything that needs an Airflow
home runs in a subprocess: ``airflow db migrate`` through the CLI, then this file as a
script, which runs ``dag.test()`` for one or more runs (a logical date and/or a run conf)
and prints one JSON line (prefixed with ``RESULT_MARKER``) describing every run and task
instance.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DAGS = REPO / "dags"
VENV_BIN = Path(sys.executable).parent
RESULT_MARKER = "DAG-TEST-RESULT "
WAREHOUSE_POOL = "tiers_warehouse"


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of an isolated Airflow: its own home, SQLite DB and DAG folder."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW_", "AIRFLOW__", "TIERS_", "TIERS__"))
    }
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
        AIRFLOW__CORE__LOAD_EXAMPLES="false",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="true",
        GX_ANALYTICS_ENABLED="false",
        PYTHONPATH=str(REPO),
    )
    env.update(extra)
    return env


def run(
    command: list[str], env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


def migrate(home: Path) -> None:
    """``airflow db migrate`` into ``home`` (raises with the CLI's output if it fails)."""
    home.mkdir(parents=True, exist_ok=True)
    done = run([str(VENV_BIN / "airflow"), "db", "migrate"], airflow_env(home))
    if done.returncode != 0:
        raise RuntimeError(
            f"airflow db migrate failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )


def manual(month: str, **conf: Any) -> str:
    """A ``dag_test`` run: a manual run of ``month``, without a logical date."""
    return json.dumps({"conf": {"month": month, **conf}})


def dag_test(
    home: Path,
    logical_dates: list[str],
    *,
    config_variable: str | None = None,
    env: dict[str, str] | None = None,
    retries: int = 0,
    mark_success: str | None = None,
    queued_run: str | None = None,
    timeout: float = 900,
) -> tuple[dict[str, Any], str]:
    """Run ``dag.test()`` for each run in a subprocess.

    Each run is an ISO logical date or a JSON object {"logical_date": ..., "conf": {...}}
    (see ``manual``).

    Returns ({"runs": [...], "asset_events": [...]}, the subprocess's whole output).
    """
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        *logical_dates,
        "--retries",
        str(retries),
    ]
    if mark_success is not None:
        command += ["--mark-success", mark_success]
    if queued_run is not None:
        command += ["--queued-run", queued_run]
    if config_variable is not None:
        variables = home / "variables.json"
        variables.write_text(json.dumps({"tiers_config": config_variable}))
        command += ["--variables", str(variables)]
    done = run(command, airflow_env(home, **(env or {})), timeout=timeout)
    output = done.stdout + done.stderr
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER) :]), output
    raise RuntimeError(
        f"dag.test script gave no result (exit {done.returncode}):\n{output[-6000:]}"
    )


def load_dag_module(path: Path = DAGS / "tiers_monthly.py"):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HEAVY_MODULES = (
    "duckdb",
    "pyarrow",
    "great_expectations",
    "pandas",
    "pipeline.lake.partition",
    "pipeline.compute.month",
    "pipeline.run.state",
    "pipeline.run.steps",
    "pipeline.run.backfill",
    "pipeline.deliver.report",
    "pipeline.warehouse",
    "pipeline.gates",
)


def probe(home: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Parse the DAG file in a fresh interpreter; report timings, modules, structure, intervals."""
    done = run(
        [sys.executable, str(Path(__file__).resolve()), "--probe"], airflow_env(home, **(env or {}))
    )
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER) :])
    output = done.stdout[-4000:] + "\n" + done.stderr[-4000:]
    raise RuntimeError(f"probe gave no result (exit {done.returncode}):\n{output}")


def _probe() -> dict[str, Any]:
    import time

    import airflow.sdk  # noqa: F401  (the DAG processor has Airflow loaded before any DAG file)

    before = set(sys.modules)
    started = time.perf_counter()
    module = load_dag_module()
    parse_seconds = time.perf_counter() - started
    loaded = set(sys.modules) - before
    dag = module.tiers_monthly_dag

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS), known_pools={"default_pool", WAREHOUSE_POOL})
    return {
        "parse_seconds": parse_seconds,
        "heavy_modules": sorted(m for m in HEAVY_MODULES if m in sys.modules),
        "pipeline_modules": sorted(
            m for m in loaded if m == "pipeline" or m.startswith("pipeline.")
        ),
        "dagbag": {
            "dag_ids": sorted(bag.dag_ids),
            "import_errors": {str(k): v for k, v in bag.import_errors.items()},
            "warnings": {str(k): list(v) for k, v in bag.captured_warnings.items()},
            "file_seconds": [stat.duration.total_seconds() for stat in bag.dagbag_stats],
        },
        "dag": _describe_dag(dag),
        "intervals": _intervals(dag),
    }


def _describe_dag(dag) -> dict[str, Any]:
    return {
        "dag_id": dag.dag_id,
        "timetable": type(dag.timetable).__name__,
        "expression": dag.timetable.expression,
        "timezone": str(dag.timetable.timezone),
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "params": {key: dag.params.get_param(key).dump() for key in dag.params},
        "tasks": {
            task.task_id: {
                "downstream": sorted(task.downstream_task_ids),
                "pool": task.pool,
                "pool_slots": task.pool_slots,
                "retries": task.retries,
                "trigger_rule": str(task.trigger_rule),
                "operator": type(task).__name__,
                "retry_delay": task.retry_delay.total_seconds(),
                "retry_exponential_backoff": task.retry_exponential_backoff,
                "max_retry_delay": task.max_retry_delay.total_seconds()
                if task.max_retry_delay
                else None,
                "outlets": [{"name": o.name, "uri": o.uri} for o in task.outlets],
            }
            for task in dag.tasks
        },
    }


def _intervals(dag) -> dict[str, Any]:
    """The data intervals Airflow itself gives scheduled, manual and backfill runs."""
    import pendulum
    from airflow.models.backfill import _get_info_list
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.timetables.base import TimeRestriction

    from pipeline.months import parse_month
    from pipeline.run.schedule import backfill_window

    timetable = coerce_to_core_timetable(dag.timetable)
    zone = str(dag.timetable.timezone)

    def info_row(info) -> dict[str, Any]:
        return {
            "logical_date": _iso(info.logical_date),
            "start": _iso(info.data_interval.start),
            "end": _iso(info.data_interval.end),
            "run_after": _iso(info.run_after),
        }

    scheduled, last = [], None
    restriction = TimeRestriction(
        earliest=pendulum.datetime(2025, 12, 15, tz=zone), latest=None, catchup=True
    )
    for _ in range(4):
        info = timetable.next_dagrun_info(
            last_automated_data_interval=last, restriction=restriction
        )
        scheduled.append(info_row(info))
        last = info.data_interval

    manual = []
    for text in (
        "2026-02-01T00:00:00+00:00",
        "2026-02-17T13:45:00+00:00",
        "2026-03-01T00:00:00+01:00",
        "2026-03-31T23:30:00+00:00",
    ):
        interval = timetable.infer_manual_data_interval(run_after=pendulum.parse(text))
        manual.append(
            {"logical_date": text, "start": _iso(interval.start), "end": _iso(interval.end)}
        )

    serialized = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    from_date, to_date = backfill_window(parse_month("2026-01"), parse_month("2026-03"), zone)
    backfill = [
        info_row(info)
        for info in _get_info_list(
            from_date=pendulum.parse(from_date),
            to_date=pendulum.parse(to_date),
            reverse=False,
            dag=serialized,
        )
    ]
    return {
        "timezone": zone,
        "scheduled": scheduled,
        "manual": manual,
        "backfill": {"from_date": from_date, "to_date": to_date, "runs": backfill},
    }


def _main(argv: list[str]) -> None:
    if argv == ["--probe"]:
        print(RESULT_MARKER + json.dumps(_probe()), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "logical_dates", nargs="+", help="ISO logical dates or JSON runs, one dag.test() each"
    )
    parser.add_argument("--variables", help="JSON file of Airflow Variables for the runs")
    parser.add_argument("--retries", type=int, default=0, help="retries of every task, no delay")
    parser.add_argument("--mark-success", help="regex of task ids marked successful, not run")
    parser.add_argument(
        "--queued-run", help="logical date of a queued backfill run to create before the runs"
    )
    args = parser.parse_args(argv)

    from airflow.models.pool import Pool

    Pool.create_or_update_pool(
        WAREHOUSE_POOL, 1, "Single writer of the tiers warehouse", include_deferred=False
    )
    dag = load_dag_module().tiers_monthly_dag
    for task in dag.tasks:  # fast retries: the real backoff would keep a test waiting minutes
        task.retries = args.retries
        task.retry_delay = timedelta(0)
        task.max_retry_delay = timedelta(0)

    if args.queued_run:
        _queue_backfill_run(dag, args.queued_run)

    results = []
    for text in args.logical_dates:
        spec = json.loads(text) if text.startswith("{") else {"logical_date": text}
        logical_date = spec.get("logical_date")
        run = dag.test(
            logical_date=datetime.fromisoformat(logical_date) if logical_date else None,
            run_conf=spec.get("conf"),
            variable_file_path=args.variables,
            mark_success_pattern=args.mark_success,
        )
        results.append(
            {
                "logical_date": _iso(run.logical_date),
                "run_id": run.run_id,
                "state": str(run.state),
                "data_interval_start": _iso(run.data_interval_start),
                "data_interval_end": _iso(run.data_interval_end),
                "tasks": {
                    ti.task_id: {"state": str(ti.state), "try_number": ti.try_number}
                    for ti in run.get_task_instances()
                },
            }
        )
    print(
        RESULT_MARKER + json.dumps({"runs": results, "asset_events": _asset_events()}), flush=True
    )


def _queue_backfill_run(dag, logical_date: str) -> None:
    """A queued backfill run of ``logical_date``'s month, as another backfill would leave it.

    The DAG reaches the metadata DB through a first ``dag.test()`` whose tasks are all
    marked successful without running; the queued run is then added beside it.
    """
    import pendulum
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    dag.test(logical_date=None, run_conf={"month": "2000-01"}, mark_success_pattern=".*")
    start = pendulum.parse(logical_date)
    end = start.add(months=1)
    with create_session() as session:
        session.add(
            DagRun(
                dag_id=dag.dag_id,
                run_id=f"backfill__{end.isoformat()}",
                logical_date=start,
                run_after=end,
                data_interval=(start, end),
                run_type=DagRunType.BACKFILL_JOB,
                state=DagRunState.QUEUED,
                triggered_by=DagRunTriggeredByType.TEST,
            )
        )


def _asset_events() -> list[dict[str, Any]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetModel.name, AssetModel.uri, AssetEvent.extra, AssetEvent.source_run_id)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .order_by(AssetEvent.id)
        ).all()
    return [{"name": n, "uri": u, "extra": e, "source_run_id": r} for n, u, e, r in rows]


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


if __name__ == "__main__":
    _main(sys.argv[1:])
