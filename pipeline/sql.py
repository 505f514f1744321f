"""Running the SQL files of ``sql/`` on DuckDB, with bound parameters only."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import duckdb

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
    con = duckdb.connect(database, config=config)
    con.execute("SET TimeZone = ?", [timezone])
    return con


def parameters_of(text: str) -> set[str]:
    return set(_PARAMETER.findall(_LINE_COMMENT.sub("", text)))


def run_sql(
    con: duckdb.DuckDBPyConnection, name: str, *, create: str | None = None, **params: Any
) -> duckdb.DuckDBPyConnection:
    """Run ``sql/<name>.sql`` with the named parameters it uses.

    With ``create``, the query's result becomes the temporary table of that name.
    """
    text = sql_text(name)
    wanted = parameters_of(text)
    missing = wanted - params.keys()
    if missing:
        raise TypeError(f"sql/{name}.sql needs parameter(s) {sorted(missing)}")
    if create:
        text = f"create or replace temp table {create} as\n{text}"
    return con.execute(text, {key: params[key] for key in wanted})
