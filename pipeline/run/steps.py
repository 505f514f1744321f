"""The month's pipeline: extract -> raw gate -> compute -> output gates -> load -> publish.

Each step is a function of (configuration, month, run id) that the CLI calls in one
process and Airflow calls as one task each. Steps hand their results over through
the run's folder (``<runs.root>/<run_id>/month=YYYY-MM/``): the extract summary, the
computed tables as Parquet, the gate reports (JSON and HTML) and ``run.json``, the
record that becomes the month's ``pipeline_run`` row.

A step that fails records the month as failed in ``pipeline_run`` and raises; nothing
of the month is loaded unless every gate passed.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import call_score, checks, faults, lake, storage
from pipeline.config import Config, load_config
from pipeline.customers import customer_rows, read_customers
from pipeline.errors import BackfillInterrupted, Kind, MonthSupersededError, classify
from pipeline.files import atomic_write
from pipeline.months import format_month, months_between, parse_month
from pipeline.schema import LOADED, TABLES
from pipeline.transform import write_month
from pipeline.warehouse import open_warehouse

ConfigLike = Config | str | Path


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def _config(cfg: ConfigLike) -> Config:
    return cfg if isinstance(cfg, Config) else load_config(cfg)


def run_dir(cfg: Config, month: date, run_id: str) -> Path:
    return storage.location(cfg.runs.root) / run_id / f"month={format_month(month)}"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def read_run_state(folder: Path) -> dict[str, Any]:
    try:  # one read, no look first: on an object store each is a request
        return json.loads((folder / "run.json").read_text())
    except FileNotFoundError:
        return {}


def update_run_state(folder: Path, **changes: Any) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    state = read_run_state(folder) | changes
    atomic_write(folder / "run.json", json.dumps(state, indent=2, default=str) + "\n")
    return state


def _add_gate(folder: Path, report: checks.GateReport) -> None:
    state = read_run_state(folder)
    gates = state.get("gates", {}) | {report.gate: report.to_dict()}
    update_run_state(folder, gates=gates)


def run_record(state: dict[str, Any], *, status: str, error: str | None = None) -> dict[str, Any]:
    """The ``pipeline_run`` row of a month from its run state."""
    gates = state.get("gates", {})
    extract = state.get("extract", {})
    if status == "loaded" and extract.get("provisional"):
        status = "provisional"  # loaded from a month that had not ended: partial figures
    return {
        "run_id": state["run_id"],
        "month": parse_month(state["month"]),
        "status": status,
        "rows_read": extract.get("rows_read"),
        "rows_duplicate": extract.get("rows_duplicate"),
        "rows_rounded": extract.get("rows_rounded"),
        "rows_quarantined": extract.get("rows_quarantined"),
        "rows_loaded": sum(state.get("counts", {}).values()) if status in LOADED else 0,
        "checks_passed": sum(g["n_passed"] for g in gates.values()),
        "checks_failed": sum(g["n_failed"] for g in gates.values()),
        "checks_warned": sum(g["n_warned"] for g in gates.values()),
        "check_results": gates,
        "error": error,
        "source_fingerprint": extract.get("fingerprint"),
        "started_at": datetime.fromisoformat(state.get("started_at") or _now()),
        "finished_at": datetime.now(UTC),
    }


# Backfill workers leave failure records to the process that owns the warehouse.
_record_failures = True


def _leave_failures_to_parent() -> None:
    global _record_failures
    _record_failures = False


def record_failure(cfg: Config, month: date, run_id: str, error: str | None = None) -> None:
    """Record the month's run as failed, with ``error`` (default: what run.json says)."""
    try:
        state = read_run_state(run_dir(cfg, month, run_id))
    except OSError:  # the run's folder cannot be read: record what is known
        state = {}
    state = {"run_id": run_id, "month": format_month(month)} | state
    error = error or f"{state.get('failed_step')}: {state.get('error')}"
    warehouse = open_warehouse(cfg)
    try:
        warehouse.ensure_schema()
        warehouse.record_run(run_record(state, status="failed", error=error))
    finally:
        warehouse.close()


@contextmanager
def _step(cfg: Config, month: date, run_id: str, name: str) -> Iterator[Path]:
    """Run one step; on failure record the month as failed, then re-raise (a full or
    read-only disk as a StorageError that names the file and what to do)."""
    folder = run_dir(cfg, month, run_id)
    try:
        if "started_at" not in read_run_state(folder):
            update_run_state(folder, run_id=run_id, month=format_month(month), started_at=_now())
        yield folder
    except Exception as exc:
        fault = faults.storage_fault(
            exc, cfg, _writes_to(cfg, month, name, folder)
        ) or faults.memory_fault(exc, cfg)
        error = fault or exc
        error.add_note(f"(step {name} of month {format_month(month)}, run {run_id})")
        recorded_in = folder / "run.json"
        try:
            update_run_state(folder, failed_step=name, error=str(error))
        except OSError as state_error:
            told = faults.storage_fault(state_error, cfg, folder) or state_error
            error.add_note(
                f"(the run's folder cannot be written either: {_unless_same(told, error)})"
            )
            recorded_in = None
        if _record_failures:
            try:
                record_failure(cfg, month, run_id, f"{name}: {error}")
            except Exception as record_error:  # e.g. the warehouse cannot be reached
                told = faults.storage_fault(record_error, cfg) or record_error
                where = f"; it is in {recorded_in}" if recorded_in else ""
                error.add_note(
                    "(the failure could not be recorded in pipeline_run: "
                    f"{_unless_same(told, error)}{where})"
                )
        if fault is None:
            raise
        raise fault from exc


def _unless_same(told: BaseException, error: BaseException) -> str:
    """``told``'s message, or "the same cause" when it repeats the step's error."""
    return "the same cause" if str(told) == str(error) else str(told)


def _writes_to(cfg: Config, month: date, step: str, folder: Path) -> Path:
    """Where a step writes, for an error that does not say which file it was writing."""
    if step == "extract":
        return lake.partition_dir(cfg.lake.root, month)
    if step == "load" and cfg.warehouse.url.startswith("duckdb:///"):
        return Path(cfg.warehouse.url.removeprefix("duckdb:///"))
    return folder


def extract_step(
    cfg: ConfigLike, month: str | date, run_id: str, *, provisional: bool = False
) -> dict[str, Any]:
    cfg, month = _config(cfg), parse_month(month)
    with _step(cfg, month, run_id, "extract") as folder:
        summary = _record_extract(folder, lake.extract(cfg, month, provisional=provisional))
        if cfg.service is not None:  # the month's service activities, read like payments
            activities = lake.extract(cfg, month, provisional=provisional, dataset=lake.ACTIVITIES)
            _record_extract(folder, activities, key="extract_activities")
        return summary


_EXTRACT_SUMMARY = (
    "month",
    "rows_read",
    "rows_duplicate",
    "rows_rounded",
    "rows_quarantined",
    "rows_undated",
    "rows_written",
    "amount_sum",
    "fingerprint",
    "problems",
    "provisional",
)


def _record_extract(folder: Path, manifest: lake.Manifest, key: str = "extract") -> dict[str, Any]:
    """Record an extract's summary in run.json: ``extract`` for the payments (the month's
    pipeline_run row), ``extract_activities`` for the service activities."""
    summary = {name: getattr(manifest, name) for name in _EXTRACT_SUMMARY}
    update_run_state(folder, **{key: summary})
    return summary


def raw_gate_step(cfg: ConfigLike, month: str | date, run_id: str) -> dict[str, Any]:
    cfg, month = _config(cfg), parse_month(month)
    with _step(cfg, month, run_id, "raw_gate") as folder:
        if "extract" not in read_run_state(folder):  # a run that reuses the lake as it is
            _record_extract(folder, lake.read_manifest(cfg.lake.root, month))
        report = checks.gate_raw(cfg, month, folder)
        _add_gate(folder, report)
        checks.raise_if_failed(report)
        if cfg.service is not None:  # the month's activity partition, likewise
            if "extract_activities" not in read_run_state(folder):
                activities = lake.read_manifest(cfg.lake.root, month, lake.ACTIVITIES)
                _record_extract(folder, activities, key="extract_activities")
            service = checks.gate_raw_activities(cfg, month, folder)
            _add_gate(folder, service)
            checks.raise_if_failed(service)
        return report.to_dict()


def compute_step(cfg: ConfigLike, month: str | date, run_id: str) -> dict[str, Any]:
    cfg, month = _config(cfg), parse_month(month)
    with _step(cfg, month, run_id, "compute") as folder:
        with _written_tables(folder) as local:
            files = write_month(cfg, month, local)
            counts = {name: pq.ParquetFile(path).metadata.num_rows for name, path in files.items()}
            summary = {
                name: pq.read_table(files[name], columns=columns)
                for name, columns in HEADLINE_COLUMNS.items()
            }
        update_run_state(folder, counts=counts, headline=headline(summary))
        return counts


# the columns of the month's tables that its headline reads
HEADLINE_COLUMNS = {
    "pareto_summary": [
        "metric",
        "window_months",
        "n_customers",
        "n_class_a",
        "n_class_b",
        "n_class_c",
        "total_value",
    ],
    "customer_segment": ["metric", "segment"],
    "customer_alert": ["metric"],
}


def headline(tables: dict[str, pa.Table]) -> dict[str, Any]:
    """The month at a glance, for the CLI's summary: counts of the first metric (revenue
    when computed), window 1. Read from the month's own tables, never the warehouse."""
    summary = tables["pareto_summary"]
    metrics = summary.column("metric").to_pylist()
    metric = "revenue" if "revenue" in metrics else (metrics[0] if metrics else None)
    row = next(
        (r for r in summary.to_pylist() if r["metric"] == metric and r["window_months"] == 1),
        None,
    )

    def count(name: str, **equal: str | None) -> int:
        table = tables[name]
        mask = pc.equal(table["metric"], metric)
        for column, value in equal.items():
            mask = pc.and_(mask, pc.equal(table[column], value))
        return int(pc.sum(pc.cast(mask, pa.int64())).as_py() or 0)

    return {
        "metric": metric,
        "customers": row["n_customers"] if row else 0,
        "vips": count("customer_segment", segment="vip"),
        "class_a": row["n_class_a"] if row else 0,
        "class_b": row["n_class_b"] if row else 0,
        "class_c": row["n_class_c"] if row else 0,
        "alerts": count("customer_alert"),
        "value": str(row["total_value"]) if row else "0",
    }


def month_headline(cfg: Config, month: date, run_id: str) -> dict[str, Any] | None:
    return read_run_state(run_dir(cfg, month, run_id)).get("headline")


def output_gates_step(cfg: ConfigLike, month: str | date, run_id: str) -> dict[str, Any]:
    cfg, month = _config(cfg), parse_month(month)
    with _step(cfg, month, run_id, "output_gates") as folder, _computed_tables(folder) as tables:
        reports = [
            checks.gate_customer_month(cfg, month, tables, folder),
            checks.gate_outputs(cfg, month, tables, folder),
        ]
        for report in reports:
            _add_gate(folder, report)
        for report in reports:
            checks.raise_if_failed(report)
        return {report.gate: report.to_dict() for report in reports}


def load_step(cfg: ConfigLike, month: str | date, run_id: str) -> dict[str, Any]:
    cfg, month = _config(cfg), parse_month(month)
    with _step(cfg, month, run_id, "load") as folder, _computed_tables(folder) as files:
        state = read_run_state(folder)
        report = checks.gate_before_load(cfg, month, files, state["counts"], folder)
        _add_gate(folder, report)
        checks.raise_if_failed(report)
        _refuse_if_extracted_again(cfg, month, state)
        state = update_run_state(folder, loaded_at=_now())
        customers = read_customers(cfg)  # before the load: a bad source loads nothing
        warehouse = open_warehouse(cfg)
        try:
            warehouse.ensure_schema()
            warehouse.load_month(month, files, run_record(state, status="loaded"))
            if customers is not None:
                warehouse.replace_customers(customer_rows(customers))
        finally:
            warehouse.close()
        return state["counts"]


def _refuse_if_extracted_again(cfg: Config, month: date, state: dict[str, Any]) -> None:
    """Load nothing if another run extracted the month from other source rows after this
    run read it (Airflow's runs, or runs on two machines): its results are of the earlier
    delivery, and loading them could replace a newer month in the warehouse."""
    read = state.get("extract", {}).get("fingerprint")
    now = lake.read_manifest(cfg.lake.root, month)
    if read is not None and now.fingerprint != read:
        raise MonthSupersededError(
            f"month {format_month(month)} was extracted again at {now.extracted_at}, from "
            f"other source rows (fingerprint {now.fingerprint}, this run read {read}), while "
            "this run computed it: its results are of the earlier delivery, so it loads "
            "nothing. The run that extracted it loads the month; to load it from this run, "
            f"run the month again (tiers run --month {format_month(month)})."
        )


def publish_step(cfg: ConfigLike, month: str | date, run_id: str) -> dict[str, Any]:
    """The loaded month's summary, for logs and the Airflow Asset event."""
    cfg, month = _config(cfg), parse_month(month)
    state = read_run_state(run_dir(cfg, month, run_id))
    return {
        "month": format_month(month),
        "run_id": run_id,
        "rows": state.get("counts", {}),
        "warehouse": _redacted(cfg.warehouse.url),
        "report": state.get("report"),  # written by pipeline.report.report_step
    }


def _redacted(url: str) -> str:
    if url.startswith("duckdb://"):
        return url
    from pipeline.postgres import redact_dsn

    return redact_dsn(url)


MONTH_STEPS: tuple[Callable[[ConfigLike, date, str], dict], ...] = (
    raw_gate_step,
    compute_step,
    output_gates_step,
    load_step,
)


@contextmanager
def _written_tables(folder: Path | storage.RemotePath) -> Iterator[Path]:
    """A local folder for the computed tables' files; on an object store they are written
    in a temporary folder and uploaded to the run's folder when the block ends."""
    target = folder / "tables"
    if not storage.is_remote(target):
        yield target
        return
    with tempfile.TemporaryDirectory(dir=_scratch_dir(folder)) as local:
        yield Path(local)
        for file in sorted(Path(local).iterdir()):
            storage.upload(file, target / file.name)


@contextmanager
def _computed_tables(folder: Path | storage.RemotePath) -> Iterator[dict[str, Path]]:
    """The computed tables' Parquet files (as ``transform.write_month`` wrote them) as local
    files, downloaded afresh when the run's folder is on an object store; a missing table
    is left out (the gates name it)."""
    source = folder / "tables"
    remote = storage.is_remote(source)
    with contextlib.ExitStack() as stack:
        local = Path(stack.enter_context(tempfile.TemporaryDirectory())) if remote else source
        files = {}
        for name in TABLES:
            path = source / f"{name}.parquet"
            if not path.exists():
                continue
            if remote:
                storage.download(path, local / path.name)
            files[name] = local / path.name
        yield files


def _scratch_dir(folder: storage.RemotePath) -> Path:
    scratch = storage.scratch(folder.store)
    scratch.mkdir(parents=True, exist_ok=True)
    return scratch


@dataclass
class MonthResult:
    month: date
    run_id: str
    status: str  # loaded | failed
    counts: dict[str, int]
    error: str | None = None
    kind: Kind | None = None  # a failure's pipeline.errors.classify: can a retry help?


def run_month(
    cfg: ConfigLike,
    month: str | date,
    *,
    run_id: str | None = None,
    extract: bool = True,
    provisional: bool = False,
) -> MonthResult:
    """Extract (optionally), check, compute, check and load one month; ``provisional``
    allows a month that has not ended (recorded as such in pipeline_run)."""
    cfg, month = _config(cfg), parse_month(month)
    run_id = run_id or new_run_id()
    if cfg.checks.enabled:
        checks.warm_up()
    call_score.warm_up()  # the call list's model, imported while the month extracts
    with lake.hold_months(cfg, [month], run_id):  # a second run of the month waits
        if extract:
            extract_step(cfg, month, run_id, provisional=provisional)
        for step in MONTH_STEPS:
            step(cfg, month, run_id)
    counts = read_run_state(run_dir(cfg, month, run_id))["counts"]
    return MonthResult(month, run_id, "loaded", counts)


def months_reading(cfg: Config, month: date) -> list[date]:
    """The extracted months whose computation reads ``month`` (itself included)."""
    extracted = set(lake.extracted_months(cfg.lake.root))
    return [m for m in cfg.months_reading(month) if m in extracted]


def _compute_and_check(cfg: Config, month: date, run_id: str) -> None:
    for step in MONTH_STEPS[:-1]:
        step(cfg, month, run_id)


def backfill(
    cfg: ConfigLike,
    first: str | date,
    last: str | date,
    *,
    jobs: int = 1,
    extract: bool = True,
    run_id: str | None = None,
    on_month: Callable[[MonthResult], None] | None = None,
) -> list[MonthResult]:
    """Run every month from ``first`` to ``last``.

    Extracts come first (month M reads M-11 .. M). Checks and computations of
    different months run in ``jobs`` processes; loads are serialized in this process,
    since the warehouse has one writer. A failed month is recorded and reported; the
    other months go on.
    """
    cfg = _config(cfg)
    months = months_between(parse_month(first), parse_month(last))
    run_id = run_id or new_run_id()
    with lake.hold_months(cfg, months, run_id):  # another run of these months waits
        return _backfill(cfg, months, run_id, jobs, extract, on_month)


def _backfill(
    cfg: Config,
    months: list[date],
    run_id: str,
    jobs: int,
    extract: bool,
    on_month: Callable[[MonthResult], None] | None,
) -> list[MonthResult]:
    results: list[MonthResult] = []
    if cfg.checks.enabled:
        checks.warm_up()
    call_score.warm_up()

    def finish(month: date, error: BaseException | None) -> None:
        if error is None:
            try:
                counts = load_step(cfg, month, run_id)
                result = MonthResult(month, run_id, "loaded", counts)
            except Exception as exc:
                result = MonthResult(month, run_id, "failed", {}, f"load: {exc}", classify(exc))
        else:
            if jobs > 1:
                record_failure(cfg, month, run_id)
            result = MonthResult(month, run_id, "failed", {}, str(error), classify(error))
        results.append(result)
        if on_month:
            on_month(result)

    ready = []
    outcomes = lake.extract_months(cfg, months) if extract else ((m, None) for m in months)
    for month, outcome in outcomes:  # the source is read and parsed once for all months
        try:
            with _step(cfg, month, run_id, "extract") as folder:
                if isinstance(outcome, Exception):
                    raise outcome
                if outcome is not None:
                    _record_extract(folder, outcome)
            ready.append(month)
        except Exception as exc:
            finish(month, exc)
    if extract and cfg.service is not None and ready:  # then the service activities, likewise
        extracted = lake.extract_months(cfg, ready, dataset=lake.ACTIVITIES)
        for month, outcome in list(extracted):
            try:
                with _step(cfg, month, run_id, "extract") as folder:
                    if isinstance(outcome, Exception):
                        raise outcome
                    _record_extract(folder, outcome, key="extract_activities")
            except Exception as exc:
                ready.remove(month)
                finish(month, exc)

    if jobs <= 1:
        for month in ready:
            try:
                _compute_and_check(cfg, month, run_id)
                finish(month, None)
            except Exception as exc:
                finish(month, exc)
    else:
        pool = ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(os.getpid(),),
        )
        try:
            with _terminated_on_sigterm():
                futures = {pool.submit(_compute_and_check, cfg, m, run_id): m for m in ready}
                for future in as_completed(futures):
                    finish(futures[future], future.exception())
        except BaseException:  # SIGTERM, Ctrl-C: stop the workers now, not after their month
            _stop_workers(pool)
            raise
        pool.shutdown()
    return sorted(results, key=lambda r: r.month)


@contextmanager
def _terminated_on_sigterm() -> Iterator[None]:
    """SIGTERM raises BackfillInterrupted in this process while the pool runs (only the main
    thread can handle signals; elsewhere the workers' parent-death signal is the guard)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise BackfillInterrupted(
            "backfill stopped by SIGTERM: the months loaded before it stay loaded, the others "
            "were not loaded (the warehouse holds their previous load); run the backfill again "
            "to finish"
        )

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _start_worker(parent: int) -> None:
    """A backfill worker dies with the process that started it: the kernel sends it SIGKILL
    when its parent ends (Linux), and a watchdog thread exits when its parent changes (every
    platform; an orphan is adopted by another process)."""
    _leave_failures_to_parent()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    # no public API before Python 3.14 (terminate_workers); the processes are the pool's own
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=10)
