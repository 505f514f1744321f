"""Warm tasks under the LocalExecutor: the scheduler imports what the tasks import.

``pipeline/run/preload.py`` does the importing; the plugin ``dags/plugins/tiers_preload.py``
calls it in ``airflow scheduler`` only. The real scheduler test
(``test_airflow_scheduler.py``) checks that its scheduler preloaded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from types import SimpleNamespace

import pytest

from pipeline.run import preload

import airflow_support as af


def plugin():
    path = af.DAGS / "plugins" / "tiers_preload.py"
    spec = importlib.util.spec_from_file_location("tiers_preload", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_only_a_scheduler_that_forks_its_tasks_preloads():
    module = plugin()
    runs_local_tasks = module.runs_local_tasks

    class Job:  # the component of every Airflow job (airflow.jobs.job.Job)
        pass

    class TaskRunnerMarker:  # what a task process passes to on_starting
        pass

    job, task = Job(), TaskRunnerMarker()
    airflow = "/venv/bin/airflow"
    local = "airflow.executors.local_executor.LocalExecutor"
    assert runs_local_tasks(job, [airflow, "scheduler"], "LocalExecutor")
    assert runs_local_tasks(job, [airflow, "scheduler"], local)
    assert runs_local_tasks(job, [airflow, "scheduler", "--pid", "p"], "LocalExecutor,Celery")
    assert not runs_local_tasks(job, [airflow, "scheduler"], "CeleryExecutor")  # tasks elsewhere
    for component in ("dag-processor", "triggerer", "api-server", "standalone", "dags"):
        assert not runs_local_tasks(job, [airflow, component], "LocalExecutor"), component
    assert not runs_local_tasks(job, [airflow], "LocalExecutor")
    # a task, forked from the scheduler, has its argv: it must not preload again
    assert not runs_local_tasks(task, [airflow, "scheduler"], "LocalExecutor")
    assert module.TiersPreloadPlugin.listeners


def test_preloading_can_be_switched_off():
    assert preload.enabled({})
    assert preload.enabled({preload.PRELOAD_ENV: "true"})
    for off in ("false", "0", "no", "off", " False "):
        assert not preload.enabled({preload.PRELOAD_ENV: off}), off


def test_a_module_that_fails_to_preload_is_logged_not_raised(caplog, monkeypatch):
    monkeypatch.setattr(preload, "_preloaded", False)
    with caplog.at_level("WARNING", logger="pipeline.run.preload"):
        seconds = preload.preload(("pipeline.months", "pipeline.no_such_module"))
    assert list(seconds) == ["pipeline.months"]
    assert preload.preload() == {}  # once per process
    assert "pipeline.no_such_module failed" in caplog.text
    assert "the tasks import it themselves" in caplog.text


FORKED = r"""
import json, os, sys, time
from pipeline.run import preload
seconds = preload.preload()
read, write = os.pipe()
pid = os.fork()
if pid == 0:  # the task process, as the supervisor forks it
    started = time.perf_counter()
    from pipeline import gates  # noqa: F401
    from pipeline.deliver import report  # noqa: F401
    from pipeline.run import steps  # noqa: F401

    gates.preload_gx()
    bundle = report.vega_bundle()
    assert preload.preload() == {}  # the task, forked, does not preload again
    took = time.perf_counter() - started
    os.write(write, json.dumps({"took": took, "bundle": bundle[:200], "size": len(bundle),
        "gx": "great_expectations" in sys.modules,
        "model": "pymc_marketing.clv" in sys.modules}).encode())
    os._exit(0)
os.close(write)
child = b""
while chunk := os.read(read, 65536):
    child += chunk
os.waitpid(pid, 0)
print(json.dumps({"seconds": seconds, "child": json.loads(child)}))
"""


@pytest.mark.slow
def test_a_task_forked_after_preloading_finds_everything_imported():
    done = subprocess.run(
        [sys.executable, "-c", FORKED],
        env={**os.environ, "GX_ANALYTICS_ENABLED": "false"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert set(result["seconds"]) == {
        *preload.TASK_MODULES,
        "great_expectations",
        "pymc_marketing",
        "vega_bundle",
    }
    child = result["child"]
    assert child["gx"] and child["model"]
    assert child["took"] < 0.5  # GX alone takes seconds to import and set up
    assert child["size"] > 100_000  # Vega, Vega-Lite and Vega-Embed, made by the scheduler


def test_the_model_is_imported_after_great_expectations_not_beside_it(monkeypatch) -> None:
    """``tiers run`` imports in the background, GX first (the raw gate needs it within
    seconds), then the model (needed at the end of the computation): two imports at once
    hold the GIL in turns, and the raw gate waited for both (README "Performance")."""
    from pipeline import gates
    from pipeline.compute import call_score
    from pipeline.run import backfill

    order: list[str] = []
    gx_may_finish = threading.Event()

    def gx() -> None:
        gx_may_finish.wait(timeout=10)
        order.append("great_expectations")

    model_imported = threading.Event()

    def model() -> None:
        order.append("model")
        model_imported.set()

    monkeypatch.setattr(gates.engine, "_gx", gx)
    monkeypatch.setattr(call_score, "import_model", model)
    cfg = SimpleNamespace(checks=SimpleNamespace(enabled=True))
    backfill._warm_up(cfg)
    assert not model_imported.wait(timeout=0.5)  # waits for GX, which has not finished
    gx_may_finish.set()
    assert model_imported.wait(timeout=10)
    assert order == ["great_expectations", "model"]
    # without the gates, the model does not wait for anything
    order.clear()
    model_imported.clear()
    backfill._warm_up(SimpleNamespace(checks=SimpleNamespace(enabled=False)))
    assert model_imported.wait(timeout=10)
    assert order == ["model"]
