"""A real Airflow 3 for tests: scheduler, DAG processor and API server on PostgreSQL.

``AirflowServer`` runs the three components as subprocesses (LocalExecutor, parallelism
sized for two cores) against a fresh metadata database on the local PostgreSQL server,
in a throw-away AIRFLOW_HOME and on a free port. The test talks to it as a user would:
the REST API v2 with a token from ``/auth/token``, and the ``airflow`` CLI. On exit every
process group it started is ended and the database dropped.

Scheduled runs are off (``[scheduler] use_job_schedule``): unpausing would otherwise start
the latest month at once, and a test only wants the runs it asks for.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

import airflow_support as af

TERMINAL = {"success", "failed"}
COMPONENTS = {
    "scheduler": ["scheduler"],
    "dag-processor": ["dag-processor"],
    "api-server": ["api-server", "--host", "127.0.0.1"],
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class AirflowServer:
    def __init__(self, home: Path, pg_dsn: str, *, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.port = free_port()
        self.database = f"airflow_tiers_test_{secrets.token_hex(6)}"
        self.admin_dsn = pg_dsn
        self.password = secrets.token_urlsafe(12)
        conninfo = psycopg.conninfo.conninfo_to_dict(pg_dsn)
        host, port = conninfo.get("host", "127.0.0.1"), conninfo.get("port", "5432")
        user = conninfo.get("user", "postgres")
        metadata_url = f"postgresql+psycopg://{user}@{host}:{port}/{self.database}"
        defaults = dict(
            # psycopg 3 (a project dependency) serves the sync and the async engine alike
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=metadata_url,
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC=metadata_url,
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            AIRFLOW__CORE__PARALLELISM="4",
            AIRFLOW__CORE__PLUGINS_FOLDER=str(af.DAGS / "plugins"),
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="false",
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{self.port}/execution/",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(home / "passwords.json"),
            AIRFLOW__API__PORT=str(self.port),
            AIRFLOW__API__WORKERS="1",
            AIRFLOW__API__SECRET_KEY=secrets.token_hex(16),
            AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(32),
            AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES="1",
            AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="false",
            AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="2",
            AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
        )
        self.env = af.airflow_env(home, **(defaults | (env or {})))  # ``env`` overrides
        self.processes: dict[str, subprocess.Popen] = {}
        self.client: httpx.Client | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> AirflowServer:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "passwords.json").write_text(json.dumps({"admin": self.password}))
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        self.cli("db", "migrate", timeout=300)
        self.cli("pools", "set", af.WAREHOUSE_POOL, "1", "Single writer of the tiers warehouse")
        for name, args in COMPONENTS.items():
            log = (self.home / f"{name}.log").open("w")
            self.processes[name] = subprocess.Popen(
                [str(af.VENV_BIN / "airflow"), *args],
                env=self.env,
                cwd=af.REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends its workers too
            )
        self._wait_for_api()
        self._wait_for_dag()

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):  # leftovers: task workers
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(self.database)
                )
            )

    def _wait_for_api(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                response = httpx.post(
                    f"{self.url}/auth/token",
                    json={"username": "admin", "password": self.password},
                    timeout=10,
                )
                if response.status_code in (200, 201):
                    # the task execution API (what task processes call) is a sub-app built
                    # on its first request: 6-9 s here; built now, as the deployment's
                    # healthcheck does, not inside the first task
                    httpx.get(f"{self.url}/execution/health", timeout=120).raise_for_status()
                    token = response.json()["access_token"]
                    self.client = httpx.Client(
                        base_url=f"{self.url}/api/v2",
                        headers={"Authorization": f"Bearer {token}"},
                        timeout=30,
                    )
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise RuntimeError(f"the API server did not answer in {timeout} s\n{self.logs()}")

    def _wait_for_dag(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            response = self.client.get(f"/dags/{af_dag_id()}")
            if response.status_code == 200:
                return
            time.sleep(1)
        raise RuntimeError(f"the DAG was not parsed in {timeout} s\n{self.logs()}")

    def _check_alive(self) -> None:
        dead = {n: p.returncode for n, p in self.processes.items() if p.poll() is not None}
        if dead:
            raise RuntimeError(f"Airflow component(s) exited: {dead}\n{self.logs()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self, tail: int = 4000) -> str:
        parts = []
        for name in COMPONENTS:
            path = self.home / f"{name}.log"
            if path.exists():
                parts.append(f"--- {name} ---\n{path.read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)

    # --- what a user does -----------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 120) -> str:
        done = af.run([str(af.VENV_BIN / "airflow"), *args], self.env, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(
                f"airflow {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done.stdout + done.stderr

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    def trigger(self, conf: dict[str, Any], note: str | None = None) -> str:
        """A manual run through REST, without a logical date; returns its run id."""
        body = {"logical_date": None, "conf": conf, "note": note}
        return self.api("POST", f"/dags/{af_dag_id()}/dagRuns", json=body)["dag_run_id"]

    def cli_trigger(self, conf: dict[str, Any], *args: str) -> str:
        """``airflow dags trigger --conf`` as the README writes it; returns the new run's id."""
        before = {r["dag_run_id"] for r in self.runs()}
        self.cli("dags", "trigger", af_dag_id(), "--conf", json.dumps(conf), *args)
        (new,) = [r["dag_run_id"] for r in self.runs() if r["dag_run_id"] not in before]
        return new

    def set_variable(self, key: str, value: str) -> None:
        if self.client.get(f"/variables/{key}").status_code == 200:
            self.api("PATCH", f"/variables/{key}", json={"key": key, "value": value})
        else:
            self.api("POST", "/variables", json={"key": key, "value": value})

    def runs(self) -> list[dict[str, Any]]:
        return self.api(
            "GET", f"/dags/{af_dag_id()}/dagRuns", params={"limit": 100, "order_by": "id"}
        )["dag_runs"]

    def wait_for_runs(self, run_ids: list[str], timeout: float = 300) -> dict[str, dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            runs = {r["dag_run_id"]: r for r in self.runs() if r["dag_run_id"] in run_ids}
            if len(runs) == len(run_ids) and all(r["state"] in TERMINAL for r in runs.values()):
                return runs
            time.sleep(2)
        raise RuntimeError(
            f"runs {run_ids} not finished in {timeout} s: "
            f"{[(r['dag_run_id'], r['state']) for r in self.runs()]}\n{self.logs()}"
        )

    def task_instances(self, run_id: str) -> dict[str, dict[str, Any]]:
        found = self.api("GET", f"/dags/{af_dag_id()}/dagRuns/{run_id}/taskInstances")
        return {ti["task_id"]: ti for ti in found["task_instances"]}

    def task_log(self, run_id: str, task_id: str, try_number: int = 1) -> str:
        folder = self.home / "logs" / f"dag_id={af_dag_id()}" / f"run_id={run_id}"
        path = folder / f"task_id={task_id}" / f"attempt={try_number}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def af_dag_id() -> str:
    from pipeline.run.schedule import DAG_ID

    return DAG_ID
