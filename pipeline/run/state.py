"""A month's run state: the run's folder, its ``run.json`` and its ``pipeline_run`` row.

Steps hand their results over through the run's folder
(``<runs.root>/<run_id>/month=YYYY-MM/``): the extract summary, the computed tables as
Parquet, the gate reports (JSON and HTML) and ``run.json``, the record that becomes the
month's ``pipeline_run`` row.

A step that fails records the month as failed in ``pipeline_run`` and raises (``step``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pipeline import faults, storage
from pipeline.config import Config
from pipeline.files import atomic_write
from pipeline.gates.results import GateReport
from pipeline.lake.partition import Manifest, partition_dir
from pipeline.months import format_month
from pipeline.schema.tables import LOADED
from pipeline.warehouse import open_warehouse


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def run_dir(cfg: Config, month: date, run_id: str) -> Path:
    return storage.location(cfg.runs.root) / run_id / f"month={format_month(month)}"


def now() -> str:
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


def add_gate(folder: Path, report: GateReport) -> None:
    state = read_run_state(folder)
    gates = state.get("gates", {}) | {report.gate: report.to_dict()}
    update_run_state(folder, gates=gates)


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


def record_extract(folder: Path, manifest: Manifest, key: str = "extract") -> dict[str, Any]:
    """Record an extract's summary in run.json: ``extract`` for the payments (the month's
    pipeline_run row), ``extract_activities`` for the service activities."""
    summary = {name: getattr(manifest, name) for name in _EXTRACT_SUMMARY}
    update_run_state(folder, **{key: summary})
    return summary


def month_headline(cfg: Config, month: date, run_id: str) -> dict[str, Any] | None:
    return read_run_state(run_dir(cfg, month, run_id)).get("headline")


def record_report(cfg: Config, month: date, metric: str, path: Path, run_id: str | None) -> None:
    """Note a page drawn again in the run folder of the run it shows, when that folder is on
    this machine (``run.json``: ``reports`` = {metric: path})."""
    if run_id is None:
        return
    folder = run_dir(cfg, month, run_id)
    if not (folder / "run.json").exists():
        return
    reports = read_run_state(folder).get("reports", {}) | {metric: str(path)}
    update_run_state(folder, reports=reports)


def run_record(
    state: dict[str, Any], month: date, *, status: str, error: str | None = None
) -> dict[str, Any]:
    """The ``pipeline_run`` row of ``month`` from its run state."""
    gates = state.get("gates", {})
    extract = state.get("extract", {})
    if status == "loaded" and extract.get("provisional"):
        status = "provisional"  # loaded from a month that had not ended: partial figures
    return {
        "run_id": state["run_id"],
        "month": month,
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
        "started_at": datetime.fromisoformat(state.get("started_at") or now()),
        "finished_at": datetime.now(UTC),
    }


# Backfill workers leave failure records to the process that owns the warehouse.
_record_failures = True


def leave_failures_to_parent() -> None:
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
        warehouse.record_run(run_record(state, month, status="failed", error=error))
    finally:
        warehouse.close()


@contextmanager
def step(cfg: Config, month: date, run_id: str, name: str) -> Iterator[Path]:
    """Run one step; on failure record the month as failed, then re-raise (a full or
    read-only disk as a StorageError that names the file and what to do)."""
    folder = run_dir(cfg, month, run_id)
    try:
        if "started_at" not in read_run_state(folder):
            update_run_state(folder, run_id=run_id, month=format_month(month), started_at=now())
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
        return partition_dir(cfg.lake.root, month)
    if step == "load" and cfg.warehouse.url.startswith("duckdb:///"):
        return Path(cfg.warehouse.url.removeprefix("duckdb:///"))
    return folder
