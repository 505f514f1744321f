"""The month's pipeline: extract -> raw gate -> compute -> output gates -> load -> publish,
then the report and the call list's mail.

Each step is a function of (configuration, month, run id) that the CLI calls in one
process and Airflow calls as one task each; the configuration is loaded and the month
parsed once, by the caller. Steps hand their results over through the run's folder
(``pipeline.run.state``).

A step that fails records the month as failed in ``pipeline_run`` and raises; nothing
of the month is loaded unless every gate passed.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import gates, storage
from pipeline.compute.month import write_month
from pipeline.config import Config
from pipeline.deliver.notify import send_month
from pipeline.deliver.report import write_report
from pipeline.errors import MonthSupersededError, NotifyError
from pipeline.lake.extract import extract
from pipeline.lake.partition import ACTIVITIES, read_manifest
from pipeline.months import format_month
from pipeline.run.state import (
    add_gate,
    now,
    read_run_state,
    record_extract,
    run_dir,
    run_record,
    step,
    update_run_state,
)
from pipeline.schema.tables import TABLES
from pipeline.sources.customers import customer_rows, read_customers
from pipeline.warehouse import open_warehouse


def extract_step(
    cfg: Config, month: date, run_id: str, *, provisional: bool = False
) -> dict[str, Any]:
    with step(cfg, month, run_id, "extract") as folder:
        summary = record_extract(folder, extract(cfg, month, provisional=provisional))
        if cfg.service is not None:  # the month's service activities, read like payments
            activities = extract(cfg, month, provisional=provisional, dataset=ACTIVITIES)
            record_extract(folder, activities, key="extract_activities")
        return summary


def raw_gate_step(cfg: Config, month: date, run_id: str) -> dict[str, Any]:
    with step(cfg, month, run_id, "raw_gate") as folder:
        if "extract" not in read_run_state(folder):  # a run that reuses the lake as it is
            record_extract(folder, read_manifest(cfg.lake.root, month))
        report = gates.gate_raw(cfg, month, folder)
        add_gate(folder, report)
        gates.raise_if_failed(report)
        if cfg.service is not None:  # the month's activity partition, likewise
            if "extract_activities" not in read_run_state(folder):
                activities = read_manifest(cfg.lake.root, month, ACTIVITIES)
                record_extract(folder, activities, key="extract_activities")
            service = gates.gate_raw_activities(cfg, month, folder)
            add_gate(folder, service)
            gates.raise_if_failed(service)
        return report.to_dict()


def compute_step(cfg: Config, month: date, run_id: str) -> dict[str, Any]:
    with step(cfg, month, run_id, "compute") as folder:
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


def output_gates_step(cfg: Config, month: date, run_id: str) -> dict[str, Any]:
    with step(cfg, month, run_id, "output_gates") as folder, _computed_tables(folder) as tables:
        reports = [
            gates.gate_customer_month(cfg, month, tables, folder),
            gates.gate_outputs(cfg, month, tables, folder),
        ]
        for report in reports:
            add_gate(folder, report)
        for report in reports:
            gates.raise_if_failed(report)
        return {report.gate: report.to_dict() for report in reports}


def load_step(cfg: Config, month: date, run_id: str) -> dict[str, Any]:
    with step(cfg, month, run_id, "load") as folder, _computed_tables(folder) as files:
        state = read_run_state(folder)
        report = gates.gate_before_load(cfg, month, files, state["counts"], folder)
        add_gate(folder, report)
        gates.raise_if_failed(report)
        _refuse_if_extracted_again(cfg, month, state)
        state = update_run_state(folder, loaded_at=now())
        customers = read_customers(cfg)  # before the load: a bad source loads nothing
        warehouse = open_warehouse(cfg)
        try:
            warehouse.ensure_schema()
            warehouse.load_month(month, files, run_record(state, month, status="loaded"))
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
    now = read_manifest(cfg.lake.root, month)
    if read is not None and now.fingerprint != read:
        raise MonthSupersededError(
            f"month {format_month(month)} was extracted again at {now.extracted_at}, from "
            f"other source rows (fingerprint {now.fingerprint}, this run read {read}), while "
            "this run computed it: its results are of the earlier delivery, so it loads "
            "nothing. The run that extracted it loads the month; to load it from this run, "
            f"run the month again (tiers run --month {format_month(month)})."
        )


def publish_step(cfg: Config, month: date, run_id: str) -> dict[str, Any]:
    """The loaded month's summary, for logs and the Airflow Asset event."""
    state = read_run_state(run_dir(cfg, month, run_id))
    return {
        "month": format_month(month),
        "run_id": run_id,
        "rows": state.get("counts", {}),
        "warehouse": _redacted(cfg.warehouse.url),
        "report": state.get("report"),  # written by report_step
    }


def _redacted(url: str) -> str:
    if url.startswith("duckdb://"):
        return url
    from pipeline.pg import redact_dsn

    return redact_dsn(url)


MONTH_STEPS: tuple[Callable[[Config, date, str], dict], ...] = (
    raw_gate_step,
    compute_step,
    output_gates_step,
    load_step,
)


def report_step(cfg: Config, month: date, run_id: str) -> dict[str, Any]:
    """The step after ``load``: the month's report next to the run's files.

    A failed report does not touch the loaded month or its ``pipeline_run`` row."""
    folder = run_dir(cfg, month, run_id)
    path, metric, _ = write_report(cfg, month, folder / "report.html", run_id=run_id)
    update_run_state(folder, report=str(path), report_metric=metric, report_not_drawn=None)
    return {"report": str(path), "month": format_month(month), "metric": metric, "drawn": True}


def report_not_drawn(cfg: Config, month: date, run_id: str, why: str) -> dict[str, Any]:
    """The report step of a run that does not draw the page (a backfill's earlier months):
    ``run.json`` names no report, not even one an earlier try of this run drew, whose
    figures would be from before this load."""
    update_run_state(run_dir(cfg, month, run_id), report=None, report_not_drawn=why)
    return {"report": None, "month": format_month(month), "drawn": False, "why": why}


def notify_step(cfg: Config, month: date, run_id: str) -> dict[str, Any]:
    """The step after ``load`` (and ``report``): deliver the month's call list.

    Does nothing when ``[notify]`` is not configured. A failure is recorded in the run's
    ``run.json`` and raised; the month's load and its ``pipeline_run`` row are untouched."""
    folder = run_dir(cfg, month, run_id)
    if cfg.notify is None:
        return {"month": format_month(month), "notify": "not configured"}
    try:
        outcome = send_month(cfg, month)
    except NotifyError as exc:
        update_run_state(folder, notify_error=str(exc))
        raise
    update_run_state(folder, notify=outcome.to_dict(), notify_error=None)
    return outcome.to_dict()


def describe(name: str, summary: dict[str, Any]) -> str:
    """One log line with the counts and check results of a step's summary (the DAG's
    task logs)."""
    if name == "extract":
        return (
            f"{summary.get('rows_read')} row(s) read, {summary.get('rows_duplicate')} duplicate(s) "
            f"dropped, {summary.get('rows_rounded')} float(s) rounded to the cent, "
            f"{summary.get('rows_quarantined')} quarantined, "
            f"{summary.get('rows_written')} written, amount {summary.get('amount_sum')}"
        )
    gates = _gate_reports(summary)
    if gates:
        return "; ".join(
            f"gate {name}: {g.get('n_passed')} passed, {g.get('n_failed')} failed, "
            f"{g.get('n_warned')} warned"
            for name, g in gates.items()
        )
    rows = summary.get("rows", summary)
    if isinstance(rows, dict) and rows and all(isinstance(v, int) for v in rows.values()):
        return f"{sum(rows.values())} row(s): " + ", ".join(
            f"{k}={v}" for k, v in sorted(rows.items())
        )
    return json.dumps(summary, sort_keys=True, default=str)


def _gate_reports(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    if "n_passed" in summary:
        return {str(summary.get("gate", "gate")): summary}
    return {k: v for k, v in summary.items() if isinstance(v, dict) and "n_passed" in v}


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
    """The computed tables' Parquet files (as ``compute.month.write_month`` wrote them) as local
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
