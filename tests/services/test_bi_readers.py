"""BI tools read the warehouse while `tiers backfill` writes it (issue #12).

Readers and the loader are separate OS processes, as in production: a reader that holds
one connection through the whole backfill, one that reconnects in a loop, and (DuckDB)
one that goes through SQLAlchemy + duckdb-engine as Superset does. Every read must see
whole months; the backfill must succeed; after reconnecting a reader sees the last month.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from pipeline.months import format_month, months_between
from pipeline.run import backfill

from golden import expected_rows
from support import csv_config

pytest_plugins = ["pg_support"]  # fixtures: pg_dsn, pg_schema

REPO = Path(__file__).resolve().parents[2]
CASE, ZONE, START = "full", "Europe/Oslo", "2025-01"
FIRST, LAST = date(2025, 1, 1), date(2025, 12, 1)

# One statement, so one snapshot: rows per month of three tables and the loaded months.
COUNTS_SQL = """
select 'customer_month' as relation, month, count(*) as n from {s}customer_month group by month
union all
select 'customer_segment', month, count(*) from {s}customer_segment group by month
union all
select 'customer_abc', month, count(*) from {s}customer_abc group by month
union all
select 'month_load', month, count(*) from {s}month_load group by month
"""

READER = r"""
import json, sys, time
from pathlib import Path

kind, target, mode, stop, out, schema = sys.argv[1:7]
counts_sql = sys.argv[7].format(s=f'"{schema}".' if kind == "postgres" else "")

def rows(result):
    return sorted([r[0], str(r[1]), int(r[2])] for r in result)

def connect():
    if kind == "postgres":
        import psycopg
        conn = psycopg.connect(target, autocommit=mode != "hold")
        if mode == "hold":  # one snapshot for the whole transaction
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        return conn, lambda: rows(conn.execute(counts_sql).fetchall())
    if mode == "sqlalchemy":
        import sqlalchemy
        engine = sqlalchemy.create_engine(
            f"duckdb:///{target}", connect_args={"read_only": True},
            poolclass=sqlalchemy.pool.NullPool,
        )
        conn = engine.connect()
        return conn, lambda: rows(conn.execute(sqlalchemy.text(counts_sql)).fetchall())
    import duckdb
    conn = duckdb.connect(target, read_only=True)
    return conn, lambda: rows(conn.execute(counts_sql).fetchall())

reads, errors = [], []
conn, query = connect()
reads.append(query())  # PostgreSQL takes the held snapshot here
Path(out + ".ready").touch()
deadline = time.monotonic() + 600
while not Path(stop).exists() and time.monotonic() < deadline:
    try:
        if mode != "hold":
            conn.close()
            conn, query = connect()
        reads.append(query())
    except Exception as exc:  # recorded, the test fails on it
        errors.append(f"{type(exc).__name__}: {exc}")
    time.sleep(0.05)
reads.append(query())  # the held connection at the end of the backfill
conn.close()
conn, query = connect()  # after reconnecting
after = query()
conn.close()
Path(out).write_text(json.dumps({"reads": reads, "errors": errors, "after": after}))
"""


def expected_counts() -> dict[tuple[str, str], int]:
    counts: Counter = Counter()
    for table in ("customer_month", "customer_segment", "customer_abc"):
        for row in expected_rows(CASE, table):
            counts[(table, str(row["month"]))] += 1
    return counts


def assert_whole_months(read: list[list], expected: dict[tuple[str, str], int]) -> set[str]:
    """Every table holds the same months, each with all its rows; returns the months."""
    by_relation: dict[str, dict[str, int]] = {}
    for relation, month, n in read:
        by_relation.setdefault(relation, {})[month] = n
    months = set(by_relation.get("month_load", {}))
    for table in ("customer_month", "customer_segment", "customer_abc"):
        held = by_relation.get(table, {})
        assert set(held) == months, (table, sorted(held), sorted(months))
        for month, n in held.items():
            assert n == expected[(table, month)], (table, month, n)
    return months


def start_readers(tmp_path: Path, kind: str, target: str, modes: list[str], schema: str = ""):
    script = tmp_path / "reader.py"
    script.write_text(READER)
    stop = tmp_path / "stop"
    readers = []
    for mode in modes:
        out = tmp_path / f"reader-{mode}.json"
        process = subprocess.Popen(
            [sys.executable, str(script), kind, target, mode, str(stop), str(out), schema]
            + [COUNTS_SQL],
            cwd=REPO,
        )
        readers.append((mode, process, out))
    deadline = time.monotonic() + 60
    for mode, process, out in readers:
        while not Path(str(out) + ".ready").exists():
            assert process.poll() is None, f"reader {mode} exited early"
            assert time.monotonic() < deadline, f"reader {mode} did not connect"
            time.sleep(0.05)
    return stop, readers


def finish_readers(stop: Path, readers) -> dict[str, dict]:
    stop.touch()
    results = {}
    for mode, process, out in readers:
        assert process.wait(timeout=120) == 0, f"reader {mode} failed"
        results[mode] = json.loads(out.read_text())
    return results


def run_backfill(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "tiers"), "backfill", "--config", str(config)]
        + ["--from", format_month(FIRST), "--to", format_month(LAST)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


def check_reads(results: dict[str, dict], before: set[str]) -> None:
    expected = expected_counts()
    every_month = {str(m) for m in months_between(FIRST, LAST)}
    for mode, result in results.items():
        assert result["errors"] == [], (mode, result["errors"][:3])
        assert len(result["reads"]) >= 2, mode
        seen = [assert_whole_months(read, expected) for read in result["reads"]]
        if mode == "hold":  # one connection: the warehouse as it was when it connected
            assert all(months == before for months in seen), mode
        assert assert_whole_months(result["after"], expected) == every_month, mode


def golden_config(tmp_path: Path, golden: Path, **sections):
    return csv_config(
        tmp_path, golden / CASE / "payments.csv", timezone=ZONE, history_start=START, **sections
    )


@pytest.mark.slow
def test_duckdb_readers_and_a_12_month_backfill_never_get_in_each_others_way(
    golden, tmp_path
) -> None:
    cfg = golden_config(tmp_path, golden)
    assert [r.status for r in backfill.backfill(cfg, date(2025, 1, 1), date(2025, 2, 1))] == [
        "loaded"
    ] * 2
    catalog = cfg.warehouse.url.removeprefix("duckdb:///")
    modes = ["hold", "reconnect", "sqlalchemy"]
    stop, readers = start_readers(tmp_path, "duckdb", catalog, modes)
    try:
        done = run_backfill(tmp_path / "tiers.toml")
    finally:
        results = finish_readers(stop, readers)
    assert done.returncode == 0, done.stdout + done.stderr
    check_reads(results, {"2025-01-01", "2025-02-01"})
    # the loop readers saw the backfill's months arrive one by one
    assert len({len(read) for read in results["reconnect"]["reads"]}) > 1


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_readers_and_a_12_month_backfill_never_get_in_each_others_way(
    golden, tmp_path, pg_dsn, pg_schema
) -> None:
    sections = {"warehouse": {"url": pg_dsn, "schema": pg_schema}}
    cfg = golden_config(tmp_path, golden, **sections)
    assert [r.status for r in backfill.backfill(cfg, date(2025, 1, 1), date(2025, 2, 1))] == [
        "loaded"
    ] * 2
    stop, readers = start_readers(tmp_path, "postgres", pg_dsn, ["hold", "reconnect"], pg_schema)
    try:
        done = run_backfill(tmp_path / "tiers.toml")
    finally:
        results = finish_readers(stop, readers)
    assert done.returncode == 0, done.stdout + done.stderr
    check_reads(results, {"2025-01-01", "2025-02-01"})


def test_the_catalog_is_readable_by_duckdb_1_x_and_describes_everything(golden, tmp_path) -> None:
    import duckdb

    cfg = golden_config(tmp_path, golden)
    assert {r.status for r in backfill.backfill(cfg, date(2025, 1, 1), date(2025, 3, 1))} == {
        "loaded"
    }
    catalog = cfg.warehouse.url.removeprefix("duckdb:///")
    con = duckdb.connect()
    con.execute("ATTACH ? AS warehouse (READ_ONLY)", [catalog])
    tags = con.execute("SELECT tags FROM duckdb_databases() WHERE database_name = 'warehouse'")
    assert tags.fetchone()[0]["storage_version"].startswith("v1.0.0")
    undescribed = con.execute(
        "SELECT table_name, column_name FROM duckdb_columns() "
        "WHERE database_name = 'warehouse' AND (comment IS NULL OR comment = '')"
    ).fetchall()
    assert undescribed == []
    views = con.execute(
        "SELECT view_name FROM duckdb_views() WHERE database_name = 'warehouse' "
        "AND (comment IS NULL OR comment = '')"
    ).fetchall()
    assert views == []
    con.close()
