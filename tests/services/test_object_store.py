"""The lake and the run folders on an object store: a real S3 API (moto in server mode) on
127.0.0.1, reached through the standard AWS_* variables only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline import storage
from pipeline.config import load_config
from pipeline.deliver import notify, report
from pipeline.lake.extract import extract
from pipeline.lake.partition import derived_file, month_files, read_manifest, read_month
from pipeline.months import months_between
from pipeline.run import backfill, state, steps
from pipeline.schema.tables import TABLES

from s3_support import list_keys, moto_server, new_bucket, s3_environment
from support import (
    backfill_matching_golden,
    csv_config,
    warehouse_rows,
    write_config,
    write_payments,
)

REPO = Path(__file__).resolve().parents[2]
GOLDEN_CASES = {
    "basics": ("UTC", "2026-01", "2026-03"),
    "full": ("Europe/Oslo", "2025-01", "2026-03"),
}
JAN, FEB = date(2026, 1, 1), date(2026, 2, 1)


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    with moto_server() as endpoint:
        saved = {key: os.environ.get(key) for key in s3_environment(endpoint)}
        os.environ.update(s3_environment(endpoint))
        try:
            yield endpoint
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@pytest.fixture
def bucket(s3_endpoint, tmp_path, monkeypatch) -> str:
    """A fresh bucket; this process's local scratch (cache, spill) under tmp_path."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    return new_bucket(s3_endpoint)


def on_s3(bucket: str) -> dict:
    return {"lake": {"root": f"s3://{bucket}/lake"}, "runs": {"root": f"s3://{bucket}/runs"}}


def snapshot(cfg) -> dict[str, list]:
    """The warehouse's tables, without what differs between two runs by nature."""
    tables = {}
    for name in TABLES:
        rows = warehouse_rows(cfg, name).to_pylist()
        if name == "pipeline_run":
            keep = ("month", "status", "rows_read", "rows_loaded", "source_fingerprint")
            rows = [{k: r[k] for k in keep} for r in rows]
        tables[name] = sorted(rows, key=repr)
    return tables


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_golden_case_with_lake_and_runs_on_s3(golden, tmp_path, bucket, s3_endpoint, case) -> None:
    zone, start, last = GOLDEN_CASES[case]
    cfg = csv_config(
        tmp_path,
        golden / case / "payments.csv",
        timezone=zone,
        history_start=start,
        **on_s3(bucket),
    )
    assert storage.is_remote(storage.location(cfg.lake.root))
    results = backfill_matching_golden(cfg, case, start, last)
    # everything landed in the bucket: the lake partitions and the run's hand-over files
    keys = list_keys(s3_endpoint, bucket)
    months = months_between(date.fromisoformat(start + "-01"), date.fromisoformat(last + "-01"))
    for month in months:
        partition = f"lake/payments/month={month:%Y-%m}/"
        manifest = read_manifest(cfg.lake.root, month)
        named = {"manifest.json", *manifest.data_files}
        named |= {manifest.customer_month_file, manifest.monthly_ranking_file}
        assert {k.removeprefix(partition) for k in keys if k.startswith(partition)} == named
    run_id = results[0].run_id
    state = json.loads(
        storage.location(cfg.runs.root).joinpath(run_id, f"month={last}", "run.json").read_text()
    )
    assert state["month"] == last and state["counts"]["customer_segment"] > 0
    assert f"runs/{run_id}/month={last}/tables/customer_segment.parquet" in keys
    assert f"runs/{run_id}/month={last}/gates/raw.json" in keys
    # the report step and a page drawn again write into the bucket as well
    written = steps.report_step(cfg, date.fromisoformat(last + "-01"), run_id)
    assert written["report"] == f"s3://{bucket}/runs/{run_id}/month={last}/report.html"
    path, metric, _ = report.write_report(cfg, date.fromisoformat(last + "-01"))
    assert str(path) == f"s3://{bucket}/runs/reports/{last}-{metric}.html"
    assert path.read_text().startswith("<!doctype html>")
    keys = list_keys(s3_endpoint, bucket)
    assert f"runs/{run_id}/month={last}/report.html" in keys
    # nothing of the lake on the local disk but this process's scratch
    assert not (tmp_path / "lake").exists() and not (tmp_path / "runs").exists()


STEPS = """
import sys, tempfile
from pipeline.config import load_config
from pipeline.run import steps
from pipeline.months import months_between
from datetime import date

config, run_id, part = load_config(sys.argv[1]), *sys.argv[2:4]
months = months_between(date(2026, 1, 1), date(2026, 3, 1))
for month in months:
    if part == "extract":
        steps.extract_step(config, month, run_id)
    else:
        for step in steps.MONTH_STEPS:
            step(config, month, run_id)
print(tempfile.gettempdir())
"""


def test_extract_and_compute_in_two_processes_share_only_the_bucket(
    golden, tmp_path, bucket
) -> None:
    """Like two Celery workers: each its own temporary folder, only the bucket shared."""
    source = golden / "basics" / "payments.csv"
    (tmp_path / "local").mkdir()
    local = csv_config(tmp_path / "local", source)
    backfill.backfill(local, date(2026, 1, 1), date(2026, 3, 1))

    (tmp_path / "remote").mkdir()
    remote = csv_config(tmp_path / "remote", source, **on_s3(bucket))
    script = tmp_path / "steps.py"
    script.write_text(STEPS)
    run_id = state.new_run_id()
    scratches = []
    for part in ("extract", "compute_and_load"):
        temp = tmp_path / f"tmp-{part}"
        temp.mkdir()
        done = subprocess.run(
            [sys.executable, str(script), str(tmp_path / "remote" / "tiers.toml"), run_id, part],
            cwd=REPO,
            capture_output=True,
            text=True,
            env=os.environ | {"TMPDIR": str(temp)},
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == str(temp)
        scratches.append(temp)
    assert snapshot(remote) == snapshot(local)
    # the second process read the lake from the bucket into its own folder, not the first's
    extract_tmp, compute_tmp = scratches
    cached = sorted(p.name for p in compute_tmp.rglob("*.parquet"))
    assert any(name.startswith("customer_month-") for name in cached), cached
    assert not list(extract_tmp.rglob("tables/*.parquet"))
    runs = {r["month"]: r for r in warehouse_rows(remote, "pipeline_run").to_pylist()}
    assert {r["status"] for r in runs.values()} == {"loaded"}
    assert runs[date(2026, 3, 1)]["run_id"] == run_id


KILLER = """
import os, signal, sys
from pipeline import storage
from pipeline.config import load_config
from pipeline.lake.extract import extract
from pipeline.months import parse_month

real_upload = storage.upload
if sys.argv[2] == "data":  # half of the new data file sent, then killed
    def upload(local, path):
        with path.fs.open_output_stream(path.key) as sink:
            data = local.read_bytes()
            sink.write(data[: len(data) // 2])
            sink.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    storage.upload = upload
else:  # every data file uploaded, the manifest not yet written
    real_write = storage.RemotePath.write_text
    def write_text(self, text, encoding="utf-8"):
        if self.name == "manifest.json":
            os.kill(os.getpid(), signal.SIGKILL)
        return real_write(self, text, encoding)
    storage.RemotePath.write_text = write_text
extract(load_config(sys.argv[1]), parse_month("2026-01"))
"""


def lake_amounts(cfg, month: date) -> list[Decimal]:
    return read_month(cfg.lake.root, month).column("amount").to_pylist()


@pytest.mark.parametrize("where", ["data", "manifest"])
def test_a_killed_upload_leaves_the_previous_partition_and_a_rerun_converges(
    tmp_path, bucket, s3_endpoint, where
) -> None:
    source = write_payments(
        tmp_path / "p.csv",
        [("p1", "c1", "2026-01-05", "10.00", "EUR"), ("p2", "c1", "2026-02-05", "20.00", "EUR")],
    )
    sections = on_s3(bucket)
    sections["lake"]["orphan_grace_seconds"] = 0
    cfg = csv_config(tmp_path, source, **sections)
    extract(cfg, JAN)
    extract(cfg, FEB)
    february = list_keys(s3_endpoint, bucket, "lake/payments/month=2026-02/")
    write_payments(
        source,
        [("p1", "c1", "2026-01-05", "99.00", "EUR"), ("p2", "c1", "2026-02-05", "20.00", "EUR")],
    )
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    killed_tmp = tmp_path / "killed-tmp"
    killed_tmp.mkdir()
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "tiers.toml"), where],
        cwd=REPO,
        capture_output=True,
        env=os.environ | {"TMPDIR": str(killed_tmp)},
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    # readers still see the previous January
    assert read_manifest(cfg.lake.root, JAN).amount_sum == "10.00"
    assert lake_amounts(cfg, JAN) == [Decimal("10.00")]
    assert list_keys(s3_endpoint, bucket, "lake/payments/month=2026-02/") == february
    if where == "data":  # killed while uploading: its local staging folder is left over
        assert list(killed_tmp.rglob("staging/*"))

    # a rerun, on the machine of the killed one, converges and cleans up
    extract_january_in_a_process(tmp_path / "tiers.toml", killed_tmp)
    assert read_manifest(cfg.lake.root, JAN).amount_sum == "99.00"
    assert lake_amounts(cfg, JAN) == [Decimal("99.00")]
    manifest = read_manifest(cfg.lake.root, JAN)
    named = {"manifest.json", *manifest.data_files}
    named |= {manifest.customer_month_file, manifest.monthly_ranking_file}
    keys = list_keys(s3_endpoint, bucket, "lake/payments/month=2026-01/")
    assert {k.rsplit("/", 1)[-1] for k in keys} == named  # no orphan, no temporary object
    assert list_keys(s3_endpoint, bucket, "lake/payments/month=2026-02/") == february
    assert not list(killed_tmp.rglob("staging/*"))


WRITER = """
import sys
from pipeline.config import load_config
from pipeline.lake.extract import extract
from pipeline.months import parse_month
extract(load_config(sys.argv[1]), parse_month("2026-01"))
"""


def extract_january_in_a_process(config: Path, machine_tmp: Path) -> None:
    """Extract 2026-01 in a process of its own, as a worker whose local temporary folder
    (its scratch and staging) is ``machine_tmp``."""
    done = subprocess.run(
        [sys.executable, "-c", WRITER, str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=os.environ | {"TMPDIR": str(machine_tmp)},
    )
    assert done.returncode == 0, done.stderr


def test_two_writers_of_one_month_end_with_one_complete_partition(
    tmp_path, bucket, s3_endpoint
) -> None:
    writers = []
    for amount in ("10.00", "20.00"):
        folder = tmp_path / f"writer-{amount}"
        folder.mkdir()
        source = write_payments(folder / "p.csv", [("p1", "c1", "2026-01-05", amount, "EUR")])
        csv_config(folder, source, **on_s3(bucket))
        writers.append(
            subprocess.Popen(
                [sys.executable, "-c", WRITER, str(folder / "tiers.toml")],
                cwd=REPO,
                stderr=subprocess.PIPE,
                text=True,
                env=os.environ | {"TMPDIR": str(folder)},
            )
        )
    for writer in writers:
        assert writer.wait(timeout=120) == 0, writer.stderr.read()
    cfg = load_config(tmp_path / "writer-10.00" / "tiers.toml")
    manifest = read_manifest(cfg.lake.root, JAN)
    assert manifest.amount_sum in ("10.00", "20.00")
    # the partition is whole: every file its manifest names is there and verifies, and its
    # payments and derived tables agree with the manifest
    assert lake_amounts(cfg, JAN) == [Decimal(manifest.amount_sum)]
    derived = derived_file(cfg.lake.root, JAN, "customer_month")
    assert pq.read_table(derived).column("revenue").to_pylist() == [Decimal(manifest.amount_sum)]
    # the loser's files stay for the grace period (a reader may hold its manifest)
    keys = list_keys(s3_endpoint, bucket, "lake/payments/month=2026-01/")
    assert len([k for k in keys if "/part-" in k]) == 2


def test_storage_faults_are_one_clear_line(tmp_path, s3_endpoint, bucket) -> None:
    source = write_payments(tmp_path / "p.csv", [("p1", "c1", "2026-01-05", "10.00", "EUR")])
    config = write_config(
        tmp_path,
        {
            "source": {"kind": "csv", "path": str(source)},
            "business": {"timezone": "UTC", "currency": "EUR", "history_start": "2026-01"},
            "lake": {"root": "s3://no-such-bucket-here/lake"},
            "runs": {"root": f"s3://{bucket}/runs"},
        },
    )
    tiers = [sys.executable, "-m", "pipeline.cli", "extract", "-c", str(config), "-m", "2026-01"]
    cases = {
        "bucket": ({}, ["s3://no-such-bucket", "bucket does not exist", "create it"]),
        "endpoint": (
            {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
            ["s3://no-such-bucket", "cannot be reached", "AWS_ENDPOINT_URL"],
        ),
    }
    for name, (env, words) in cases.items():
        done = subprocess.run(
            tiers, cwd=REPO, capture_output=True, text=True, env=os.environ | env, timeout=120
        )
        assert done.returncode == 1, (name, done.stderr)
        message = done.stderr.strip()
        assert message.startswith("error: "), (name, message)
        assert len(message.splitlines()) == 1, (name, message)
        assert "Traceback" not in message and "unexpected" not in message, (name, message)
        for word in words:
            assert word in message, (name, word, message)


def test_wrong_credentials_are_named(tmp_path) -> None:
    with moto_server(INITIAL_NO_AUTH_ACTION_COUNT="0") as endpoint:
        env = os.environ | s3_environment(endpoint) | {"AWS_SECRET_ACCESS_KEY": "wrong"}
        source = write_payments(tmp_path / "p.csv", [("p1", "c1", "2026-01-05", "10.00", "EUR")])
        config = write_config(
            tmp_path,
            {
                "source": {"kind": "csv", "path": str(source)},
                "business": {"timezone": "UTC", "currency": "EUR", "history_start": "2026-01"},
                "lake": {"root": "s3://some-bucket/lake"},
            },
        )
        done = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "extract", "-c", str(config), "-m", "2026-01"],
            cwd=REPO,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    message = done.stderr.strip()
    assert done.returncode == 1, message
    assert len(message.splitlines()) == 1, message
    assert "s3://some-bucket" in message and "access denied" in message, message
    assert "AWS_ACCESS_KEY_ID" in message, message


def test_the_notify_ledger_on_s3(tmp_path, bucket, s3_endpoint) -> None:
    source = write_payments(tmp_path / "p.csv", [("p1", "c1", "2026-01-05", "10.00", "EUR")])
    cfg = csv_config(tmp_path, source, **on_s3(bucket))
    sent = {"owner@example.com": {"at": "2026-02-01T08:00:00+00:00", "alerts": ["c1"]}}
    with notify._locked(cfg):
        notify._write_ledger(cfg, JAN, sent)
    assert notify.read_ledger(cfg, JAN) == sent
    assert list_keys(s3_endpoint, bucket, "runs/") == ["runs/notify/month=2026-01.json"]


def test_quarantine_on_s3_sets_bad_rows_aside_and_removes_them_when_fixed(
    tmp_path, bucket, s3_endpoint
) -> None:
    rows = [("p1", "c1", "2026-01-05", "10.00", "EUR"), ("p2", "c1", "2026-01-06", "ten", "EUR")]
    source = write_payments(tmp_path / "p.csv", rows)
    sections = on_s3(bucket)
    sections["lake"]["quarantine"] = True
    cfg = csv_config(tmp_path, source, **sections)
    manifest = extract(cfg, JAN)
    assert (manifest.rows_written, manifest.rows_quarantined) == (1, 1)
    bad = "lake/quarantine/month=2026-01/bad-rows.parquet"
    assert bad in list_keys(s3_endpoint, bucket, "lake/quarantine/")
    path, filesystem = storage.arrow_file(storage.location(cfg.lake.root) / bad[5:])
    assert pq.read_table(path, filesystem=filesystem).column("payment_id").to_pylist() == ["p2"]
    write_payments(source, rows[:1])
    assert extract(cfg, JAN).rows_quarantined == 0
    assert list_keys(s3_endpoint, bucket, "lake/quarantine/") == []


def test_a_root_with_another_scheme_is_refused(tmp_path) -> None:
    from pipeline.errors import ConfigError

    source = write_payments(tmp_path / "p.csv", [("p1", "c1", "2026-01-05", "10.00", "EUR")])
    with pytest.raises(ConfigError, match="lake.root.*s3://bucket/prefix"):
        csv_config(tmp_path, source, lake={"root": "http://example.com/lake"})


def test_local_copies_are_reused_and_old_copies_of_replaced_files_removed(
    tmp_path, bucket, s3_endpoint
) -> None:
    source = write_payments(tmp_path / "p.csv", [("p1", "c1", "2026-01-05", "10.00", "EUR")])
    cfg = csv_config(tmp_path, source, **on_s3(bucket))
    extract(cfg, JAN)
    copy = Path(month_files(cfg.lake.root, JAN)[0])
    assert copy.is_relative_to(tmp_path / "scratch")  # this process's temporary folder
    written = copy.stat().st_mtime_ns
    assert month_files(cfg.lake.root, JAN) == [str(copy)]
    assert copy.stat().st_mtime_ns == written  # reused, not fetched again
    # copies of earlier versions of the month: one over an hour old, one recent
    stale, recent = copy.parent / "part-stale.parquet", copy.parent / "part-recent.parquet"
    for path in (stale, recent):
        path.write_bytes(b"an earlier version")
    hour_ago = time.time() - storage.COPY_GRACE_SECONDS - 60
    os.utime(stale, (hour_ago, hour_ago))
    # another machine re-extracts the month; this one fetches the new files
    write_payments(source, [("p1", "c1", "2026-01-05", "20.00", "EUR")])
    other = tmp_path / "other-machine"
    other.mkdir()
    extract_january_in_a_process(tmp_path / "tiers.toml", other)
    assert lake_amounts(cfg, JAN) == [Decimal("20.00")]
    left = {p.name for p in copy.parent.iterdir()}
    assert "part-stale.parquet" not in left
    assert {"part-recent.parquet", copy.name} <= left  # recent: a reader may hold them
