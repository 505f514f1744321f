"""Months in a row: ``run_month``, ``backfill`` (its worker processes), the cascade of a
restated month and the wait of a month for its missing history.

A backfill extracts first (month M reads M-11 .. M), then checks and computes months in
``jobs`` processes and loads them one at a time in this process (the warehouse has one
writer). The cascade recomputes the later months that read a restated one; the CLI's
``tiers run --cascade`` and the DAG's ``cascade`` task both call it.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any

from pipeline import gates
from pipeline.compute import call_score
from pipeline.config import Config
from pipeline.errors import PERMANENT, TRANSIENT, BackfillInterrupted, Kind, classify
from pipeline.lake.extract import extract_months
from pipeline.lake.partition import ACTIVITIES, extracted_months, hold_months
from pipeline.months import format_month, months_between
from pipeline.run import steps
from pipeline.run.schedule import DAG_ID, missing_history_command
from pipeline.run.state import (
    leave_failures_to_parent,
    new_run_id,
    read_run_state,
    record_extract,
    record_failure,
    run_dir,
    step,
)


@dataclass
class MonthResult:
    month: date
    run_id: str
    status: str  # loaded | failed
    counts: dict[str, int]
    error: str | None = None
    kind: Kind | None = None  # a failure's pipeline.errors.classify: can a retry help?


def run_month(
    cfg: Config,
    month: date,
    *,
    run_id: str | None = None,
    extract: bool = True,
    provisional: bool = False,
) -> MonthResult:
    """Extract (optionally), check, compute, check and load one month; ``provisional``
    allows a month that has not ended (recorded as such in pipeline_run)."""
    run_id = run_id or new_run_id()
    _warm_up(cfg)
    with hold_months(cfg, [month], run_id):  # a second run of the month waits
        if extract:
            steps.extract_step(cfg, month, run_id, provisional=provisional)
        for month_step in steps.MONTH_STEPS:
            month_step(cfg, month, run_id)
    counts = read_run_state(run_dir(cfg, month, run_id))["counts"]
    return MonthResult(month, run_id, "loaded", counts)


def _warm_up(cfg: Config) -> None:
    """Import in the background what the month's steps need later, in the order they need
    it: Great Expectations for the raw gate, then the call list's model for the end of the
    computation (one after the other: measured in README "Performance")."""
    gx = gates.warm_up() if cfg.checks.enabled else None
    call_score.warm_up(after=gx)


def months_reading(cfg: Config, month: date) -> list[date]:
    """The extracted months whose computation reads ``month`` (itself included)."""
    extracted = set(extracted_months(cfg.lake.root))
    return [m for m in cfg.months_reading(month) if m in extracted]


def _compute_and_check(cfg: Config, month: date, run_id: str) -> None:
    for month_step in steps.MONTH_STEPS[:-1]:
        month_step(cfg, month, run_id)


def cascade_months(cfg: Config, month: date) -> list[date]:
    """The later months in the lake that read ``month``: what its cascade recomputes."""
    return months_reading(cfg, month)[1:]


def cascade(
    cfg: Config,
    months: list[date],
    *,
    run_id: str | None = None,
    on_month: Callable[[MonthResult], None] | None = None,
) -> list[MonthResult]:
    """Recompute and load ``months`` (``cascade_months`` of a restated month) in order, from
    the lake as it is (a restatement: nothing is extracted again)."""
    if not months:
        return []
    return backfill(cfg, months[0], months[-1], extract=False, run_id=run_id, on_month=on_month)


def failure_kind(results: list[MonthResult]) -> Kind | None:
    """Whether running failed months again can help: permanent only when every failure
    is (a retry recomputes every month: worth it when it can help one of them)."""
    failed = [r for r in results if r.status != "loaded"]
    if not failed:
        return None
    return PERMANENT if all(r.kind == PERMANENT for r in failed) else TRANSIENT


def missing_history(cfg: Config, month: date) -> list[date]:
    """The months ``month``'s computation reads that the lake lacks (with ``[service]``, a
    month is extracted once its activities are too)."""
    extracted = set(extracted_months(cfg.lake.root))
    if cfg.service is not None:
        extracted &= set(extracted_months(cfg.lake.root, ACTIVITIES))
    return [m for m in cfg.months_read(month) if m not in extracted]


def wait_for_history(
    cfg: Config,
    month: date,
    active_runs: Callable[[list[date]], int],
    *,
    config: str,
    timezone: str,
) -> tuple[bool, str | None]:
    """Whether an orchestrated month that found its history missing is retried, and what to
    say: retried only while an active run (``active_runs`` of the earlier months) extracts
    the months the lake lacks.

    In a backfill, month M+1 may compute before the run of M has extracted M: waiting
    fixes that. A month whose history no active run extracts would retry for nothing,
    so it fails at once with the command that extracts the history.
    """
    missing = missing_history(cfg, month)
    if not missing:  # extracted meanwhile: a retry will find it
        return True, None
    earlier = [m for m in missing if m != month]  # the run's own month is its own job
    active = earlier == missing and active_runs(earlier)
    if active:
        return True, (
            f"{active} active run(s) of {DAG_ID} are extracting the missing month(s): retrying"
        )
    return False, (
        f"No active run of {DAG_ID} extracts "
        + ", ".join(format_month(m) for m in missing)
        + ": extract the history first, e.g. "
        + missing_history_command(config, missing[0], missing[-1], timezone)
    )


def backfill(
    cfg: Config,
    first: date,
    last: date,
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
    months = months_between(first, last)
    run_id = run_id or new_run_id()
    with hold_months(cfg, months, run_id):  # another run of these months waits
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
    _warm_up(cfg)

    def finish(month: date, error: BaseException | None) -> None:
        if error is None:
            try:
                counts = steps.load_step(cfg, month, run_id)
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
    outcomes = extract_months(cfg, months) if extract else ((m, None) for m in months)
    for month, outcome in outcomes:  # the source is read and parsed once for all months
        try:
            with step(cfg, month, run_id, "extract") as folder:
                if isinstance(outcome, Exception):
                    raise outcome
                if outcome is not None:
                    record_extract(folder, outcome)
            ready.append(month)
        except Exception as exc:
            finish(month, exc)
    if extract and cfg.service is not None and ready:  # then the service activities, likewise
        extracted = extract_months(cfg, ready, dataset=ACTIVITIES)
        for month, outcome in list(extracted):
            try:
                with step(cfg, month, run_id, "extract") as folder:
                    if isinstance(outcome, Exception):
                        raise outcome
                    record_extract(folder, outcome, key="extract_activities")
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
    leave_failures_to_parent()
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
