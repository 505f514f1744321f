"""Peak memory and time of reading one large month from a PostgreSQL source.

Generates ``--rows`` payments of February 2026 (Europe/Oslo), plus payments of the
neighbouring months and payments without a paid_at, in a PostgreSQL table with
generate_series; then measures each mode in a fresh process (peak RSS from
resource.getrusage):

* ``stream``: pipeline.sources.postgres.read_source_month, aggregated by DuckDB (count and
  exact sum of the amounts): what the extract's read costs;
* ``materialize``: the same relation read into one Arrow table, for comparison: what
  reading the month without streaming would hold;
* ``extract``: the pipeline's whole extract of the month (pipeline.lake.extract.extract:
  staging SQL, checks, Parquet partition).

    .venv/bin/python bench/bench_postgres_source.py --rows 2000000
    .venv/bin/python bench/bench_postgres_source.py --rows 1000000 --modes stream --json

The table lives in a new schema that is dropped afterwards (unless ``--keep``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
MONTH = date(2026, 2, 1)
TIMEZONE = "Europe/Oslo"
# Rows outside the month (half before, half after) and rows without paid_at.
OTHER_MONTH_ROWS = 10_000
UNDATED_ROWS = 100


def create_month_table(dsn: str, schema: str, rows: int) -> dict[str, str | int]:
    """The payments table; returns what a read of MONTH must find (count, exact sum)."""
    import psycopg
    from psycopg import sql

    table = sql.Identifier(schema, "payments")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (payment_id text, customer_id text, paid_at timestamptz, "
                "amount numeric(18,2), currency text)"
            ).format(table)
        )
        # February 2026 in Oslo is [2026-01-31 23:00Z, 2026-02-28 23:00Z): 2,419,200 s.
        conn.execute(
            sql.SQL(
                "INSERT INTO {} SELECT 'P' || lpad(g::text, 10, '0'), 'C' || (g %% 50000), "
                "timestamptz '2026-01-31 23:00:00+00' + (g %% 2419200) * interval '1 second', "
                "((g %% 100000) - 5000) / 100.0, 'EUR' FROM generate_series(1, %s) AS g"
            ).format(table),
            [rows],
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} SELECT 'X' || g, 'C' || (g %% 50), "
                "CASE WHEN g %% 2 = 0 THEN timestamptz '2026-01-31 22:59:59+00' "
                "ELSE timestamptz '2026-02-28 23:00:00+00' END, 1.00, 'EUR' "
                "FROM generate_series(1, %s) AS g"
            ).format(table),
            [OTHER_MONTH_ROWS],
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} SELECT 'U' || g, 'C1', NULL, 2.00, 'EUR' "
                "FROM generate_series(1, %s) AS g"
            ).format(table),
            [UNDATED_ROWS],
        )
        conn.execute(sql.SQL("ANALYZE {}").format(table))
        count, total = conn.execute(
            sql.SQL(
                "SELECT count(*), sum(amount)::text FROM {} WHERE paid_at IS NULL "
                "OR (paid_at >= timestamptz '2026-01-31 23:00:00+00' "
                "AND paid_at < timestamptz '2026-02-28 23:00:00+00')"
            ).format(table)
        ).fetchone()
    return {"table": f"{schema}.payments", "expected_rows": count, "expected_sum": total}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(mode: str, dsn: str, table: str) -> dict[str, object]:
    """One measurement, in this process (run it in a fresh one)."""
    import duckdb
    import pyarrow as pa

    from pipeline.config import Config
    from pipeline.config.sections import SourceConfig
    from pipeline.sources.postgres import read_source_month
    from pipeline.sql import connect

    source = SourceConfig(kind="postgres", dsn=dsn, table=table)
    con = connect(TIMEZONE)
    pa.table({"warm": [1]})  # load Arrow's compute kernels before the baseline
    duckdb.sql("SELECT 1").fetchall()
    baseline = _peak_mb()
    started = time.perf_counter()
    result: dict[str, object] = {"mode": mode}
    if mode == "stream":
        relation, _ = read_source_month(con, source, MONTH, MONTH, TIMEZONE)
        [(count, total)] = relation.aggregate(
            "count(*), sum(CAST(amount AS DECIMAL(18, 2)))::VARCHAR"
        ).fetchall()
        result |= {"rows": count, "sum": total}
    elif mode == "materialize":
        relation, _ = read_source_month(con, source, MONTH, MONTH, TIMEZONE)
        data = relation.to_arrow_table()
        result |= {"rows": data.num_rows, "arrow_mb": round(data.nbytes / 2**20, 1)}
    elif mode == "extract":
        from pipeline.lake.extract import extract

        with tempfile.TemporaryDirectory() as lake:
            cfg = Config.model_validate(
                {
                    "source": source.model_dump(),
                    "business": {"timezone": TIMEZONE, "history_start": "2025-01"},
                    "lake": {"root": lake},
                }
            )
            manifest = extract(cfg, MONTH, quarantine=True)  # the undated rows go aside
            result |= {
                "rows": manifest.rows_read - manifest.rows_undated,
                "rows_undated": manifest.rows_undated,
                "sum": manifest.amount_sum,
            }
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    result |= {
        "seconds": round(time.perf_counter() - started, 2),
        "baseline_rss_mb": round(baseline, 1),
        "peak_rss_mb": round(_peak_mb(), 1),
    }
    result["growth_mb"] = round(result["peak_rss_mb"] - baseline, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--modes", default="stream,materialize,extract")
    parser.add_argument("--schema", help="schema to create the table in (default: a new one)")
    parser.add_argument("--keep", action="store_true", help="keep the schema afterwards")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--table", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.measure:
        print(json.dumps(measure(args.measure, args.dsn, args.table)))
        return

    import psycopg
    from psycopg import sql

    schema = args.schema or f"bench_pg_source_{uuid.uuid4().hex[:8]}"
    try:
        setup_started = time.perf_counter()
        expected = create_month_table(args.dsn, schema, args.rows)
        report = {
            "rows_generated": args.rows,
            "setup_seconds": round(time.perf_counter() - setup_started, 1),
            **expected,
            "measurements": [],
        }
        for mode in args.modes.split(","):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--measure",
                    mode,
                    "--dsn",
                    args.dsn,
                    "--table",
                    expected["table"],
                ],
                capture_output=True,
                text=True,
            )
            if out.returncode != 0:
                raise SystemExit(f"{mode} failed:\n{out.stderr}")
            report["measurements"].append(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        if not args.keep:
            with psycopg.connect(args.dsn, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )
    if args.json:
        print(json.dumps(report))
        return
    print(
        f"{args.rows:,} generated rows; month {MONTH:%Y-%m} ({TIMEZONE}) should read "
        f"{report['expected_rows']:,} rows summing to {report['expected_sum']}"
    )
    for m in report["measurements"]:
        extra = f", Arrow table {m['arrow_mb']} MB" if "arrow_mb" in m else ""
        print(
            f"  {m['mode']:<12} rows {m['rows']:>10,}  {m['seconds']:>6} s  "
            f"peak RSS {m['peak_rss_mb']} MB (baseline {m['baseline_rss_mb']} MB, "
            f"+{m['growth_mb']} MB){extra}"
        )


if __name__ == "__main__":
    main()
