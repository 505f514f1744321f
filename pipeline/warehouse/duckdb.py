"""The DuckDB warehouse (the default): immutable month files and a published catalog.

It keeps each table's month as an immutable Parquet file and publishes a small DuckDB
catalog of views over the current files at the configured path, so that BI tools
reading it never block a load and a load never breaks a reader.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.errors import WarehouseLockedError
from pipeline.files import atomic_write, exclusive_lock, fsync
from pipeline.schema.tables import CUSTOMER, PIPELINE_RUN, REPORTING_TABLES, TABLES, Table
from pipeline.warehouse.catalog import Catalog, State, remove_catalog
from pipeline.warehouse.rows import MonthRows, as_arrow, conform, month_tables, run_row

log = logging.getLogger(__name__)


# How long a writer waits for the one before it (seconds; [warehouse] lock_timeout).
LOCK_TIMEOUT = 600.0
# Superseded month files stay this long, for readers that still hold an older catalog.
KEEP_SUPERSEDED = timedelta(hours=48)
_GLOB_CHARACTERS = set("*?[]{}")


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
        self.catalog = Catalog(self.path, self.data)
        if _GLOB_CHARACTERS & set(str(self.data)):
            raise ValueError(
                f"warehouse path {self.path}: DuckDB reads Parquet paths as glob patterns, so "
                f"the folder cannot contain any of {''.join(sorted(_GLOB_CHARACTERS))}; "
                "choose another warehouse.url"
            )
        self.keep_superseded = keep_superseded
        self.lock_timeout = lock_timeout
        self._pending: State | None = None
        self._created: list[str] = []  # files this write added, removed if it fails

    # writing --------------------------------------------------------------------------

    @contextmanager
    def _writing(self, replacing: date | None = None) -> Iterator[State]:
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
            self.catalog.check_shown(self.catalog.read_shown(), State())
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
                shown = self.catalog.read_shown()  # the catalog this write replaces, under the lock
                state = self._read_state()
                self.catalog.check_shown(shown, state or State())  # before anything is written
                self._pending = state or self._migrate_legacy()
                before = self._pending.to_json()
                yield self._pending
                changed = self._pending.to_json() != before
                if changed:
                    self._pending.generation += 1
                # never hide what readers were shown, but the month this load replaces
                self.catalog.check_shown(shown, self._pending, replacing)
                catalog = self.catalog.build_if_stale(self._pending)
                try:
                    if changed:
                        self._commit(self._pending)
                    committed = True
                    if catalog is not None:
                        self.catalog.install(*catalog)
                finally:
                    if catalog is not None:
                        remove_catalog(catalog[0])
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

    def _commit(self, state: State) -> None:
        atomic_write(self.data / "state.json", state.to_json())

    def _read_state(self) -> State | None:
        try:
            text = (self.data / "state.json").read_text()
        except FileNotFoundError:
            return None
        try:
            return State.from_json(text)
        except (ValueError, TypeError) as exc:
            raise RuntimeError(
                f"warehouse state {self.data / 'state.json'} cannot be read ({exc}); restore it "
                "from a backup or move the warehouse aside and backfill again"
            ) from None

    def _collect_garbage(self, state: State) -> None:
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

    def _migrate_legacy(self) -> State:
        """A new state; the tables of a warehouse file of the one-file layout, if any."""
        state = State()
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
        state = self._read_state() or State()
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


def _utc_now() -> str:
    return datetime.now(UTC).isoformat()


def _file_safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(text))[:80]
