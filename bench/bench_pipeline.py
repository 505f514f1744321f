"""Time the pipeline's steps on the demo sample and on one synthetic month of N payments.

    .venv/bin/python bench/bench_pipeline.py [--payments 1000000] [--customers 50000]

Prints a table: seconds per step (extract, raw gate, compute, output gates, load) and
the gates' share of the month's run. Numbers are wall-clock on this machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import duckdb
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import demo  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.months import format_month, parse_month  # noqa: E402
from pipeline.run import backfill, steps  # noqa: E402

STEPS = [
    ("extract", steps.extract_step),
    ("raw gate", steps.raw_gate_step),
    ("compute", steps.compute_step),
    ("output gates", steps.output_gates_step),
    ("load (+ before-load gate)", steps.load_step),
]


def time_month(config: Path, month: str, run_id: str) -> dict[str, float]:
    cfg, month = load_config(config), parse_month(month)
    seconds = {}
    for name, step in STEPS:
        started = time.perf_counter()
        step(cfg, month, run_id)
        seconds[name] = time.perf_counter() - started
    return seconds


def synthetic_month(folder: Path, payments: int, customers: int) -> Path:
    """One month (2026-01) of ``payments`` rows, as Parquet, generated in DuckDB."""
    con = duckdb.connect()
    con.execute(
        """
        copy (
            select
                'P' || lpad(i::varchar, 10, '0') as payment_id,
                'C' || lpad((floor(pow(random(), 3) * $customers))::bigint::varchar, 7, '0')
                    as customer_id,
                timestamptz '2026-01-01 00:00:00+00'
                    + to_seconds((random() * 2678399)::bigint) as paid_at,
                round((random() * 400 - 20)::decimal(18, 2), 2) as amount,
                'EUR' as currency,
                (random() * 10)::integer as units,
                round((random() * 150)::decimal(18, 2), 2) as cost
            from range($payments) as t(i)
        ) to '{path}' (format parquet)
        """.replace("{path}", str(folder / "payments.parquet")),
        {"payments": payments, "customers": customers},
    )
    con.close()
    config = folder / "tiers.toml"
    config.write_text(
        '[source]\nkind = "parquet"\npath = "payments.parquet"\n'
        '[business]\ntimezone = "UTC"\ncurrency = "EUR"\nhistory_start = "2026-01"\n'
    )
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=50_000)
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "demo"
        folder.mkdir()
        spec = demo.DemoSpec()
        n_demo = demo.write_payments(folder / "payments.csv", spec)
        config = demo.write_config(folder, spec)
        cfg = load_config(config)
        started = time.perf_counter()
        backfill.backfill(cfg, spec.first_month, spec.last_month)
        backfill_seconds = time.perf_counter() - started
        month = format_month(spec.last_month)
        rows.append(
            (f"demo month {month} ({n_demo:,} rows in source)", time_month(config, month, "bench"))
        )

        big = Path(tmp) / "big"
        big.mkdir()
        config = synthetic_month(big, args.payments, args.customers)
        rows.append(
            (f"synthetic month, {args.payments:,} payments", time_month(config, "2026-01", "bench"))
        )

    table = Table(title="Pipeline step timings (seconds, wall clock)")
    table.add_column("case")
    for name, _ in STEPS:
        table.add_column(name, justify="right")
    table.add_column("total", justify="right")
    table.add_column("gates %", justify="right")
    for case, seconds in rows:
        total = sum(seconds.values())
        gates = seconds["raw gate"] + seconds["output gates"]
        table.add_row(
            case,
            *(f"{seconds[n]:.2f}" for n, _ in STEPS),
            f"{total:.2f}",
            f"{100 * gates / total:.0f} %",
        )
    console = Console(width=160)
    console.print(table)
    console.print(f"demo backfill of {spec.months} months (jobs=1): {backfill_seconds:.1f} s")


if __name__ == "__main__":
    main()
