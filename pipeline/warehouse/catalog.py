"""The DuckDB warehouse's state and its published catalog.

``state.json`` (``State``) says which file is current for each table and month; the
catalog (``Catalog``) is a DuckDB file of views over exactly those files, plus the BI
views and their descriptions, that BI tools open read-only. A write refuses to publish a
catalog that would hide a month the published one shows (``Shown``): the catalog and
its folder belong together.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path, PurePosixPath

import duckdb

from pipeline.errors import WarehouseLayoutError
from pipeline.files import atomic_write, fsync, fsync_dir
from pipeline.schema.descriptions import comment_statements, description_digest
from pipeline.schema.tables import (
    CUSTOMER,
    DUCKDB_TYPES,
    PIPELINE_RUN,
    REPORTING_TABLES,
    TABLES,
    Table,
)
from pipeline.sql import sql_text

# The catalog is written in the storage format DuckDB 1.0 introduced, so that BI drivers
# that bundle DuckDB 1.x (and 2.x) open it; it holds views only, so the format costs nothing.
CATALOG_STORAGE_VERSION = "v1.0.0"

_STATE_FORMAT = 1


@dataclass
class State:
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
    def from_json(cls, text: str) -> State:
        data = json.loads(text)
        if data.pop("format", None) != _STATE_FORMAT:
            raise ValueError("unknown warehouse state format")
        return cls(**data)


@dataclass(frozen=True)
class Catalog:
    """The catalog published at ``path`` (the file BI tools open) and the data folder
    ``data`` its views read: what it shows, and building and installing a new one."""

    path: Path
    data: Path

    def read_shown(self) -> Shown | None:
        """What the catalog at the warehouse path shows (None when there is none). Read
        from a copy when another connection holds the file (a BI tool that opened it
        read-write, or this process with other settings): a load does not wait for it."""
        if not self.path.exists():
            return None
        try:
            return shown_in(self.path)
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
            return shown_in(copy)

    def check_shown(self, shown: Shown | None, state: State, replacing: date | None = None) -> None:
        """Refuse a write whose catalog would hide a month the published catalog shows (a
        table's month or a run record), naming the catalog, the folders and the fix."""
        hidden = shown.hidden_by(state, replacing) if shown is not None else []
        if not hidden:
            return
        months = months_text(hidden)
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
            beside = f"holds {months_text(held) if held else 'no month'}"
        gone = "" if folder.exists() else f" ({folder} is not there either: restore it)"
        raise WarehouseLayoutError(
            f"warehouse {self.path}: this catalog shows {months} from files in {folder}"
            f"{gone}, but its own folder {self.data} {beside}, so publishing the catalog "
            "again would hide those months from BI tools. A DuckDB warehouse is the catalog "
            f"file and its folder together: to move it, move the folder {folder} with the "
            f"file (to {self.data}), then run `tiers warehouse init` to publish the catalog "
            f"again; or point warehouse.url back at duckdb:///{catalog_of(folder)}. The "
            "warehouse was not changed."
        )

    def digest(self, state: State) -> str:
        """What the published catalog was built from: the state, the views and the folder."""
        held = json.dumps([state.files, state.runs, state.customers], sort_keys=True)
        text = "\x1f".join((held, str(self.data), catalog_sql_version()))
        return hashlib.sha256(text.encode()).hexdigest()

    def build_if_stale(self, state: State) -> tuple[Path, str] | None:
        """A new catalog of ``state`` under a temporary name, and its digest; None when the
        published catalog is current."""
        digest = self.digest(state)
        marker = self.data / "published"
        current = marker.read_text().strip() if marker.exists() else None
        if current == digest and self.path.exists():
            return None
        scratch = self.path.with_name(f".{self.path.name}.{os.getpid()}-{uuid.uuid4().hex}")
        try:
            self.build(state, scratch)
        except BaseException:
            remove_catalog(scratch)
            raise
        return scratch, digest

    def install(self, scratch: Path, digest: str) -> None:
        """Rename the built catalog onto the stable path (after the state's commit)."""
        os.replace(scratch, self.path)  # readers of the old catalog keep their inode
        fsync_dir(self.path.parent)
        with suppress(OSError):  # the write is committed; without the marker the next one
            atomic_write(self.data / "published", digest)  # publishes again, that is all

    def build(self, state: State, scratch: Path) -> None:
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


@dataclass(frozen=True)
class Shown:
    """What a published catalog shows: the folders its views read and, relative to them,
    each table's months and the run records' files."""

    folders: frozenset[Path]
    months: frozenset[tuple[str, str]]  # (table, first day of the month)
    runs: frozenset[str]

    def hidden_by(self, state: State, replacing: date | None = None) -> list[str]:
        """The months (YYYY-MM) shown here that a catalog of ``state`` would not show
        (but in the tables of the month ``replacing``, which its load replaces)."""
        replaced = replacing.isoformat() if replacing is not None else None
        hidden = {
            m for table, m in self.months if m not in state.files.get(table, {}) and m != replaced
        }
        hidden |= {_month_part(run) for run in self.runs - set(state.runs)}
        return sorted(m[:7] for m in hidden if m)


_SQL_STRING = re.compile(r"'((?:[^']|'')*)'")


def shown_in(catalog: Path) -> Shown:
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
    return Shown(frozenset(folders), frozenset(months), frozenset(runs))


def _month_part(relative: str) -> str:
    """The month of a month file's relative path, as its first day ('' if none)."""
    part = relative.split("/")[1] if relative.count("/") >= 2 else ""
    return f"{part.removeprefix('month=')}-01" if part.startswith("month=") else ""


def months_text(months: list[str]) -> str:
    """Months (YYYY-MM, sorted) for a message: each of a few, or the count and the range."""
    if len(months) <= 6:
        return ("month " if len(months) == 1 else "months ") + ", ".join(months)
    return f"{len(months)} months from {months[0]} to {months[-1]}"


def catalog_of(folder: Path) -> Path:
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


def remove_catalog(scratch: Path) -> None:
    scratch.unlink(missing_ok=True)
    scratch.with_name(scratch.name + ".wal").unlink(missing_ok=True)


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
