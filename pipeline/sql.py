"""Running the SQL files of ``sql/`` on DuckDB, with bound parameters only.

Every connection knows the type ``money``: the reporting tables' exact money type
(``schema.tables.DUCKDB_TYPES["money"]``, DECIMAL(18, 2)), which the SQL files cast to
(``::money``). DuckDB resolves the alias when it binds a query, so the results have the
DECIMAL type itself: same tables, same files.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from pipeline.schema.tables import DUCKDB_TYPES

if TYPE_CHECKING:
    from pipeline.config import Config

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
_PARAMETER = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_LINE_COMMENT = re.compile(r"--[^\n]*")


@cache
def sql_text(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


def connect(timezone: str, database: str = ":memory:", **config: Any) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection whose session time zone is the business time zone.

    DuckDB otherwise takes the process's local zone, which would make naive
    timestamps and month boundaries depend on the machine's TZ setting.
    """
    if "temp_directory" in config:  # DuckDB creates the spill folder, not its parents
        Path(config["temp_directory"]).mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(database, config=config)
    con.execute("SET TimeZone = ?", [timezone])
    # no progress bar on stderr: the CLI and Airflow logs show the pipeline's own progress
    con.execute("SET enable_progress_bar = false")
    con.execute(f"CREATE TYPE money AS {DUCKDB_TYPES['money']}")
    return con


def bounded_connection(cfg: Config) -> duckdb.DuckDBPyConnection:
    """A connection for a month's work: the business time zone, DuckDB's memory capped at
    ``lake.memory_limit`` and spilling to ``<lake.root>/.spill`` beyond it (a local
    temporary folder when the lake is on an object store)."""
    from pipeline.storage import scratch

    return connect(
        cfg.business.timezone,
        memory_limit=cfg.lake.memory_limit,
        temp_directory=str(scratch(cfg.lake.root) / ".spill"),
    )


def parameters_of(text: str) -> set[str]:
    return set(_PARAMETER.findall(_LINE_COMMENT.sub("", text)))


def run_sql(
    con: duckdb.DuckDBPyConnection,
    name: str,
    *,
    create: str | None = None,
    inputs: dict[str, str] | None = None,
    **params: Any,
) -> duckdb.DuckDBPyConnection:
    """Run ``sql/<name>.sql`` with the named parameters it uses.

    With ``create``, the query's result becomes the temporary table of that name. With
    ``inputs`` ({relation the file reads: a query}), the file reads those queries in place
    of the tables of those names (as CTEs around it, which shadow tables): one file, such
    as the ranking, serves the payments' metrics and the service effort alike.
    """
    text = sql_text(name)
    wanted = parameters_of(text)
    missing = wanted - params.keys()
    if missing:
        raise TypeError(f"sql/{name}.sql needs parameter(s) {sorted(missing)}")
    if inputs:
        ctes = ",\n".join(f"{relation} as (\n{query}\n)" for relation, query in inputs.items())
        text = f"with {ctes}\nselect * from (\n{text}\n)"
    if create:
        text = f"create or replace temp table {create} as\n{text}"
    return con.execute(text, {key: params[key] for key in wanted})
