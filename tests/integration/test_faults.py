"""Faults of the machine and the network end in one clear message and a safe state.

Each test runs the real `tiers` command against a real fault where the sandbox allows it:
a tmpfs that is full, a read-only bind mount, a PostgreSQL session ended by
pg_terminate_backend, a second process holding the warehouse, a parent killed with
SIGTERM or SIGKILL. Where mounting is not permitted (a container without
CAP_SYS_ADMIN), the disk faults are injected at the OS boundary instead: ``os.replace``
(the publish step of every file the pipeline writes) fails with ENOSPC or EROFS in the
`tiers` process. Each asserts the exit code, that the message names the problem without a
traceback, and that the warehouse and the other months' partitions are unchanged.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import duckdb
import psycopg
import pyarrow.parquet as pq
import pytest
from psycopg import sql as psql

from pipeline.lake.partition import (
    derived_file,
    extracted_months,
    month_files,
    partition_dir,
    read_manifest,
)
from pipeline.months import parse_month
from pipeline.run import backfill
from pipeline.schema.tables import TABLES
from pipeline.warehouse import open_warehouse

from pg_support import warehouse_url
from support import csv_config, files_of, write_payments

pytest_plugins = ["pg_support"]  # fixtures: pg_dsn, pg, pg_schema

ROOT = Path(__file__).resolve().parents[2]
TIERS = str(Path(sys.executable).with_name("tiers"))
JAN, FEB = parse_month("2026-01"), parse_month("2026-02")

# The `tiers` command with os.replace failing for paths under a prefix (the fallback
# when the sandbox does not let the test mount a full or read-only file system).
INJECTED_TIERS = """
import errno, os, sys
code, prefix = os.environ["TIERS_TEST_FAULT"].split(":", 1)
code = getattr(errno, code)
real = os.replace
def replace(source, target, *args, **kwargs):
    if os.path.abspath(target).startswith(prefix):
        raise OSError(code, os.strerror(code), os.fspath(target))
    return real(source, target, *args, **kwargs)
os.replace = replace
from pipeline.cli import main
sys.argv[0] = "tiers"
main()
"""


def payments(months=(1, 2, 3), extra=()) -> list[tuple]:
    rows = [
        (f"p{m}-{i}", f"c{i % 7}", f"2026-{m:02d}-{i % 27 + 1:02d}", f"{10 + i}.00", "EUR")
        for m in months
        for i in range(30)
    ]
    return rows + list(extra)


def loaded_case(folder: Path, **config):
    """January and February extracted and loaded; the source then restates February (a
    new payment), so a run that went through would change the warehouse."""
    folder.mkdir(parents=True, exist_ok=True)
    source = write_payments(folder / "p.csv", payments())
    cfg = csv_config(folder, source, **config)
    results = backfill.backfill(cfg, JAN, FEB)
    assert [r.status for r in results] == ["loaded", "loaded"], [r.error for r in results]
    write_payments(source, payments(extra=[("p999", "c1", "2026-02-27", "5000.00", "EUR")]))
    return cfg


def tiers(*args: str, cwd: Path, env: dict | None = None, fault: str | None = None):
    command = [TIERS, *args]
    if fault is not None:
        command = [sys.executable, "-c", INJECTED_TIERS, *args]
        env = (env or os.environ) | {"TIERS_TEST_FAULT": fault, "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


def warehouse_contents(cfg) -> dict[str, list]:
    warehouse = open_warehouse(cfg)
    try:
        return {name: sorted(map(repr, warehouse.read_table(name).to_pylist())) for name in TABLES}
    finally:
        warehouse.close()


def catalog_contents(cfg) -> list[tuple]:
    """What a BI tool sees in the published DuckDB catalog."""
    path = cfg.warehouse.url.removeprefix("duckdb:///")
    with duckdb.connect(path, read_only=True) as con:
        return con.sql(
            "select month, count(*), sum(revenue) from customer_month group by month order by 1"
        ).fetchall()


def runs(cfg) -> list[dict]:
    warehouse = open_warehouse(cfg)
    try:
        return sorted(
            warehouse.read_table("pipeline_run").to_pylist(), key=lambda r: r["recorded_at"]
        )
    finally:
        warehouse.close()


def assert_one_message(result, *expected: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "unexpected" not in result.stderr, result.stderr  # a foreseen fault, told as such
    assert "leaked" not in result.stderr, result.stderr  # nothing under the message
    for words in expected:
        assert words in result.stderr, (words, result.stderr)


# --- full and read-only disks ------------------------------------------------------------


def _mount(*args: str) -> bool:
    """Whether ``mount *args`` succeeded (TIERS_TEST_NO_MOUNT=1 tries the fallback here)."""
    if os.environ.get("TIERS_TEST_NO_MOUNT") == "1" or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextlib.contextmanager
def mounted(target: Path, *args: str) -> Iterator[bool]:
    """``mount *args target``; yields whether the sandbox permitted it."""
    target.mkdir(parents=True, exist_ok=True)
    ok = _mount(*args, str(target))
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)


def fill(folder: Path) -> None:
    """Write to ``folder`` until its file system is full."""
    with open(folder / "filler", "wb") as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 65536)
            handle.flush()
    with contextlib.suppress(OSError):  # and the last blocks, byte by byte
        (folder / "filler-tail").write_bytes(b"\0" * 4096)


def full(disk: Path, real: bool, written: Path) -> str | None:
    """Make writes under ``written`` fail for want of space: fill the mounted ``disk``, or,
    where the sandbox refused the mount, the fault to inject into the tiers process."""
    if real:
        fill(disk)
        return None
    return f"ENOSPC:{written}"


def test_a_full_disk_during_extract_keeps_the_lake_and_says_what_to_do(tmp_path) -> None:
    disk = tmp_path / "disk"
    with mounted(disk, "-t", "tmpfs", "-o", "size=2m", "tmpfs") as real:
        cfg = loaded_case(tmp_path / "case", lake={"root": str(disk / "lake")})
        lake_before, warehouse_before = files_of(disk / "lake"), warehouse_contents(cfg)
        fault = full(disk, real, disk / "lake")
        result = tiers(
            "run", "-c", "tiers.toml", "-m", "2026-02", cwd=tmp_path / "case", fault=fault
        )
        assert_one_message(
            result,
            f"cannot write {disk / 'lake'}",
            "no space is left on the device",
            "point [lake] root at another folder",
            "step extract of month 2026-02",
        )
        assert files_of(disk / "lake") == lake_before  # no half-written file, nothing new
        assert warehouse_contents(cfg)["customer_month"] == warehouse_before["customer_month"]
        failed = runs(cfg)[-1]
        assert failed["status"] == "failed" and "no space is left" in failed["error"]
        assert failed["month"] == FEB


def test_a_full_disk_during_the_warehouse_commit_keeps_the_warehouse(tmp_path) -> None:
    disk = tmp_path / "disk"
    with mounted(disk, "-t", "tmpfs", "-o", "size=3m", "tmpfs") as real:
        cfg = loaded_case(
            tmp_path / "case", warehouse={"url": f"duckdb:///{disk / 'warehouse.duckdb'}"}
        )
        before = warehouse_contents(cfg), catalog_contents(cfg)
        data_before = files_of(disk / "warehouse.duckdb.d")
        fault = full(disk, real, disk)
        result = tiers(
            "run", "-c", "tiers.toml", "-m", "2026-02", cwd=tmp_path / "case", fault=fault
        )
        assert_one_message(
            result,
            f"cannot write {disk}",
            "no space is left on the device",
            "point [warehouse] url at another folder",
            "step load of month 2026-02",
        )
        # The previous state, catalog and files, and no file of the failed load.
        assert (warehouse_contents(cfg), catalog_contents(cfg)) == before
        assert files_of(disk / "warehouse.duckdb.d") == data_before
        assert not [p for p in disk.iterdir() if p.name.startswith(".warehouse.duckdb")]
        assert "cannot be recorded" not in result.stderr or "run.json" in result.stderr


@pytest.mark.parametrize("folder", ["lake", "runs"])
def test_a_read_only_folder_is_named_with_the_setting_to_change(tmp_path, folder) -> None:
    cfg = loaded_case(tmp_path / "case")
    case = tmp_path / "case"
    lake_before, warehouse_before = files_of(case / "lake"), warehouse_contents(cfg)
    target = case / folder
    with mounted(target, "--bind", str(target)) as bound:
        real = bound and _mount("-o", "remount,bind,ro", str(target))
        fault = None if real else f"EROFS:{target}"
        result = tiers("run", "-c", "tiers.toml", "-m", "2026-02", cwd=case, fault=fault)
        if folder == "lake":  # `tiers extract` says the same (it is no run: nothing recorded)
            extract = tiers("extract", "-c", "tiers.toml", "-m", "2026-02", cwd=case, fault=fault)
            assert_one_message(extract, f"cannot write {target}", "read-only", "[lake] root")
    assert_one_message(
        result, f"cannot write {target}", "read-only", f"point [{folder}] root at another folder"
    )
    assert files_of(case / "lake") == lake_before
    assert warehouse_contents(cfg)["customer_month"] == warehouse_before["customer_month"]
    failed = runs(cfg)[-1]  # the warehouse can be reached: the failure is recorded
    assert failed["status"] == "failed" and "read-only" in failed["error"]


# --- months out of range, damaged lake files ---------------------------------------------


@pytest.mark.parametrize("month", ["9999-12", "9998-06", "0001-01"])
def test_a_month_out_of_the_calendar_is_a_clear_message(tmp_path, month) -> None:
    source = write_payments(tmp_path / "p.csv", payments())
    csv_config(tmp_path, source)
    result = tiers("run", "-c", "tiers.toml", "-m", month, cwd=tmp_path)
    assert result.returncode == 2
    assert f"month {month} is out of range" in result.stderr and "--month" in result.stderr
    assert "Traceback" not in result.stderr and "year 10000" not in result.stderr
    assert not (tmp_path / "lake").exists() and not (tmp_path / "warehouse.duckdb").exists()
    backfill = tiers(
        "backfill", "-c", "tiers.toml", "--from", "2026-01", "--to", month, cwd=tmp_path
    )
    assert backfill.returncode == 2 and "is out of range" in backfill.stderr


# --- deliveries refused: a broken CSV, an empty month, a payment_id in two months, a month
# before the history's start ----------------------------------------------------------------


def lake_and_warehouse(cfg) -> tuple[dict, dict]:
    """Every file of the lake (and its hash) and every reporting table's rows."""
    return files_of(Path(cfg.lake.root)), warehouse_contents(cfg)


def test_an_empty_delivery_of_an_active_month_is_refused_whatever_min_rows(tmp_path) -> None:
    cfg = loaded_case(tmp_path)  # 30 payments a month, below [checks.volume] min_rows (100)
    source = write_payments(Path(cfg.source.path), [])  # the header only
    before = lake_and_warehouse(cfg)
    for month, active in (
        ("2026-02", "the lake holds 30 payment(s) of 2026-02, which this would replace"),
        ("2026-03", "2026-02 has 30 payment(s) in the lake"),  # never extracted
    ):
        result = tiers("run", "-c", "tiers.toml", "-m", month, cwd=tmp_path)
        assert_one_message(
            result,
            f"{source}: month {month} has no payments, but the history says it is active: "
            + active,
            "is a failed delivery",
            "nothing of this month was written",
            f'add "{month}" to [checks.volume] accept and run it again',
        )
        assert lake_and_warehouse(cfg) == before
        assert runs(cfg)[-1]["status"] == "failed" and month in runs(cfg)[-1]["error"]
    # accepted as empty (the business was closed): February is loaded without payments
    csv_config(tmp_path, source, **{"checks.volume": {"accept": ["2026-02"]}})
    accepted = tiers("run", "-c", "tiers.toml", "-m", "2026-02", cwd=tmp_path)
    assert accepted.returncode == 0, accepted.stderr
    assert read_manifest(cfg.lake.root, FEB).rows_written == 0
    assert [month for month, *_ in catalog_contents(cfg)] == [JAN]


def test_a_payment_id_in_another_month_of_the_source_is_refused_naming_both(tmp_path) -> None:
    """March is not in the lake: only the source shows that p2-5 is given twice."""
    cfg = loaded_case(tmp_path)
    again = ("p2-5", "c9", "2026-03-10", "99.00", "EUR")  # February's p2-5, in March
    source = write_payments(Path(cfg.source.path), payments(extra=[again]))
    before = lake_and_warehouse(cfg)
    february = "paid_at 2026-02-06T00:00:00+00:00 amount 15.00 in 2026-02"
    march = "paid_at 2026-03-10T00:00:00+00:00 amount 99.00 in 2026-03"
    for month, other, example in (
        ("2026-02", "2026-03", f"p2-5: {february}, {march}"),
        ("2026-03", "2026-02", f"p2-5: {march}, {february}"),
    ):
        result = tiers("run", "-c", "tiers.toml", "-m", month, cwd=tmp_path)
        assert_one_message(
            result,
            f"{source}: month {month} has 1 payment(s) whose payment_id the source gives again, "
            f"with other values, in month(s) {other}; payment_id is unique across the source",
            example,
            "nothing of this month was written",
        )
        assert lake_and_warehouse(cfg) == before
    # the same payment delivered twice, with the same values, is a duplicate: dropped, counted
    write_payments(source, payments(extra=[payments()[35]]))
    duplicate = tiers("extract", "-c", "tiers.toml", "-m", "2026-02", cwd=tmp_path)
    assert duplicate.returncode == 0, duplicate.stderr
    assert "31 row(s) read, 1 duplicate(s) dropped" in duplicate.stdout


def test_an_unterminated_quote_is_refused_by_line_and_the_month_kept(tmp_path) -> None:
    """Its last row's ``"c05`` loaded as a new customer of February (more CSV faults are in
    test_source_parse_errors.py)."""
    cfg = loaded_case(tmp_path)
    source = write_payments(Path(cfg.source.path), payments())  # 90 rows, lines end in CRLF
    with source.open("a", newline="") as handle:
        handle.write('p2-99,"c05,2026-02-03,10.00,EUR\r\n')
    before = lake_and_warehouse(cfg)
    result = tiers("run", "-c", "tiers.toml", "-m", "2026-02", cwd=tmp_path)
    assert_one_message(
        result,
        f"{source}: line 92: the CSV parser cannot read the source (a quoted field opened on "
        "this line is never closed)",
        "Nothing of the month was written",
    )
    assert lake_and_warehouse(cfg) == before


def test_a_month_before_history_start_is_refused_naming_the_setting(tmp_path) -> None:
    cfg = loaded_case(tmp_path)
    stray = ("p1900", "c1", "1900-01-15", "10.00", "EUR")  # a stray date in the delivery
    write_payments(Path(cfg.source.path), payments(extra=[stray]))
    before, recorded = lake_and_warehouse(cfg), len(runs(cfg))
    run_folders = sorted((tmp_path / "runs").iterdir())
    for command, *options in (
        ("run", "-m", "1900-01"),
        ("extract", "-m", "1900-01"),
        ("run", "-m", "1900-01", "--no-extract"),
        ("backfill", "--from", "1900-01", "--to", "2026-02"),
    ):
        result = tiers(command, "-c", "tiers.toml", *options, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert (
            "month 1900-01 lies before the history's start, [business] history_start = "
            '"2026-01": a month before it has no payments by definition' in result.stderr
        )
        assert "nothing was written" in result.stderr and "Traceback" not in result.stderr
        assert "lake already holds" not in result.stderr  # not a conflict across months
        assert lake_and_warehouse(cfg) == before and len(runs(cfg)) == recorded
        assert sorted((tmp_path / "runs").iterdir()) == run_folders
    # the stray row belongs to no month: a later month of the same delivery loads without it
    result = tiers("run", "-c", "tiers.toml", "-m", "2026-02", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert extracted_months(cfg.lake.root) == [JAN, FEB]
    assert read_manifest(cfg.lake.root, FEB).rows_read == 30


def _flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["bytes damaged", "file missing"])
def test_a_damaged_earlier_month_stops_the_later_month_by_name(tmp_path, damage) -> None:
    """February's computation reads January's customer_month file (derived at extract)."""
    cfg = loaded_case(tmp_path)
    january = derived_file(cfg.lake.root, JAN, "customer_month")
    if damage == "bytes damaged":
        _flip_bytes(Path(january))
    else:
        Path(january).unlink()
    february = files_of(partition_dir(cfg.lake.root, FEB))
    before = warehouse_contents(cfg)
    result = tiers("run", "-c", "tiers.toml", "-m", "2026-02", "--no-extract", cwd=tmp_path)
    assert_one_message(
        result,
        "month 2026-01",
        Path(january).name,
        "missing" if damage == "file missing" else "changed after the extract",
        "tiers extract --month 2026-01",
    )
    assert warehouse_contents(cfg) == before
    assert files_of(partition_dir(cfg.lake.root, FEB)) == february
    assert runs(cfg)[-1]["status"] == "failed" and "2026-01" in runs(cfg)[-1]["error"]
    repaired = tiers("extract", "-c", "tiers.toml", "-m", "2026-01", cwd=tmp_path)  # the repair
    assert repaired.returncode == 0, repaired.stderr
    assert pq.read_table(month_files(cfg.lake.root, JAN)[0]).num_rows == 30
    assert derived_file(cfg.lake.root, JAN, "customer_month")  # verified again


# --- the DuckDB warehouse held by another process ---------------------------------------

HOLD_WRITER_LOCK = """
import fcntl, sys, time
with open(sys.argv[1], "a+") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_warehouse_held_by_another_writer_is_named_after_a_bounded_wait(tmp_path) -> None:
    cfg = loaded_case(tmp_path, warehouse={"lock_timeout": 1})
    before = warehouse_contents(cfg)
    lock = Path(cfg.warehouse.url.removeprefix("duckdb:///") + ".d") / "writer.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_WRITER_LOCK, str(lock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        result = tiers("run", "-c", "tiers.toml", "-m", "2026-02", cwd=tmp_path)
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert_one_message(
        result,
        f"warehouse {Path(cfg.warehouse.url.removeprefix('duckdb:///'))}",
        str(lock),
        "after 1 s",
        "wait for it to end",
        "lock_timeout",
    )
    assert waited < 60
    assert warehouse_contents(cfg) == before  # nothing loaded, and nothing recorded either
    assert "run.json" in result.stderr  # the failure is in the run's folder instead
    again = tiers("run", "-c", "tiers.toml", "-m", "2026-02", cwd=tmp_path)
    assert again.returncode == 0, again.stderr


HOLD_DUCKDB_FILE = """
import duckdb, sys, time
con = duckdb.connect(sys.argv[1])
con.execute("create table scratch as select 1 as x")
print("held", flush=True)
time.sleep(60)
"""


def test_a_warehouse_file_open_for_writing_elsewhere_is_named(tmp_path) -> None:
    """A catalog of the one-file layout (no state yet) held by a DuckDB writer: the load
    cannot carry it over and says which file and what to do."""
    source = write_payments(tmp_path / "p.csv", payments())
    cfg = csv_config(tmp_path, source)
    catalog = cfg.warehouse.url.removeprefix("duckdb:///")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_DUCKDB_FILE, catalog], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        result = tiers("run", "-c", "tiers.toml", "-m", "2026-01", cwd=tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert_one_message(result, f"warehouse {catalog} is open for writing in another process")
    assert "read-only" in result.stderr and "run the command again" in result.stderr
    assert not (Path(catalog + ".d") / "state.json").exists()


# --- killing a parallel backfill ---------------------------------------------------------


def session_processes(session: int) -> list[tuple[int, str]]:
    """The live processes of a session (the backfill, its workers, the resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == session and fields[0] != "Z":
            found.append((int(entry.name), command[:120]))
    return found


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killing_a_parallel_backfill_leaves_no_process_behind(golden, tmp_path, sig) -> None:
    cfg = csv_config(
        tmp_path, golden / "full" / "payments.csv", timezone="Europe/Oslo", history_start="2025-01"
    )
    backfill = subprocess.Popen(
        [TIERS, "backfill", "-c", "tiers.toml", "--from", "2025-01", "--to", "2026-03"]
        + ["--jobs", "2"],
        cwd=tmp_path,
        start_new_session=True,  # its own session: every descendant can be found
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "stderr").open("w"),  # a file: orphans would hold a pipe open
    )
    try:
        deadline = time.monotonic() + 120
        while len(session_processes(backfill.pid)) < 4:  # parent, tracker, two workers
            assert backfill.poll() is None, (tmp_path / "stderr").read_text()
            assert time.monotonic() < deadline, session_processes(backfill.pid)
            time.sleep(0.1)
        backfill.send_signal(sig)
        backfill.wait(timeout=60)
        stderr = (tmp_path / "stderr").read_text()
        deadline = time.monotonic() + 15
        while session_processes(backfill.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert session_processes(backfill.pid) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(backfill.pid, signal.SIGKILL)
    if sig == signal.SIGTERM:
        assert backfill.returncode == 128 + signal.SIGTERM
        assert "backfill stopped by SIGTERM" in stderr and "Traceback" not in stderr
    else:
        assert backfill.returncode == -signal.SIGKILL
    # Whatever was loaded is whole: each loaded month has its run record and its rows.
    loaded = {r["month"] for r in runs(cfg) if r["status"] == "loaded"}
    months = set(open_warehouse(cfg).read_table("customer_month").column("month").to_pylist())
    assert months == loaded


# --- PostgreSQL: unreachable, silent, a session ended mid-load ---------------------------


def with_password(dsn: str, password: str) -> str:
    """The DSN with a password (trust authentication ignores it; the messages must not)."""
    parts = urlsplit(dsn)
    user = parts.username or "postgres"
    netloc = f"{user}:{password}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.mark.postgres
@pytest.mark.parametrize("server", ["refused", "silent"])
def test_an_unreachable_postgres_warehouse_is_named_and_the_run_kept(tmp_path, server) -> None:
    """A wrong port: nothing listens (refused) or something that is not PostgreSQL does
    (silent: the connect timeout ends the wait)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    if server == "silent":
        listener.listen(1)
    else:
        listener.close()
    try:
        url = f"postgresql://tiers:hunter2@127.0.0.1:{port}/x?connect_timeout=2"
        cfg = loaded_case(tmp_path / "duck")  # the lake of January and February
        case = tmp_path / "duck"
        csv_config(case, case / "p.csv", warehouse={"url": url})
        january = files_of(partition_dir(cfg.lake.root, JAN))
        result = tiers("run", "-c", "tiers.toml", "-m", "2026-02", cwd=case)
    finally:
        listener.close()
    assert_one_message(
        result,
        f"warehouse postgresql://tiers:***@127.0.0.1:{port}/x",
        "cannot be reached",
        "Connection refused" if server == "refused" else "timeout",
        "warehouse.url",
        "step load of month 2026-02",
        "could not be recorded in pipeline_run",
        "run.json",
    )
    assert "hunter2" not in result.stderr
    assert files_of(partition_dir(cfg.lake.root, JAN)) == january


@pytest.mark.postgres
def test_an_unreachable_postgres_source_is_named(tmp_path) -> None:
    cfg = loaded_case(tmp_path)
    csv_config(
        tmp_path,
        tmp_path / "p.csv",
        source={"kind": "postgres", "dsn": "postgresql://tiers:hunter2@127.0.0.1:1/x"}
        | {"table": "sales.payments", "path": None},
    )
    lake_before, warehouse_before = files_of(tmp_path / "lake"), warehouse_contents(cfg)
    result = tiers("run", "-c", "tiers.toml", "-m", "2026-02", cwd=tmp_path)
    assert_one_message(
        result,
        "postgres table sales.payments at postgresql://tiers:***@127.0.0.1:1/x: cannot connect",
        "Connection refused",
        "source.dsn",
        "nothing was extracted",
    )
    assert "hunter2" not in result.stderr
    assert files_of(tmp_path / "lake") == lake_before
    assert warehouse_contents(cfg)["customer_month"] == warehouse_before["customer_month"]
    failed = runs(cfg)[-1]
    assert failed["status"] == "failed" and "cannot connect" in failed["error"]


def _waits_for_a_lock(pg, application: str) -> bool:
    row = pg.execute(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE application_name = %s AND wait_event_type = 'Lock'",
        [application],
    ).fetchone()
    return row[0] > 0


@pytest.mark.postgres
def test_a_postgres_session_ended_mid_load_keeps_the_previous_month(
    pg, pg_dsn, pg_schema, tmp_path
) -> None:
    """pg_terminate_backend ends the load's session after it replaced February's rows in its
    transaction (it waits to insert its run record): one message, the old February, and the
    failure recorded through a new connection."""
    application = f"tiers_fault_{uuid.uuid4().hex[:8]}"
    url = warehouse_url(with_password(pg_dsn, "hunter2"), application)
    cfg = loaded_case(tmp_path, warehouse={"url": url, "schema": pg_schema})
    before = warehouse_contents(cfg)
    january = files_of(partition_dir(cfg.lake.root, JAN))
    blocker = psycopg.connect(pg_dsn)
    blocker.execute(
        psql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(
            psql.Identifier(pg_schema, "pipeline_run")
        )
    )
    load = subprocess.Popen(
        [TIERS, "run", "-c", "tiers.toml", "-m", "2026-02"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not _waits_for_a_lock(pg, application):
            assert load.poll() is None, load.communicate()
            assert time.monotonic() < deadline, "the load never reached its run record"
            time.sleep(0.05)
        ended = pg.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            [application],
        ).fetchall()
        assert ended == [(True,)]
    finally:
        blocker.rollback()
        blocker.close()
        try:
            stdout, stderr = load.communicate(timeout=120)
        finally:
            if load.poll() is None:
                load.kill()
    result = subprocess.CompletedProcess(load.args, load.returncode, stdout, stderr)
    assert_one_message(
        result,
        "warehouse postgresql://postgres:***@",
        "the connection ended in the middle of a transaction",
        "terminating connection due to administrator command",
        "holds what it held before",
        "run the command again",
        "step load of month 2026-02",
    )
    assert "hunter2" not in result.stderr and "Failed to rollback" not in result.stderr
    after = warehouse_contents(cfg)
    assert {k: v for k, v in after.items() if k != "pipeline_run"} == {
        k: v for k, v in before.items() if k != "pipeline_run"
    }
    failed = runs(cfg)[-1]
    assert failed["status"] == "failed" and "connection ended" in failed["error"]
    assert failed["month"] == FEB
    assert files_of(partition_dir(cfg.lake.root, JAN)) == january


# --- telling a storage fault (the unit under the tests above) ----------------------------


@pytest.mark.parametrize(
    ("make", "cause", "named", "setting"),
    [
        (
            lambda d: OSError(errno.ENOSPC, "No space left on device", str(d / "lake/x.parquet")),
            "no space is left on the device",
            "lake/x.parquet",
            "[lake] root",
        ),
        (  # pyarrow: the errno, not the file
            lambda d: OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28]"),
            "no space is left on the device",
            "lake/payments/month=2026-02",
            "[lake] root",
        ),
        (  # DuckDB: the system's words and the file, no errno
            lambda d: duckdb.IOException(
                f'IO Error: Could not write file "{d}/.warehouse.duckdb.1-2": No space left on '
                "device"
            ),
            "no space is left on the device",
            ".warehouse.duckdb.1-2",
            "[warehouse] url",
        ),
        (
            lambda d: OSError(errno.EROFS, "Read-only file system", str(d / "runs/r1/run.json")),
            "the file system is read-only",
            "runs/r1/run.json",
            "[runs] root",
        ),
        (
            lambda d: PermissionError(errno.EACCES, "Permission denied", str(d / "lake/p")),
            "permission denied",
            "lake/p",
            "[lake] root",
        ),
    ],
    ids=["ENOSPC", "pyarrow ENOSPC", "DuckDB ENOSPC", "EROFS", "EACCES"],
)
def test_a_storage_fault_names_the_file_the_cause_and_the_setting(
    tmp_path, make, cause, named, setting
) -> None:
    from pipeline.faults import StorageError, storage_fault

    cfg = csv_config(tmp_path, tmp_path / "p.csv")
    where = partition_dir(cfg.lake.root, FEB)
    fault = storage_fault(make(tmp_path), cfg, where)
    assert isinstance(fault, StorageError)
    message = str(fault)
    assert cause in message and named in message and f"point {setting} at" in message
    assert "run the command again" in message
    assert storage_fault(fault) is fault


@pytest.mark.parametrize(
    "error",
    [
        ValueError("no space left on device"),  # words in a value, not an I/O error
        duckdb.IOException('Could not set lock on file "/w.duckdb": Conflicting lock'),
        FileNotFoundError(errno.ENOENT, "No such file or directory", "/x"),
    ],
)
def test_other_errors_are_not_storage_faults(error) -> None:
    from pipeline.faults import storage_fault

    assert storage_fault(error) is None


def test_a_month_beyond_the_memory_limit_names_the_setting(tmp_path) -> None:
    """DuckDB cannot spill everything: too small a [lake] memory_limit ends in a message
    that names the setting, not DuckDB's advice to SET memory_limit."""
    rows = [
        (f"p{i:05d}", f"c{i % 900}", f"2026-01-{1 + i % 28:02d} 10:00:00", f"{i % 97}.25", "EUR")
        for i in range(40000)
    ]
    source = write_payments(tmp_path / "payments.csv", rows)
    csv_config(tmp_path, source, lake={"memory_limit": "4MB"})  # writes tmp_path/tiers.toml
    done = tiers("run", "-c", "tiers.toml", "-m", "2026-01", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "[lake] memory_limit (4MB)" in done.stderr
    assert "TIERS__LAKE__MEMORY_LIMIT" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "lake" / "payments" / "month=2026-01").exists()
