"""The one classification of foreseen errors (pipeline/errors.py) that the CLI and the DAG
share: every error the pipeline defines is in it, everything either of them catches is
in it, and the decisions that matter (retry or fail at once) are the ones asked for."""

from __future__ import annotations

import ast
import importlib
import pickle
import pkgutil
from pathlib import Path

import pyarrow as pa
import pytest

import pipeline
from pipeline import errors
from pipeline.errors import FORESEEN, KINDS, PERMANENT, TRANSIENT, classify

REPO = Path(__file__).resolve().parents[2]


def _pipeline_modules() -> list:
    names = [m.name for m in pkgutil.walk_packages(pipeline.__path__, "pipeline.")]
    return [importlib.import_module(name) for name in sorted(names)]


def _error_classes(module) -> list[type[BaseException]]:
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == module.__name__
    ]


def test_every_error_the_pipeline_defines_lives_in_errors_and_has_a_row():
    elsewhere = {
        f"{module.__name__}.{cls.__name__}"
        for module in _pipeline_modules()
        if module is not errors
        for cls in _error_classes(module)
    }
    assert elsewhere == set()  # define a new error in pipeline/errors.py, with its row
    defined = set(_error_classes(errors))
    assert defined - set(KINDS) == set()  # a row each, not only a classified base
    assert set(KINDS.values()) == {PERMANENT, TRANSIENT}
    assert tuple(KINDS) == FORESEEN


def test_the_modules_that_raised_them_still_export_them():
    from pipeline import (
        config,
        faults,
        storage,
    )
    from pipeline.compute import month
    from pipeline.deliver import notify
    from pipeline.deliver import report_data as report
    from pipeline.gates import results as gate_results
    from pipeline.lake import extract, partition
    from pipeline.run import backfill, schedule
    from pipeline.sources import customers, files
    from pipeline.warehouse import duckdb as duckdb_warehouse
    from pipeline.warehouse import postgres as postgres_warehouse
    from pipeline.warehouse import postgres_schema

    assert gate_results.GateFailed is errors.GateFailed
    assert config.ConfigError is errors.ConfigError
    assert customers.CustomersError is errors.CustomersError
    assert (faults.StorageError, faults.MemoryLimitError) == (
        errors.StorageError,
        errors.MemoryLimitError,
    )
    assert (
        extract.BadInputError,
        partition.MissingMonthError,
        partition.CorruptPartitionError,
    ) == (
        errors.BadInputError,
        errors.MissingMonthError,
        errors.CorruptPartitionError,
    )
    assert extract.UnfinishedMonthError is errors.UnfinishedMonthError
    assert notify.NotifyError is errors.NotifyError
    assert postgres_warehouse.WarehouseConnectionError is errors.WarehouseConnectionError
    assert postgres_schema.WarehouseSchemaError is errors.WarehouseSchemaError
    assert report.ReportError is errors.ReportError
    assert backfill.BackfillInterrupted is errors.BackfillInterrupted
    assert schedule.ScheduleError is errors.ScheduleError
    assert files.SourceError is errors.SourceError
    assert storage.ObjectStoreError is errors.ObjectStoreError
    assert month.ComputeError is errors.ComputeError
    assert duckdb_warehouse.WarehouseLockedError is errors.WarehouseLockedError


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (errors.SourceError("source file not found: /data/payments.csv"), PERMANENT),
        (errors.CustomersError("customer attributes file not found: c.csv"), PERMANENT),
        (errors.SourceConnectionError("postgres table t at ...: cannot connect"), TRANSIENT),
        (errors.BadInputError("2026-01: 1 row(s) with an unparseable amount"), PERMANENT),
        (errors.UnfinishedMonthError("2026-03 has not ended"), PERMANENT),
        (errors.CorruptPartitionError("the manifest names a missing file"), PERMANENT),
        (errors.MissingMonthError("month 2026-01 is not in the lake"), PERMANENT),
        (errors.ComputeError("month 1900-01 lies before history_start 2026-01"), PERMANENT),
        (errors.ConfigError("configuration file not found: tiers.toml"), PERMANENT),
        (errors.ScheduleError("the run has neither a data interval nor a logical date"), PERMANENT),
        (errors.MemoryLimitError("DuckDB needed more memory"), PERMANENT),
        (errors.WarehouseConnectionError("warehouse ... cannot be reached"), TRANSIENT),
        (errors.WarehouseLockedError("warehouse is open for writing elsewhere"), TRANSIENT),
        (errors.WarehouseSchemaError("warehouse schema does not match"), PERMANENT),
        (errors.DiskFullError("cannot write x: no space is left on the device"), TRANSIENT),
        (errors.StorageError("cannot write x: the file system is read-only"), PERMANENT),
        (errors.ObjectStoreError("s3://b: the object store cannot be reached"), TRANSIENT),
        (errors.ObjectStoreRefusedError("s3://b: access denied"), PERMANENT),
        (errors.NotifyError("no [notify] section in the configuration"), PERMANENT),
        (errors.NotifyServerError("cannot deliver through the SMTP server"), TRANSIENT),
        (errors.BackfillInterrupted("backfill stopped by SIGTERM"), TRANSIENT),
        # caught generically where a value is read: a month, a name, Arrow's invalid data
        (ValueError("month 13 is out of range"), PERMANENT),
        (pa.ArrowInvalid("could not convert"), PERMANENT),
        # unforeseen: the DAG retries them, the CLI adds the --debug hint
        (RuntimeError("something else"), None),
        (OSError("Input/output error"), None),
        (KeyError("k"), None),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_each_error_is_permanent_or_transient(error, kind):
    assert classify(error) == kind
    assert classify(type(error)) == kind


def test_a_new_subclass_takes_its_bases_kind_until_it_has_a_row():
    class StrayDateError(errors.BadInputError):
        """A date before the history's start (a BadInputError another change may add)."""

    class MonthHeldError(RuntimeError):
        """Another run holds the month (a transient error another change may add)."""

    assert classify(StrayDateError("1900-01-15")) == PERMANENT
    assert classify(MonthHeldError("held")) is None  # unforeseen until it has its row
    KINDS[MonthHeldError] = TRANSIENT  # ... the one line that makes it foreseen
    try:
        assert classify(MonthHeldError("held")) == TRANSIENT
    finally:
        del KINDS[MonthHeldError]


def _an_instance(cls: type[BaseException]) -> BaseException:
    if cls is errors.GateFailed:
        from pipeline.gates.results import CheckResult, GateReport

        failed = CheckResult("raw.amount_positive", "expect_x", "error", False, 1, [], "1 row")
        return cls(GateReport("raw", "2026-01", [failed], ["runs/x/raw.json"]))
    return cls(f"a {cls.__name__}")


@pytest.mark.parametrize("cls", FORESEEN, ids=lambda cls: cls.__name__)
def test_every_foreseen_error_survives_the_trip_from_a_backfill_worker(cls):
    """``backfill --jobs N`` gets a month's error back from a worker process by pickle."""
    error = _an_instance(cls)
    error.add_note("(step compute of month 2026-01, run r1)")
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is cls
    assert str(back) == str(error)
    assert back.__notes__ == ["(step compute of month 2026-01, run r1)"]
    assert classify(back) == KINDS[cls]


def _caught_names(path: Path) -> list[tuple[int, ast.expr]]:
    """Every expression an ``except`` clause of the file names, with its line."""
    caught = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ExceptHandler) and node.type is not None:
            parts = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
            caught += [(node.lineno, part) for part in parts]
    return caught


def _resolve(name: str, *namespaces) -> type[BaseException]:
    import builtins

    for namespace in (*namespaces, errors, builtins):
        if hasattr(namespace, name):
            return getattr(namespace, name)
    raise AssertionError(f"cannot tell which class {name} is")


@pytest.mark.parametrize(
    "path", ["pipeline/cli.py", "pipeline/cli_errors.py", "dags/tiers_monthly.py"]
)
def test_every_error_the_cli_and_the_dag_catch_is_in_the_classification(path):
    """Exception is the unforeseen path and SystemExit the command's exit; every other
    class either of them catches, and everything known_errors() gives, has a row."""
    from pipeline import cli, cli_errors

    unclassified = []
    for line, part in _caught_names(REPO / path):
        if isinstance(part, ast.Call) and ast.unparse(part) == "known_errors()":
            continue  # checked below
        assert isinstance(part, ast.Name), f"{path}:{line}: except {ast.unparse(part)}"
        if part.id in ("Exception", "SystemExit"):
            continue
        if classify(_resolve(part.id, cli, cli_errors)) is None:
            unclassified.append(f"{path}:{line}: {part.id}")
    assert unclassified == []
    assert set(cli_errors.known_errors()) == {c for c in FORESEEN if issubclass(c, Exception)}
    assert errors.BackfillInterrupted in FORESEEN  # caught by `tiers backfill` (exit 143)


# --- where one family holds both kinds, the raising code tells them apart ------------------


def test_a_full_disk_is_transient_a_read_only_one_is_not(tmp_path):
    import errno

    from pipeline.faults import storage_fault

    target = str(tmp_path / "part.parquet")
    full = storage_fault(OSError(errno.ENOSPC, "No space left on device", target))
    quota = storage_fault(OSError(errno.EDQUOT, "Disk quota exceeded", target))
    read_only = storage_fault(OSError(errno.EROFS, "Read-only file system", target))
    assert (type(full), type(quota), type(read_only)) == (
        errors.DiskFullError,
        errors.DiskFullError,
        errors.StorageError,
    )
    assert [classify(e) for e in (full, quota, read_only)] == [TRANSIENT, TRANSIENT, PERMANENT]
    assert str(full).startswith(f"cannot write {target}: no space is left on the device")


@pytest.mark.parametrize(
    ("store_said", "kind", "words"),
    [
        ("AWS Error NETWORK_CONNECTION during HeadBucket", TRANSIENT, "cannot be reached"),
        ("AWS Error SLOW_DOWN during PutObject: HTTP status 503", TRANSIENT, "SLOW_DOWN"),
        ("AWS Error NO_SUCH_BUCKET during HeadBucket", PERMANENT, "bucket does not exist"),
        ("AWS Error ACCESS_DENIED during HeadBucket", PERMANENT, "access denied"),
    ],
)
def test_an_object_store_that_answers_no_is_permanent_one_that_fails_is_not(
    store_said, kind, words
):
    from pipeline.storage import _store_error

    told = _store_error("s3://lake/payments", OSError(store_said))
    assert classify(told) == kind
    assert isinstance(told, errors.ObjectStoreError)
    assert str(told).startswith("s3://lake/payments: ") and words in str(told)


def test_errors_imports_nothing_of_the_pipeline_nor_anything_heavy():
    """The DAG file (through pipeline.run.schedule) imports it at parse time, the CLI at startup."""
    import subprocess
    import sys

    probe = (
        "import sys; before = set(sys.modules); import pipeline.errors; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    loaded = set(done.stdout.split())
    assert {m for m in loaded if m.startswith("pipeline")} == {"pipeline", "pipeline.errors"}
    assert not loaded & {"duckdb", "pyarrow", "pydantic", "psycopg", "great_expectations"}
