# The Airflow image of customer-tiers: the official Airflow image (which brings the
# Celery, FAB and Postgres providers the docker-compose deployment needs) plus this
# project and its dependencies at the versions of uv.lock, and the DAGs baked in.
#
# AIRFLOW_VERSION must equal apache-airflow's version in uv.lock (a test checks it):
# the locked dependencies are installed next to the image's own Airflow, which pip is
# told to keep ("apache-airflow==..." on the same command line, as the Airflow docs
# recommend for extending the image).
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
ARG UV_VERSION=0.13.9

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}
ARG AIRFLOW_VERSION

COPY --from=uv /uv /usr/local/bin/uv

# pytensor (under pymc-marketing, the call list's BG/NBD model) compiles the model's C code
# with g++; without one it falls back to Python, several times slower
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*

USER airflow
WORKDIR /opt/tiers

# Dependencies first, from the lock only, so that code changes reuse this layer.
# --prune apache-airflow: Airflow and its own dependencies come with the base image.
COPY --chown=airflow:0 pyproject.toml uv.lock README.md ./
RUN uv export --frozen --no-dev --no-emit-project --no-hashes --prune apache-airflow \
        --output-file /tmp/requirements.txt \
    && pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The project itself, editable so that pipeline/ finds sql/ beside it.
COPY --chown=airflow:0 pipeline ./pipeline
COPY --chown=airflow:0 sql ./sql
RUN pip install --no-cache-dir --no-deps --editable .

COPY --chown=airflow:0 dags /opt/airflow/dags

ENV GX_ANALYTICS_ENABLED=false
