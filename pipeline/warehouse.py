"""The warehouse: reporting tables that BI tools read, replaced one month at a time.

The DuckDB warehouse (default) keeps each table's month as an immutable Parquet file and
publishes a small DuckDB catalog of views over the current files at the configured path,
so that BI tools reading it never block a load and a load never breaks a reader.

``open_warehouse(cfg)`` returns the DuckDB warehouse (default) or the PostgreSQL one
(``pipeline.postgres``); both offer the same methods:

* ``ensure_schema()`` creates (or migrates) the tables and BI views;
* ``load_month(month, tables, run)`` replaces every reporting table's rows of that
  month and records the run, in one transaction: readers see the old month or the
  new one, never a mix, and a killed load leaves the old month;
* ``record_run(run)`` records a run that loaded nothing (a failed month);
* ``replace_customers(rows)`` replaces the customer attributes (names, owners) that the
  BI views join, from the optional ``[customers]`` source;
* ``read_table(name, month=None)`` returns rows as Arrow, for checks and tests.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.config import Config
from pipeline.errors import WarehouseLayoutError, WarehouseLockedError
from pipeline.files import atomic_write, exclusive_lock, fsync, fsync_dir
from pipeline.schema import (
    CUSTOMER,
    DUCKDB_TYPES,
    PIPELINE_RUN,
    REPORTING_TABLES,
    TABLES,
    Table,
    comment_statements,
    description_digest,
)
from pipeline.sql import sql_text

log = logging.getLogger(__name__)


class Warehouse(Protocol):
    def ensure_schema(self) -> None: ...

    def load_month(
        self, month: date, tables: Mapping[str, MonthRows], run: dict[str, Any]
    ) -> None: ...

    def record_run(self, run: dict[str, Any]) -> None: ...

    def replace_customers(self, rows: pa.Table) -> None: ...

    def read_table(self, name: str, month: date | None = None) -> pa.Table: ...

    def close(self) -> None: ...


def open_warehouse(cfg: Config) -> Warehouse:
    url = cfg.warehouse.url
    if url.startswith("duckdb:///"):
        return DuckDBWarehouse(
            url.removeprefix("duckdb:///"), lock_timeout=cfg.warehouse.lock_timeout
        )
    from pipeline.postgres import PostgresWarehouse

    return PostgresWarehouse(url, cfg.warehouse.schema_name)


def run_row(run: Mapping[str, Any]) -> dict[str, Any]:
    """A ``pipeline_run`` row from a run record, every column present."""
    row = {name: run.get(name) for name in PIPELINE_RUN.column_names}
    if not isinstance(row["check_results"], str | None):
        row["check_results"] = json.dumps(row["check_results"], default=str)
    return row


def create_table_sql(table: Table, types: Mapping[str, str], qualified: str) -> str:
    columns = ",\n    ".join(f'"{name}" {types[kind]}' for name, kind in table.columns)
    key = ", ".join(f'"{c}"' for c in table.key)
    return f"CREATE TABLE IF NOT EXISTS {qualified} (\n    {columns},\n    PRIMARY KEY ({key})\n)"


# A month's table as Arrow rows, or as a Parquet file in the table's types (the files that
# ``compute.month.write_month`` computed): the DuckDB warehouse adopts such a file as it is.
MonthRows = pa.Table | Path


def month_tables(month: date, tables: Mapping[str, MonthRows]) -> dict[str, MonthRows]:
    """Every reporting table of a month's load, conformed to the contract; a missing table
    or a row of another month is an error (nothing is loaded). The service tables are
    given only by a month computed with a [service] source: a load without them leaves the
    month without service rows."""
    required = {name for name, table in TABLES.items() if not table.service_only}
    missing = required - set(tables)
    if missing:
        raise ValueError(f"load of {month}: missing table(s) {sorted(missing)}")
    incoming = {
        name: conform(table, tables[name]) for name, table in TABLES.items() if name in tables
    }
    for name, rows in incoming.items():
        others = _months_of(rows) - {month}
        if others:
            raise ValueError(f"load of {month}: {name} has rows of {sorted(others)}")
    return incoming


def conform(table: Table, data: MonthRows) -> MonthRows:
    """The table's columns in contract order and types (extra columns are an error); a file
    must hold exactly those columns and types already (checked on its schema)."""
    schema = data.schema if isinstance(data, pa.Table) else pq.read_schema(data)
    extra = set(schema.names) - set(table.column_names)
    if extra:
        raise ValueError(f"{table.name}: unexpected column(s) {sorted(extra)}")
    if table.service_columns and not set(table.service_columns) & set(schema.names):
        table = table.without_service()  # a month computed without a [service] source
    if isinstance(data, pa.Table):
        return data.select(table.column_names).cast(table.arrow_schema())
    found = [(f.name, f.type) for f in schema]
    wanted = [(f.name, f.type) for f in table.arrow_schema()]
    if found != wanted:
        raise ValueError(f"{table.name}: {data} has columns {found}, not the contract's {wanted}")
    return data


def as_arrow(table: Table, rows: MonthRows) -> pa.Table:
    """The rows in the table's full schema; the service columns a month computed without a
    [service] source lacks are NULL."""
    schema = table.arrow_schema()
    if isinstance(rows, pa.Table):
        data = rows
    else:
        present = pq.read_schema(rows).names
        data = pq.read_table(rows, schema=pa.schema([f for f in schema if f.name in present]))
    for column in schema:
        if column.name not in data.column_names:
            data = data.append_column(column, pa.nulls(data.num_rows, column.type))
    return data.select(schema.names).cast(schema)


def _months_of(rows: MonthRows) -> set[date]:
    """The months a table's rows are of; for a file, from its row groups' statistics when
    the writer recorded them (DuckDB does), else from the column itself."""
    if isinstance(rows, pa.Table):
        return set(rows.column("month").unique().to_pylist())
    metadata = pq.ParquetFile(rows).metadata
    column = metadata.schema.names.index("month")
    months = set()
    for index in range(metadata.num_row_groups):
        stats = metadata.row_group(index).column(column).statistics
        if stats is None or not stats.has_min_max:
            return set(pq.read_table(rows, columns=["month"]).column("month").unique().to_pylist())
        months |= {stats.min, stats.max}
    return months


# --- the DuckDB warehouse: immutable month files and a published catalog -----------------

# The catalog is written in the storage format DuckDB 1.0 introduced, so that BI drivers
# that bundle DuckDB 1.x (and 2.x) open it; it holds views only, so the format costs nothing.
CATALOG_STORAGE_VERSION = "v1.0.0"
# How long a writer waits for the one before it (seconds; [warehouse] lock_timeout).
LOCK_TIMEOUT = 600.0
# Superseded month files stay this long, for readers that still hold an older catalog.
KEEP_SUPERSEDED = timedelta(hours=48)
_STATE_FORMAT = 1
_GLOB_CHARACTERS = set("*?[]{}")


@dataclass
class _State:
    """What the warehouse holds: the current file of each table's month and every run
    attempt's file, as paths relative to the data folder. ``state.json`` is the commit
    point of a load; the catalog is published from it."""

    generation: int = 0
    files: dict[str, dict[str, str]] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)
    customers: str | None = None  # the customer attributes' file (replaced whole)
    superseded: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self) | {"format": _STATE_FORMAT}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> _State:
        data = json.loads(text)
        if data.pop("format", None) != _STATE_FORMAT:
            raise ValueError("unknown warehouse state format")
        return cls(**data)


class DuckDBWarehouse:
    """The default warehouse: immutable Parquet files per table and month beside a small
    DuckDB catalog file that BI tools open read-only.

    ``<path>.d/<table>/month=YYYY-MM/<sha256>.parquet`` holds a table's month (named by
    its content, never rewritten); ``<path>.d/state.json`` says which files are current.
    A load writes the month's new files, commits ``state.json`` (atomic rename) and then
    publishes ``<path>``: a DuckDB file of views over exactly the current files (plus the
    BI views and their descriptions), built under a temporary name and renamed onto
    ``<path>``. A reader that holds the previous catalog keeps its file (the inode) and
    its month files, so it goes on seeing whole months; it sees the new month when it
    reconnects. Writers take ``<path>.d/writer.lock`` (fcntl), readers take no lock.
    """

    def __init__(
        self,
        path: str,
        *,
        keep_superseded: timedelta = KEEP_SUPERSEDED,
        lock_timeout: float = LOCK_TIMEOUT,
    ) -> None:
        self._scratch: str | None = None
        if path == ":memory:":  # a throwaway warehouse (tests)
            self._scratch = tempfile.mkdtemp(prefix="tiers-warehouse-")
            path = str(Path(self._scratch) / "warehouse.duckdb")
        self.path = Path(path).resolve()
        self.data = self.path.with_name(self.path.name + ".d")
        if _GLOB_CHARACTERS & set(str(self.data)):
            raise ValueError(
                f"warehouse path {self.path}: DuckDB reads Parquet paths as glob patterns, so "
                f"the folder cannot contain any of {''.join(sorted(_GLOB_CHARACTERS))}; "
                "choose another warehouse.url"
            )
        self.keep_superseded = keep_superseded
        self.lock_timeout = lock_timeout
        self._pending: _State | None = None
        self._created: list[str] = []  # files this write added, removed if it fails

    # writing --------------------------------------------------------------------------

    @contextmanager
    def _writing(self, replacing: date | None = None) -> Iterator[_State]:
        """The state under the writer lock; committed and published if the block succeeds.

        The new catalog is built before the state is committed, so that a full or
        read-only disk stops the write before its commit point: the warehouse then holds
        its previous state, catalog and files (the files this write added are removed).
        A write whose catalog would not show every month the published one shows (the
        catalog and its folder do not belong together) stops before it writes anything;
        the month a load replaces (``replacing``) may lose tables (a month loaded again
        without its ``[service]`` tables).
        """
        if not self.data.exists():  # a catalog moved without its folder: refused untouched
            self._check_shown(self._read_shown(), _State())
        self.data.mkdir(parents=True, exist_ok=True)
        lock = self.data / "writer.lock"
        with exclusive_lock(  # loaders queue here; readers never lock
            lock,
            timeout=self.lock_timeout,
            busy=lambda holder: WarehouseLockedError(self._locked_message(lock, holder)),
        ):
            committed = False
            try:
                self._created = []
                shown = self._read_shown()  # the catalog this write replaces, under the lock
                state = self._read_state()
                self._check_shown(shown, state or _State())  # before anything is written
                self._pending = state or self._migrate_legacy()
                before = self._pending.to_json()
                yield self._pending
                changed = self._pending.to_json() != before
                if changed:
                    self._pending.generation += 1
                # never hide what readers were shown, but the month this load replaces
                self._check_shown(shown, self._pending, replacing)
                catalog = self._build_catalog_if_stale(self._pending)
                try:
                    if changed:
                        self._commit(self._pending)
                    committed = True
                    if catalog is not None:
                        self._install_catalog(*catalog)
                finally:
                    if catalog is not None:
                        _remove_catalog(catalog[0])
                try:
                    self._collect_garbage(self._pending)
                except OSError as exc:  # the write is committed; the next one collects
                    log.warning("warehouse %s: superseded files not collected: %s", self.path, exc)
            except BaseException:
                if not committed:
                    for path in self._created:
                        (self.data / path).unlink(missing_ok=True)
                raise
            finally:
                self._pending, self._created = None, []

    def _locked_message(self, lock: Path, holder: str) -> str:
        return (
            f"warehouse {self.path}: another process is writing it and still held its lock "
            f"{lock} after {self.lock_timeout:g} s (held by {holder}). Another load is "
            "probably running: wait for it to end, then run the command again. If that "
            "process hangs, stop it (its unfinished load leaves the warehouse as it was). "
            "[warehouse] lock_timeout sets how long a load waits."
        )

    def ensure_schema(self) -> None:
        with self._writing():
            pass  # creates the data folder, migrates a legacy file, publishes if stale

    def load_month(self, month: date, tables: Mapping[str, MonthRows], run: dict[str, Any]) -> None:
        """Publish every reporting table's month and record the run (one commit); a table
        given as a file is adopted byte for byte, not re-encoded."""
        incoming = month_tables(month, tables)
        with self._writing(replacing=month) as state:
            key = month.isoformat()
            for name, rows in incoming.items():
                path = self._write_file(TABLES[name], month, rows)
                current = state.files.setdefault(name, {}).get(key)
                if current != path:
                    state.files[name][key] = path
                    if current is not None:
                        state.superseded.append({"path": current, "since": _utc_now()})
            for name in TABLES.keys() - incoming.keys():  # a service table of an earlier load
                current = state.files.get(name, {}).pop(key, None)
                if current is not None:
                    state.superseded.append({"path": current, "since": _utc_now()})
            self._insert_run(run)

    def record_run(self, run: dict[str, Any]) -> None:
        with self._writing():
            self._insert_run(run)

    def replace_customers(self, rows: pa.Table) -> None:
        """Replace the customer attributes (one file, published like a month)."""
        with self._writing() as state:
            path = self._write_file(CUSTOMER, None, conform(CUSTOMER, rows), prefix="customer/")
            if state.customers not in (None, path):
                state.superseded.append({"path": state.customers, "since": _utc_now()})
            state.customers = path

    def _insert_run(self, run: Mapping[str, Any]) -> None:
        """Add the run as a new attempt (a run id may be re-run: Airflow retries)."""
        state = self._pending
        row = run_row(run)
        month = row["month"]
        prefix = f"pipeline_run/month={month:%Y-%m}/{_file_safe(row['run_id'])}."
        row["attempt"] = 1 + sum(1 for path in state.runs if path.startswith(prefix))
        row["recorded_at"] = datetime.now(UTC)
        data = pa.Table.from_pylist([row], PIPELINE_RUN.arrow_schema())
        state.runs.append(self._write_file(PIPELINE_RUN, month, data, prefix=prefix))

    def _write_file(
        self, table: Table, month: date | None, rows: MonthRows, *, prefix: str | None = None
    ) -> str:
        """Write ``rows`` (or copy a file of them) as an immutable Parquet file named by its
        content (same rows in the same order, same bytes, same name); returns its path
        relative to the data folder. Snappy: the fastest codec every DuckDB reader has (zstd
        cost 1.5x the write time); ``compute.month.write_month`` writes its files so too."""
        folder = prefix or f"{table.name}/month={month:%Y-%m}/"
        target_dir = self.data / folder.rsplit("/", 1)[0]
        target_dir.mkdir(parents=True, exist_ok=True)
        scratch = target_dir / f".incoming-{os.getpid()}-{uuid.uuid4().hex}"
        try:
            if isinstance(rows, pa.Table):
                pq.write_table(rows, scratch, compression="snappy", row_group_size=256 * 1024)
            else:  # copied by hand: shutil's sendfile would name the source in an ENOSPC
                with open(rows, "rb") as source, open(scratch, "wb") as target:
                    while chunk := source.read(1 << 20):
                        target.write(chunk)
            with open(scratch, "rb") as written:
                digest = hashlib.file_digest(written, "sha256").hexdigest()[:32]
            relative = f"{folder}{digest}.parquet"
            target = self.data / relative
            if target.exists():
                scratch.unlink()
            else:
                fsync(scratch)
                os.replace(scratch, target)
                self._created.append(relative)
            return relative
        finally:
            scratch.unlink(missing_ok=True)

    def _commit(self, state: _State) -> None:
        atomic_write(self.data / "state.json", state.to_json())

    def _read_state(self) -> _State | None:
        try:
            text = (self.data / "state.json").read_text()
        except FileNotFoundError:
            return None
        try:
            return _State.from_json(text)
        except (ValueError, TypeError) as exc:
            raise RuntimeError(
                f"warehouse state {self.data / 'state.json'} cannot be read ({exc}); restore it "
                "from a backup or move the warehouse aside and backfill again"
            ) from None

    # the published catalog and its folder ----------------------------------------------

    def _read_shown(self) -> _Shown | None:
        """What the catalog at the warehouse path shows (None when there is none). Read
        from a copy when another connection holds the file (a BI tool that opened it
        read-write, or this process with other settings): a load does not wait for it."""
        if not self.path.exists():
            return None
        try:
            return _shown_in(self.path)
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            if "lock" not in str(exc).lower() and "configuration" not in str(exc).lower():
                raise WarehouseLayoutError(
                    f"warehouse {self.path} is not a DuckDB catalog that tiers can read "
                    f"({exc}), so it is left as it is. If that file is not the warehouse's "
                    "catalog, point warehouse.url at another path; if it is, move it aside "
                    f"and run `tiers warehouse init` to publish the catalog of {self.data} "
                    "again. The warehouse was not changed."
                ) from None
        with tempfile.TemporaryDirectory(prefix="tiers-catalog-") as folder:
            copy = Path(folder) / self.path.name
            shutil.copyfile(self.path, copy)
            return _shown_in(copy)

    def _check_shown(
        self, shown: _Shown | None, state: _State, replacing: date | None = None
    ) -> None:
        """Refuse a write whose catalog would hide a month the published catalog shows (a
        table's month or a run record), naming the catalog, the folders and the fix."""
        hidden = shown.hidden_by(state, replacing) if shown is not None else []
        if not hidden:
            return
        months = _months_text(hidden)
        others = sorted(folder for folder in shown.folders if folder != self.data)
        if not others:  # the catalog is this folder's, the state lost what it showed
            state_file = self.data / "state.json"
            lost = "is missing" if not state_file.exists() else "does not hold them"
            raise WarehouseLayoutError(
                f"warehouse {self.path}: this catalog shows {months}, but the warehouse's "
                f"state {state_file} {lost} (it was replaced or lost), so publishing the "
                "catalog again would hide them from BI tools. Restore the folder "
                f"{self.data} from a backup, or move {self.path} and its folder aside and "
                "backfill again. The warehouse was not changed."
            )
        folder = others[0]
        if not self.data.exists():
            beside = "is missing"
        else:
            held = sorted({m for months in state.files.values() for m in months})
            beside = f"holds {_months_text(held) if held else 'no month'}"
        gone = "" if folder.exists() else f" ({folder} is not there either: restore it)"
        raise WarehouseLayoutError(
            f"warehouse {self.path}: this catalog shows {months} from files in {folder}"
            f"{gone}, but its own folder {self.data} {beside}, so publishing the catalog "
            "again would hide those months from BI tools. A DuckDB warehouse is the catalog "
            f"file and its folder together: to move it, move the folder {folder} with the "
            f"file (to {self.data}), then run `tiers warehouse init` to publish the catalog "
            f"again; or point warehouse.url back at duckdb:///{_catalog_of(folder)}. The "
            "warehouse was not changed."
        )

    # publishing -----------------------------------------------------------------------

    def _catalog_digest(self, state: _State) -> str:
        """What the published catalog was built from: the state, the views and the folder."""
        held = json.dumps([state.files, state.runs, state.customers], sort_keys=True)
        text = "\x1f".join((held, str(self.data), catalog_sql_version()))
        return hashlib.sha256(text.encode()).hexdigest()

    def _build_catalog_if_stale(self, state: _State) -> tuple[Path, str] | None:
        """A new catalog of ``state`` under a temporary name, and its digest; None when the
        published catalog is current."""
        digest = self._catalog_digest(state)
        marker = self.data / "published"
        current = marker.read_text().strip() if marker.exists() else None
        if current == digest and self.path.exists():
            return None
        scratch = self.path.with_name(f".{self.path.name}.{os.getpid()}-{uuid.uuid4().hex}")
        try:
            self._build_catalog(state, scratch)
        except BaseException:
            _remove_catalog(scratch)
            raise
        return scratch, digest

    def _install_catalog(self, scratch: Path, digest: str) -> None:
        """Rename the built catalog onto the stable path (after the state's commit)."""
        os.replace(scratch, self.path)  # readers of the old catalog keep their inode
        fsync_dir(self.path.parent)
        with suppress(OSError):  # the write is committed; without the marker the next one
            atomic_write(self.data / "published", digest)  # publishes again, that is all

    def _build_catalog(self, state: _State, scratch: Path) -> None:
        """Write the catalog of ``state`` (views over its files) to ``scratch``."""
        con = duckdb.connect(
            str(scratch), config={"storage_compatibility_version": CATALOG_STORAGE_VERSION}
        )
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute("BEGIN TRANSACTION")  # one commit: statement by statement is slow
            for table in REPORTING_TABLES:
                paths = sorted(state.files.get(table.name, {}).values())
                con.execute(self._table_view_sql(table, paths))
            con.execute(self._table_view_sql(PIPELINE_RUN, sorted(state.runs)))
            con.execute(self._table_view_sql(CUSTOMER, [state.customers] * bool(state.customers)))
            con.execute(sql_text("warehouse_views"))
            for statement in comment_statements(con_columns(con)):
                con.execute(statement)
            con.execute("COMMIT")
            con.execute("CHECKPOINT")
        finally:
            con.close()
        fsync(scratch)

    def _table_view_sql(self, table: Table, paths: list[str]) -> str:
        no_rows = "SELECT " + ", ".join(
            f'CAST(NULL AS {DUCKDB_TYPES[kind]}) AS "{name}"' for name, kind in table.columns
        )
        if not paths:  # no month loaded yet: the table's columns, no rows
            return f"CREATE VIEW {table.name} AS {no_rows} WHERE false"
        files = ", ".join(_sql_string(str(self.data / path)) for path in paths)
        columns = ", ".join(f'"{name}"' for name in table.column_names)
        if table is PIPELINE_RUN or table.service_columns:  # run records of earlier versions
            # lack the columns added since (rows_rounded), and months computed without a
            # [service] source the service columns: NULL in them
            return (
                f"CREATE VIEW {table.name} AS SELECT {columns} FROM ({no_rows} WHERE false "
                f"UNION ALL BY NAME SELECT * FROM read_parquet([{files}], "
                "hive_partitioning = false, union_by_name = true))"
            )
        return (
            f"CREATE VIEW {table.name} AS SELECT {columns} "
            f"FROM read_parquet([{files}], hive_partitioning = false)"
        )

    def _collect_garbage(self, state: _State) -> None:
        """Delete superseded files older than ``keep_superseded`` that are not current."""
        current = {p for months in state.files.values() for p in months.values()}
        current.add(state.customers)
        cutoff = datetime.now(UTC) - self.keep_superseded
        keep = []
        for entry in state.superseded:
            if entry["path"] in current:
                continue
            if datetime.fromisoformat(entry["since"]) > cutoff:
                keep.append(entry)
            else:
                (self.data / entry["path"]).unlink(missing_ok=True)
        if keep != state.superseded:
            state.superseded = keep
            self._commit(state)

    def _migrate_legacy(self) -> _State:
        """A new state; the tables of a warehouse file of the one-file layout, if any."""
        state = _State()
        if not self.path.exists():
            return state
        try:
            con = duckdb.connect(str(self.path), read_only=True)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            raise WarehouseLockedError(
                f"warehouse {self.path} is open for writing in another process ({exc}). Close "
                "that connection (BI tools and scripts should open the warehouse read-only), "
                "then run the command again."
            ) from None
        try:
            found = con.sql("SELECT table_name FROM duckdb_tables()").fetchall()
            tables = {row[0] for row in found}
            if not tables:
                return state
            for table in REPORTING_TABLES:
                if table.name not in tables:
                    continue
                data = con.sql(f"SELECT * FROM {table.name}").to_arrow_table()
                for month in sorted(set(data.column("month").to_pylist())):
                    rows = data.filter(pc.equal(data.column("month"), month))
                    path = self._write_file(table, month, conform(table, rows))
                    state.files.setdefault(table.name, {})[month.isoformat()] = path
            if PIPELINE_RUN.name in tables:
                query = "SELECT * FROM pipeline_run ORDER BY finished_at, run_id"
                runs = con.sql(query).to_arrow_table().to_pylist()
        finally:
            con.close()
        if PIPELINE_RUN.name in tables:
            self._pending = state
            for run in runs:
                self._insert_run(run)
        state.generation = 1
        self._commit(state)
        self._created = []  # committed: no longer this write's to take back
        return state

    # reading --------------------------------------------------------------------------

    def read_table(self, name: str, month: date | None = None) -> pa.Table:
        """The table's current rows (from the committed state: no catalog, no lock)."""
        table = TABLES.get(name) or {PIPELINE_RUN.name: PIPELINE_RUN, CUSTOMER.name: CUSTOMER}.get(
            name
        )
        if table is None:
            raise ValueError(f"unknown table {name!r}")
        state = self._read_state() or _State()
        if table is CUSTOMER:
            paths = [state.customers] if state.customers else []
        elif table is PIPELINE_RUN:
            prefix = None if month is None else f"pipeline_run/month={month:%Y-%m}/"
            paths = [p for p in state.runs if prefix is None or p.startswith(prefix)]
        else:
            months = state.files.get(name, {})
            paths = [months[m] for m in sorted(months) if month is None or m == month.isoformat()]
        schema = table.arrow_schema()
        parts = [as_arrow(table, self.data / path) for path in paths]
        return pa.concat_tables(parts) if parts else schema.empty_table()

    def close(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


@dataclass(frozen=True)
class _Shown:
    """What a published catalog shows: the folders its views read and, relative to them,
    each table's months and the run records' files."""

    folders: frozenset[Path]
    months: frozenset[tuple[str, str]]  # (table, first day of the month)
    runs: frozenset[str]

    def hidden_by(self, state: _State, replacing: date | None = None) -> list[str]:
        """The months (YYYY-MM) shown here that a catalog of ``state`` would not show
        (but in the tables of the month ``replacing``, which its load replaces)."""
        replaced = replacing.isoformat() if replacing is not None else None
        hidden = {
            m for table, m in self.months if m not in state.files.get(table, {}) and m != replaced
        }
        hidden |= {_month_part(run) for run in self.runs - set(state.runs)}
        return sorted(m[:7] for m in hidden if m)


_SQL_STRING = re.compile(r"'((?:[^']|'')*)'")


def _shown_in(catalog: Path) -> _Shown:
    """The files the table views of ``catalog`` read (their paths are the string literals
    of the views' SQL: ``<folder>/<table>/month=YYYY-MM/<name>.parquet``)."""
    names = [table.name for table in REPORTING_TABLES] + [PIPELINE_RUN.name, CUSTOMER.name]
    with duckdb.connect(str(catalog), read_only=True) as con:
        views = con.execute(
            "SELECT view_name, sql FROM duckdb_views() "
            "WHERE NOT internal AND list_contains(?, view_name)",
            [names],
        ).fetchall()
    folders, months, runs = set(), set(), set()
    for name, sql in views:
        depth = 2 if name == CUSTOMER.name else 3  # customer/<name>.parquet
        for literal in _SQL_STRING.findall(sql or ""):
            text = literal.replace("''", "'")
            if not text.endswith(".parquet"):
                continue
            path = PurePosixPath(text)
            folders.add(Path(path.parents[depth - 1]))
            relative = path.relative_to(path.parents[depth - 1]).as_posix()
            if name == PIPELINE_RUN.name:
                runs.add(relative)
            elif name != CUSTOMER.name and _month_part(relative):
                months.add((name, _month_part(relative)))
    return _Shown(frozenset(folders), frozenset(months), frozenset(runs))


def _month_part(relative: str) -> str:
    """The month of a month file's relative path, as its first day ('' if none)."""
    part = relative.split("/")[1] if relative.count("/") >= 2 else ""
    return f"{part.removeprefix('month=')}-01" if part.startswith("month=") else ""


def _months_text(months: list[str]) -> str:
    """Months (YYYY-MM, sorted) for a message: each of a few, or the count and the range."""
    if len(months) <= 6:
        return ("month " if len(months) == 1 else "months ") + ", ".join(months)
    return f"{len(months)} months from {months[0]} to {months[-1]}"


def _catalog_of(folder: Path) -> Path:
    """The catalog whose data folder ``folder`` is (``<catalog>.d``)."""
    return folder.with_name(folder.name.removesuffix(".d"))


def catalog_sql_version() -> str:
    """A digest of everything besides the state that goes into a published catalog."""
    text = "\x1f".join(
        (sql_text("warehouse_views"), repr(TABLES), repr(PIPELINE_RUN), repr(CUSTOMER))
    )
    text += description_digest()
    return hashlib.sha256((text + CATALOG_STORAGE_VERSION).encode()).hexdigest()


def con_columns(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """Each view of the catalog and its columns, in order."""
    rows = con.sql(
        "SELECT table_name, column_name FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name = 'main' "
        "ORDER BY table_name, column_index"
    ).fetchall()
    columns: dict[str, list[str]] = {}
    for table, column in rows:
        columns.setdefault(table, []).append(column)
    return columns


def _remove_catalog(scratch: Path) -> None:
    scratch.unlink(missing_ok=True)
    scratch.with_name(scratch.name + ".wal").unlink(missing_ok=True)


def _utc_now() -> str:
    return datetime.now(UTC).isoformat()


def _file_safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(text))[:80]


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
