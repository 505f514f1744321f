"""The docker-compose deployment and its image, checked without a Docker engine.

``docker-compose config`` (or ``docker compose config``) validates and renders the file
with the variables substituted; the assertions then read the rendered services.
The reference is Airflow's own docker-compose.yaml (apache/airflow,
airflow-core/docs/howto/docker-compose/docker-compose.yaml).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"

# The services of the upstream file that run Airflow 3 with the CeleryExecutor.
UPSTREAM_SERVICES = {
    "postgres",
    "redis",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "airflow-init",
}
ONE_SHOT_SERVICES = {"airflow-init", "airflow-cli", "object-store-init"}  # no healthcheck
WORKERS = {"airflow-worker", "airflow-worker-2"}
SECRETS = {
    "AIRFLOW_JWT_SECRET": "test-jwt-secret-0123456789abcdef",
    "AIRFLOW_FERNET_KEY": "test-fernet-key",
    "AIRFLOW_DB_PASSWORD": "test-db-password",
    "AIRFLOW_ADMIN_PASSWORD": "test-admin-password",
    "TIERS_WAREHOUSE_PASSWORD": "test-warehouse-password",
    "TIERS_S3_ACCESS_KEY": "test-s3-access-key",
    "TIERS_S3_SECRET_KEY": "test-s3-secret-key",
}


def _compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    pytest.fail(
        "neither docker-compose nor the docker compose plugin is installed; on Debian: "
        "apt-get install -y docker-compose (see the Makefile's compose-tools target)"
    )


def _render(tmp_path: Path, variables: dict[str, str]) -> subprocess.CompletedProcess:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "TIERS", "_AIRFLOW"))
    }
    env.update(variables)
    empty_env_file = tmp_path / "empty.env"  # a developer's .env must not leak into the test
    empty_env_file.write_text("")
    return subprocess.run(
        [*_compose_command(), "--env-file", str(empty_env_file), "-f", str(COMPOSE_FILE), "config"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict:
    done = _render(tmp_path_factory.mktemp("compose"), {**SECRETS, "AIRFLOW_UID": "50000"})
    assert done.returncode == 0, f"docker-compose config failed:\n{done.stderr}"
    return yaml.safe_load(done.stdout)


def _airflow_services(rendered: dict) -> dict[str, dict]:
    return {name: s for name, s in rendered["services"].items() if name.startswith("airflow-")}


def test_has_every_upstream_service_and_the_warehouse(rendered):
    services = set(rendered["services"])
    assert services >= UPSTREAM_SERVICES, f"missing: {sorted(UPSTREAM_SERVICES - services)}"
    assert "warehouse" in services


def test_every_long_running_service_has_a_healthcheck(rendered):
    for name, service in rendered["services"].items():
        if name in ONE_SHOT_SERVICES:
            continue
        check = service.get("healthcheck", {})
        assert check.get("test"), f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), f"{name}: {check['test']}"


def test_healthchecks_probe_what_each_service_is(rendered):
    services = rendered["services"]
    probes = {
        name: " ".join(s["healthcheck"]["test"])
        for name, s in services.items()
        if "healthcheck" in s
    }
    assert "/api/v2/monitor/health" in probes["airflow-apiserver"]
    assert "/execution/health" in probes["airflow-apiserver"]  # builds the task API early
    assert "localhost:8974/health" in probes["airflow-scheduler"]
    assert "DagProcessorJob" in probes["airflow-dag-processor"]
    assert "TriggererJob" in probes["airflow-triggerer"]
    assert "inspect ping" in probes["airflow-worker"]
    assert "inspect ping" in probes["airflow-worker-2"]
    assert "mc ready local" in probes["object-store"]
    assert "pg_isready" in probes["postgres"] and "pg_isready" in probes["warehouse"]
    assert "redis-cli ping" in probes["redis"]


def test_all_airflow_services_share_the_jwt_secret_from_the_environment(rendered):
    services = _airflow_services(rendered)
    secrets = {
        name: s["environment"].get("AIRFLOW__API_AUTH__JWT_SECRET") for name, s in services.items()
    }
    assert set(secrets.values()) == {SECRETS["AIRFLOW_JWT_SECRET"]}, secrets


def test_celery_executor_examples_off_and_shared_backends(rendered):
    for name, service in _airflow_services(rendered).items():
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false", name
        assert urlsplit(env["AIRFLOW__CELERY__BROKER_URL"]).hostname == "redis", name
        assert urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).hostname == "postgres", name
        assert (
            env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
            == "http://airflow-apiserver:8080/execution/"
        )
        assert env["AIRFLOW__CORE__FERNET_KEY"] == SECRETS["AIRFLOW_FERNET_KEY"], name


def test_parallelism_is_the_one_of_make_airflow_and_the_test_harness(rendered):
    makefile = (REPO / "Makefile").read_text()
    (default,) = re.findall(r"^AIRFLOW_PARALLELISM \?= (\d+)$", makefile, re.MULTILINE)
    harness = (REPO / "tests" / "airflow_server.py").read_text()
    assert f'AIRFLOW__CORE__PARALLELISM="{default}"' in harness
    for name, service in _airflow_services(rendered).items():
        env = service["environment"]
        assert env["AIRFLOW__CORE__PARALLELISM"] == default, name
        assert env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == default, name


def test_parallelism_follows_airflow_parallelism_from_the_environment(tmp_path):
    done = _render(tmp_path, {**SECRETS, "AIRFLOW_UID": "50000", "AIRFLOW_PARALLELISM": "3"})
    assert done.returncode == 0, done.stderr
    scheduler = yaml.safe_load(done.stdout)["services"]["airflow-scheduler"]
    assert scheduler["environment"]["AIRFLOW__CORE__PARALLELISM"] == "3"


def test_airflow_services_wait_for_init_and_healthy_backends(rendered):
    for name, service in _airflow_services(rendered).items():
        if name in ONE_SHOT_SERVICES:
            continue
        depends = service["depends_on"]
        assert depends["airflow-init"]["condition"] == "service_completed_successfully", name
        for backend in ("postgres", "redis", "warehouse"):
            assert depends[backend]["condition"] == "service_healthy", (name, backend)
        assert depends["object-store-init"]["condition"] == "service_completed_successfully"
    for name in WORKERS:
        worker = rendered["services"][name]
        assert worker["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"
    init = rendered["services"]["object-store-init"]
    assert init["depends_on"]["object-store"]["condition"] == "service_healthy"


def test_pipeline_points_at_the_warehouse_service_and_shared_lake(rendered):
    services = rendered["services"]
    warehouse_env = services["warehouse"]["environment"]
    for name, service in _airflow_services(rendered).items():
        env = service["environment"]
        url = urlsplit(env["TIERS__WAREHOUSE__URL"])
        assert url.scheme == "postgresql" and url.hostname == "warehouse", name
        assert url.username == warehouse_env["POSTGRES_USER"]
        assert (
            url.password
            == warehouse_env["POSTGRES_PASSWORD"]
            == SECRETS["TIERS_WAREHOUSE_PASSWORD"]
        )
        assert url.path.lstrip("/") == warehouse_env["POSTGRES_DB"]
        assert env["TIERS_CONFIG"].endswith(".toml")
        mounts = {_target(v): _source(v) for v in service["volumes"]}
        assert str(Path(env["TIERS_CONFIG"]).parent) in mounts, name
    assert "warehouse-db-volume" in set(rendered["volumes"])


def _target(volume) -> str:
    return volume["target"] if isinstance(volume, dict) else str(volume).split(":")[1]


def _source(volume) -> str:
    return volume.get("source", "") if isinstance(volume, dict) else str(volume).split(":")[0]


def test_lake_and_runs_are_on_the_object_store_service(rendered):
    """Both roots are s3:// URLs in the bucket that object-store-init creates, reached
    through the standard AWS variables with the object store's own credentials."""
    services = rendered["services"]
    store_env = services["object-store"]["environment"]
    init_script = " ".join(services["object-store-init"]["command"])
    bucket = re.search(r"mc mb --ignore-existing tiers/(\S+)", init_script).group(1)
    assert "http://object-store:9000" in init_script
    for name, service in _airflow_services(rendered).items():
        env = service["environment"]
        for root in ("TIERS__LAKE__ROOT", "TIERS__RUNS__ROOT"):
            url = urlsplit(env[root])
            assert url.scheme == "s3" and url.hostname == bucket, (name, root, env[root])
        assert urlsplit(env["AWS_ENDPOINT_URL"]).hostname == "object-store", name
        assert urlsplit(env["AWS_ENDPOINT_URL"]).port == 9000, name
        assert env["AWS_ACCESS_KEY_ID"] == store_env["MINIO_ROOT_USER"], name
        assert env["AWS_SECRET_ACCESS_KEY"] == store_env["MINIO_ROOT_PASSWORD"], name
        assert env["AWS_ACCESS_KEY_ID"] == SECRETS["TIERS_S3_ACCESS_KEY"], name
        assert env["AWS_REGION"], name
    assert "object-store-volume" in rendered["volumes"]
    assert [_source(v) for v in services["object-store"]["volumes"]] == ["object-store-volume"]


def test_two_celery_workers_share_no_data_volume(rendered):
    """The workers are as two machines: the only volumes they share are Airflow's logs and
    configuration; the pipeline's configuration and the input files are mounted read-only."""
    services = rendered["services"]
    assert set(services) >= WORKERS
    first, second = (services[name] for name in sorted(WORKERS))
    assert first["command"] == second["command"]
    for worker in (first, second):
        command = worker["command"]
        assert (" ".join(command) if isinstance(command, list) else command) == "celery worker"
        for volume in worker["volumes"]:
            target, source = _target(volume), _source(volume)
            read_only = volume.get("read_only") if isinstance(volume, dict) else ":ro" in volume
            assert target.startswith("/opt/airflow/") or read_only, (target, source)
            assert source not in ("tiers-lake", "tiers-runs"), (target, source)
    assert not {"tiers-lake", "tiers-runs"} & set(rendered["volumes"])


def test_init_migrates_creates_admin_and_the_single_slot_pool(rendered):
    init = rendered["services"]["airflow-init"]
    script = " ".join(init["command"])
    assert re.search(r"airflow pools set tiers_warehouse 1\b", script)
    assert init["environment"]["_AIRFLOW_DB_MIGRATE"] == "true"
    assert init["environment"]["_AIRFLOW_WWW_USER_CREATE"] == "true"
    assert init["environment"]["_AIRFLOW_WWW_USER_PASSWORD"] == SECRETS["AIRFLOW_ADMIN_PASSWORD"]


def test_airflow_services_run_the_image_built_from_the_dockerfile(rendered):
    images = set()
    for name, service in _airflow_services(rendered).items():
        assert Path(service["build"]["context"]) == REPO, name
        assert service["build"].get("dockerfile", "Dockerfile") == "Dockerfile", name
        images.add(service["image"])
    assert len(images) == 1


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_refuses_to_render_without_each_secret(tmp_path, missing):
    variables = {k: v for k, v in SECRETS.items() if k != missing}
    done = _render(tmp_path, variables)
    assert done.returncode != 0
    assert missing in done.stderr


def test_compose_file_holds_no_secret_literal():
    text = COMPOSE_FILE.read_text()
    for variable in SECRETS:
        uses = re.findall(r"\$\{" + variable + r"([^}]*)\}", text)
        assert uses, f"{variable} is not used"
        assert all(use.startswith(":?") for use in uses), f"{variable} has a default: {uses}"


def _locked_version(package: str) -> str:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    return next(p["version"] for p in lock["package"] if p["name"] == package)


def test_dockerfile_extends_the_locked_airflow_and_installs_from_the_lock():
    text = (REPO / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.M))
    assert args["AIRFLOW_VERSION"] == _locked_version("apache-airflow")
    assert re.search(
        r"^FROM apache/airflow:\$\{AIRFLOW_VERSION\}-python\$\{PYTHON_VERSION\}$", text, re.M
    )
    required = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = re.match(r">=(\d+\.\d+)", required).group(1)
    assert tuple(map(int, args["PYTHON_VERSION"].split("."))) >= tuple(map(int, minimum.split(".")))
    assert re.search(r"uv export --frozen --no-dev", text)
    assert re.search(r'pip install [^\n]*"apache-airflow==\$\{AIRFLOW_VERSION\}" -r', text)
    assert re.search(r"^COPY [^\n]*dags /opt/airflow/dags$", text, re.M)
    assert re.search(r"^USER airflow$", text, re.M)


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image():
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".env", ".git", ".venv", ".airflow", "*.duckdb"} <= ignored
    for needed in ("pipeline", "sql", "dags", "pyproject.toml", "uv.lock", "README.md"):
        assert needed not in ignored
