"""Every foreseen error of the pipeline, and whether retrying can help: ``KINDS``.

The CLI and the DAG decide from this one table. A foreseen error is told as its message
(the CLI: exit 1, no traceback); a *permanent* one fails an Airflow task at once, since
the same input, configuration and lake fail the same way again, while a *transient* one
is retried with backoff. An error not in the table (a subclass counts as its nearest
listed base) is unforeseen: the CLI adds the ``--debug`` hint, the DAG retries it.

A new error is defined here (its module imports it from here, so nothing imports upward)
and gets one row in ``KINDS`` with the reason in a comment. Standard library only: the CLI
imports this at startup and the DAG when a task fails.
"""

from __future__ import annotations

from typing import Literal, Protocol

Kind = Literal["permanent", "transient"]
PERMANENT: Kind = "permanent"
TRANSIENT: Kind = "transient"


# --- configuration and schedule ----------------------------------------------------------


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or invalid."""


class ScheduleError(ValueError):
    """A run's dates do not identify one business month, or no configuration is set."""


# --- sources -----------------------------------------------------------------------------


class SourceError(RuntimeError):
    """The source cannot be read as configured (missing file, table or column)."""


class SourceConnectionError(SourceError):
    """A PostgreSQL source cannot be reached, or its session ended while it was read."""


class CustomersError(SourceError):
    """The customer attributes source cannot be read or breaks its rules."""


# --- the lake ----------------------------------------------------------------------------


class BadInputError(ValueError):
    """A month's source rows break the input rules; nothing of the month was written."""


class UnfinishedMonthError(BadInputError):
    """The month has not ended in the business time zone: its payments are still coming."""


class MissingMonthError(LookupError):
    """A month the computation needs has not been extracted into the lake."""


class CorruptPartitionError(ValueError):
    """A lake partition does not match its manifest (a file changed, damaged or missing)."""


class MonthBusyError(RuntimeError):
    """Another run holds the month (from its extract to its load) longer than a run waits."""


class MonthSupersededError(RuntimeError):
    """The month was extracted again, from other source rows, after this run read it: its
    results are of the earlier delivery and are not loaded."""


# --- compute and gates -------------------------------------------------------------------


class ComputeError(ValueError):
    """The month cannot be computed as configured (too early, metric unavailable)."""


class GateSummary(Protocol):
    """What GateFailed needs of a gate's report (``pipeline.gates.results.GateReport``):
    its summary, the error's message. A protocol, so that this module imports no gate."""

    def summary(self) -> str: ...


class GateFailed(RuntimeError):
    """A gate found an error-severity check failing; nothing of the month may be loaded."""

    def __init__(self, report: GateSummary) -> None:
        super().__init__(report.summary())
        self.report = report

    def __reduce__(self):  # built from its report, also in a backfill's parent process
        return type(self), (self.report,), self.__dict__


# --- the warehouse -----------------------------------------------------------------------


class WarehouseSchemaError(RuntimeError):
    """The warehouse schema exists but does not match the reporting tables' contract."""


class WarehouseConnectionError(RuntimeError):
    """The PostgreSQL warehouse cannot be reached, or the connection ended mid-transaction."""


class WarehouseLockedError(RuntimeError):
    """Another process holds the warehouse for writing longer than a load waits."""


class WarehouseLayoutError(ValueError):
    """The DuckDB catalog and its folder do not belong together (the catalog was moved
    without its folder, or beside another warehouse's folder, or the folder's state was
    lost): publishing would hide months the catalog shows."""


# --- the machine: disks, object stores, memory -------------------------------------------


class StorageError(OSError):
    """A file could not be written: the disk is full, read-only, or the folder forbidden."""

    def __str__(self) -> str:
        return self.args[0] if self.args else ""


class DiskFullError(StorageError):
    """A file could not be written: no space is left on the device, or the quota is used."""


class ObjectStoreError(OSError):
    """The object store refused or could not be reached; the message says which object,
    why, and what to do."""


class ObjectStoreRefusedError(ObjectStoreError):
    """The object store answered no: the bucket does not exist, or access is denied."""


class MemoryLimitError(RuntimeError):
    """DuckDB needed more memory for a step than ``[lake] memory_limit`` gives it."""


# --- delivery and runs -------------------------------------------------------------------


class ReportError(ValueError):
    """The month cannot be reported (not loaded, unknown metric)."""


class NotifyError(RuntimeError):
    """The call list cannot be delivered (configuration, month not loaded)."""


class NotifyServerError(NotifyError):
    """The SMTP server cannot be reached or refused a message."""


class BackfillInterrupted(BaseException):
    """The backfill was asked to stop (SIGTERM); a BaseException so no step records it as a
    month's failure and the loads already committed stay."""


# --- the classification: one row per foreseen error --------------------------------------

KINDS: dict[type[BaseException], Kind] = {
    # a value refused where it is read (a month, a name, a number): the same value fails again
    ValueError: PERMANENT,
    ConfigError: PERMANENT,  # the configuration must be edited
    ScheduleError: PERMANENT,  # the run's dates or Param name no single month: trigger anew
    SourceError: PERMANENT,  # the file, table or column the configuration names is not there
    SourceConnectionError: TRANSIENT,  # a PostgreSQL source's server restarts, sessions end
    CustomersError: PERMANENT,  # the customer attributes are missing or break their rules
    BadInputError: PERMANENT,  # the month's rows break the input rules: the source must change
    UnfinishedMonthError: PERMANENT,  # the month ends days later, not within the retries
    MissingMonthError: PERMANENT,  # extract the history first (the DAG waits for a run on it)
    CorruptPartitionError: PERMANENT,  # a lake file differs from its manifest: re-extract
    MonthBusyError: TRANSIENT,  # another run of the month is going; it ends, then this one runs
    MonthSupersededError: PERMANENT,  # a newer delivery of the month is in the lake: run anew
    ComputeError: PERMANENT,  # before business.history_start, or a metric lacks its columns
    GateFailed: PERMANENT,  # a check failed on the data: the data must change, not the time
    WarehouseSchemaError: PERMANENT,  # the tables must be migrated (tiers warehouse init)
    WarehouseConnectionError: TRANSIENT,  # server restarted or session ended; nothing committed
    WarehouseLockedError: TRANSIENT,  # another loader holds the writer lock until its load ends
    WarehouseLayoutError: PERMANENT,  # the catalog and its folder must be moved together
    StorageError: PERMANENT,  # a read-only or forbidden folder stays so until someone acts
    DiskFullError: TRANSIENT,  # space returns as other runs finish; nothing half-written stays
    ObjectStoreError: TRANSIENT,  # unreachable or failing on its side; objects are written whole
    ObjectStoreRefusedError: PERMANENT,  # no such bucket, or access denied: settings must change
    MemoryLimitError: PERMANENT,  # the month needs as much again under the same memory_limit
    ReportError: PERMANENT,  # the month is not loaded, or the metric is unknown
    NotifyError: PERMANENT,  # [notify] is incomplete, or the month is not loaded
    NotifyServerError: TRANSIENT,  # the SMTP server is down; the ledger sends only what is left
    BackfillInterrupted: TRANSIENT,  # stopped from outside (SIGTERM), not by its input
}

FORESEEN: tuple[type[BaseException], ...] = tuple(KINDS)


def classify(error: BaseException | type[BaseException]) -> Kind | None:
    """``permanent`` or ``transient`` for a foreseen error (or its class), by the nearest
    class in its ancestry that ``KINDS`` lists; None for an unforeseen one."""
    cls = error if isinstance(error, type) else type(error)
    return next((KINDS[c] for c in cls.__mro__ if c in KINDS), None)
