"""Running Great Expectations: imported and set up once per process, on first use or
ahead of it (``warm_up`` in a background thread, ``preload_gx`` in the Airflow
scheduler); a suite per subject, validated batch by batch (the deciding rows first), the
outcomes summed per check into the gate's report, written as JSON and HTML."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

import pipeline.gates.data as data
from pipeline.config import Config
from pipeline.gates.report import plain, write
from pipeline.gates.results import EXAMPLES, CheckResult, GateReport
from pipeline.gates.rules import Expect, Subject
from pipeline.months import format_month

_GX: SimpleNamespace | None = None
_GX_LOCK = threading.Lock()


def warm_up() -> threading.Thread:
    """Import Great Expectations in a background thread, so that its seconds of importing
    overlap with the month's extract and computation (DuckDB releases the GIL) instead of
    delaying the first gate. The gates wait for it; a failure shows there. Returns the
    thread, for other imports to wait for: imports hold the GIL, so two at once each take
    twice as long, and the raw gate needs this one first."""

    def load() -> None:
        with contextlib.suppress(Exception):
            _gx()

    thread = threading.Thread(target=load, name="gx-import", daemon=True)
    thread.start()
    return thread


def preload_gx() -> None:
    """Import Great Expectations and set up the gates' context now, in this process (the
    Airflow scheduler, before it forks the processes of the tasks: ``pipeline.run.preload``)."""
    _gx()


def _gx() -> SimpleNamespace:
    """Great Expectations, imported and set up once per process (it takes seconds)."""
    with _GX_LOCK:
        return _load_gx()


def _load_gx() -> SimpleNamespace:
    global _GX
    if _GX is None:
        os.environ["GX_ANALYTICS_ENABLED"] = "false"
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        import great_expectations as gx
        import great_expectations.execution_engine.pandas_execution_engine as pandas_engine
        import great_expectations.expectations as gxe
        from great_expectations.data_context.types.base import ProgressBarsConfig

        # GX fingerprints every batch below this size by hashing all its values: half the
        # raw gate's time on a million payments, for batch metadata that no expectation
        # reads. GX itself skips it for frames of 1 GB and more.
        pandas_engine.HASH_THRESHOLD = 0

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        asset = context.data_sources.add_pandas("pipeline_checks").add_dataframe_asset("frames")
        _GX = SimpleNamespace(
            gx=gx, gxe=gxe, whole_frame=asset.add_batch_definition_whole_dataframe("whole_frame")
        )
    return _GX


def _gx_class(expectation: str) -> type:
    return getattr(_gx().gxe, "".join(part.title() for part in expectation.split("_")))


@dataclass
class _Tally:
    """One check's outcome, summed over the batches of its subject."""

    success: bool = True
    unexpected: int = 0
    examples: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add_examples(self, values: Iterable[Any]) -> None:
        for value in values:
            if len(self.examples) < EXAMPLES:
                self.examples.append(plain(value))


def _validate(subject: Subject, severities: dict[str, str]) -> tuple[dict[str, _Tally], list]:
    """Validate every batch of ``subject`` with one suite; sum the outcomes per check."""
    tallies = {e.check: _Tally() for e in subject.expects}
    if subject.error:
        for tally in tallies.values():
            tally.success = False
            tally.notes.append(f"could not be evaluated: {subject.error}")
        return tallies, []
    gx = _gx()
    suite = gx.gx.ExpectationSuite(name=subject.name)
    for expect in subject.expects:
        severity = "critical" if severities[expect.check] == "error" else "warning"
        suite.add_expectation(
            _gx_class(expect.expectation)(
                **expect.kwargs, meta={"check": expect.check}, severity=severity
            )
        )
    if all(e.expectation in _DECIDED_BY_DECIDING_ROWS for e in subject.expects):
        tallies, validations = _validate_batches(subject, suite, _deciding_rows(subject))
        if all(tally.success for tally in tallies.values()):
            return tallies, validations
        # something broke a rule: validate every row, for exact counts and examples
        tallies = {e.check: _Tally() for e in subject.expects}
    return _validate_batches(subject, suite, subject.batches(), tallies)


# Expectations whose outcome on a table is decided by a few of its rows: the rows holding
# each checked column's minimum, maximum, first NULL and first NaN, and, for a set of k
# values, the first rows of k + 1 of its distinct values. A table passes them exactly when
# those rows do, so GX validates those rows first, and every row only when one fails.
_DECIDED_BY_DECIDING_ROWS = {
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_between",
    "expect_column_values_to_be_in_set",
}


def _deciding_rows(subject: Subject) -> Iterator[tuple[str, pa.Table]]:
    """One batch: the rows of all of ``subject``'s batches that decide its expectations."""
    set_sizes = {
        e.kwargs["column"]: len(e.kwargs["value_set"])
        for e in subject.expects
        if e.expectation == "expect_column_values_to_be_in_set"
    }
    checked = set().union(*(e.columns for e in subject.expects))
    parts, batches, total = [], 0, 0
    for _, rows in subject.batches():
        batches, total = batches + 1, total + rows.num_rows
        picked: set[int] = set()
        for name in checked & set(rows.column_names):
            picked |= _deciding_indices(rows[name], set_sizes.get(name))
        parts.append(rows.take(sorted(picked)) if picked else rows.slice(0, 0))
    label = (
        f"deciding rows of {total} in {batches} batch(es): each checked column's min, max, "
        "first NULL and NaN, and the first row of its first values beyond a checked set's size"
    )
    if not parts:  # nothing to validate, as with every row
        return
    if all(part.schema == parts[0].schema for part in parts):
        yield label, pa.concat_tables(parts)
    else:  # files of one partition with different columns: each validated on its own
        yield from ((f"{label} (part {i})", part) for i, part in enumerate(parts))


def _deciding_indices(values: pa.ChunkedArray, set_size: int | None = None) -> set[int]:
    """Row indices holding the column's min, max, first NULL and first NaN; with the size
    of a value set, also the first row of each of its first ``set_size + 1`` distinct
    values: if there are more distinct values than the set holds, one of those is not in
    it (a set of k values cannot hold k + 1 distinct ones)."""
    if len(values) == 0:
        return set()
    found = set()
    if values.null_count:
        found.add(pc.index(pc.is_null(values), True).as_py())
    if pa.types.is_floating(values.type):
        found.add(pc.index(pc.is_nan(values).fill_null(False), True).as_py())
    wanted = []
    if values.null_count < len(values) and not pa.types.is_null(values.type):
        extremes = pc.min_max(values)
        wanted += [extremes["min"], extremes["max"]]
    if set_size is not None:
        wanted += pc.unique(values.drop_null())[: set_size + 1]
    found |= {pc.index(values, value).as_py() for value in wanted if value.is_valid}
    return {index for index in found if index >= 0}


def _validate_batches(
    subject: Subject,
    suite: Any,
    batches: Iterable[tuple[str, pa.Table]],
    tallies: dict[str, _Tally] | None = None,
) -> tuple[dict[str, _Tally], list]:
    gx = _gx()
    tallies = tallies or {e.check: _Tally() for e in subject.expects}
    validations, row_examples = [], []
    for label, rows in batches:
        frame = data.frame(rows)
        batch = gx.whole_frame.get_batch(batch_parameters={"dataframe": frame})
        # BASIC is the cheaper format; a batch with bad values that still lack examples is
        # validated again with SUMMARY, which names the rows (by id_columns) they were in.
        basic = {"result_format": "BASIC", "partial_unexpected_count": EXAMPLES}
        outcome = batch.validate(suite, result_format=basic)
        ids = [c for c in subject.id_columns if c in frame.columns]
        wants_examples = any(
            not r.success and len(tallies[r.expectation_config.meta["check"]].examples) < EXAMPLES
            for r in outcome.results
        )
        if ids and wants_examples:
            summary = basic | {"result_format": "SUMMARY", "unexpected_index_column_names": ids}
            outcome = batch.validate(suite, result_format=summary)
        validations.append(
            {
                "subject": subject.name,
                "batch": label,
                "rows": len(frame),
                "result": outcome.to_json_dict(),
            }
        )
        if subject.rows_are_examples and len(row_examples) < EXAMPLES:
            row_examples += rows.slice(0, EXAMPLES - len(row_examples)).to_pylist()
        for result in outcome.results:
            _tally(tallies[result.expectation_config.meta["check"]], result, label)
    for tally in tallies.values():
        if subject.rows_are_examples and not tally.success:
            tally.add_examples(row_examples)
    return tallies, validations


def _tally(tally: _Tally, result: Any, label: str) -> None:
    errors = _gx_errors(result.exception_info or {})
    if errors:
        tally.success = False
        tally.notes.append(f"{label}: could not be evaluated: {'; '.join(errors)}")
        return
    tally.success &= bool(result.success)
    details = result.result or {}
    if "unexpected_count" in details:
        tally.unexpected += int(details["unexpected_count"] or 0)
        tally.add_examples(
            details.get("partial_unexpected_index_list")
            or details.get("partial_unexpected_list")
            or []
        )
    elif result.expectation_config.type == "expect_table_row_count_to_equal":
        tally.unexpected += int(details.get("observed_value") or 0)
    elif not result.success:
        mismatched = (details.get("details") or {}).get("mismatched")
        tally.unexpected += 1
        tally.add_examples(
            [{"batch": label, **(mismatched or {"observed": details.get("observed_value")})}]
        )


def _gx_errors(info: dict[str, Any]) -> list[str]:
    """GX's exception messages: one exception_info, or one per metric it could not compute."""
    infos = [info] if "raised_exception" in info else list(info.values())
    messages = {i.get("exception_message") or "error" for i in infos if i.get("raised_exception")}
    return sorted(messages)


def run_gate(
    gate: str,
    cfg: Config,
    month: date,
    subjects: list[Subject],
    out_dir: Path,
    inputs: Iterable[str],
    started: float,
) -> GateReport:
    severities = {
        e.check: cfg.checks.severity.get(e.check, "error") for s in subjects for e in s.expects
    }
    results, validations = [], []
    for subject in subjects:
        tallies, subject_validations = _validate(subject, severities)
        validations += subject_validations
        for expect in subject.expects:
            tally = tallies[expect.check]
            results.append(
                CheckResult(
                    check=expect.check,
                    expectation=expect.expectation,
                    severity=severities[expect.check],
                    success=tally.success,
                    unexpected_count=tally.unexpected,
                    examples=tally.examples,
                    detail=_detail(expect, subject, tally),
                )
            )
    report = GateReport(gate, format_month(month), results, [], [str(i) for i in inputs])
    report.seconds = time.perf_counter() - started
    report.files = write(report, validations, out_dir)
    return report


def _detail(expect: Expect, subject: Subject, tally: _Tally) -> str:
    if tally.success:
        return expect.description
    if tally.notes:
        return f"{expect.description}: " + "; ".join(tally.notes)
    if subject.rows_are_examples:
        broken = f"{tally.unexpected} row(s) of the check table ({subject.name}) break it"
    elif expect.expectation.startswith("expect_table_"):
        broken = f"{tally.unexpected} mismatch(es) in {subject.name}"
    else:
        broken = f"{tally.unexpected} value(s) in {subject.name} break it"
    return f"{expect.description}: {broken}"


def disabled(gate: str, month: date, out_dir: Path) -> GateReport:
    report = GateReport(gate, format_month(month), [], [], enabled=False)
    report.files = write(report, [], out_dir)
    return report
