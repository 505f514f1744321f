"""Time the quality gates on the demo sample and on one synthetic month of N payments.

    .venv/bin/python bench/bench_gates.py [--payments 1000000] [--customers 50000]

Prints a table: seconds per gate (as each gate's report records it, inside a real
``backfill.run_month``), the gates' total and their share of the month's run. Then the
one-off cost of importing Great Expectations, and the raw gate alone on the synthetic
month for several ``checks.batch_rows`` (each in a fresh process): seconds and peak
resident memory growth. Numbers are wall-clock on this machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_pipeline import synthetic_month  # noqa: E402

from pipeline import demo, gates  # noqa: E402
from pipeline.config import Config, load_config  # noqa: E402
from pipeline.config.sections import ChecksConfig  # noqa: E402
from pipeline.lake.extract import extract_months  # noqa: E402
from pipeline.lake.partition import read_manifest  # noqa: E402
from pipeline.months import add_months, months_between, parse_month  # noqa: E402
from pipeline.run import backfill  # noqa: E402
from pipeline.run.state import run_dir  # noqa: E402

GATES = ("raw", "customer_month", "outputs", "before_load")


def time_month(cfg: Config, month, run_id: str) -> tuple[float, dict[str, float], int]:
    """Run the month through the pipeline; its wall-clock seconds, the gates' and its rows."""
    started = time.perf_counter()
    backfill.run_month(cfg, month, run_id=run_id)
    total = time.perf_counter() - started
    state = json.loads((run_dir(cfg, month, run_id) / "run.json").read_text())
    seconds = {name: state["gates"][name]["seconds"] for name in GATES}
    return total, seconds, read_manifest(cfg.lake.root, month).rows_written


def raw_gate_child(config: str, month: str, batch_rows: int) -> None:
    """Run the raw gate once in this (fresh) process; print its seconds and peak RSS growth."""
    gates.preload_gx()
    before = _peak_rss_kib()
    cfg = load_config(config)
    cfg = cfg.model_copy(update={"checks": ChecksConfig(batch_rows=batch_rows)})
    started = time.perf_counter()
    report = gates.gate_raw(cfg, parse_month(month), Path(config).parent / "memory")
    seconds = time.perf_counter() - started
    assert report.passed, report.summary()
    growth = _peak_rss_kib() - before
    print(json.dumps({"seconds": seconds, "growth_kib": growth}))


def _peak_rss_kib() -> int:
    """This process's peak resident memory (VmHWM; unlike ru_maxrss, not inherited on exec)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])


def raw_gate_memory(config: Path, month: str, batch_rows: int) -> tuple[float, int]:
    done = subprocess.run(
        [sys.executable, __file__, "--raw-gate-child", str(config), month, str(batch_rows)],
        capture_output=True,
        text=True,
        check=True,
    )
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    return measured["seconds"], measured["growth_kib"] * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--raw-gate-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_gate_child:
        config, month, batch_rows = args.raw_gate_child
        return raw_gate_child(config, month, int(batch_rows))

    started = time.perf_counter()
    gates.preload_gx()  # the one-off import, kept out of the gates' numbers
    gx_import = time.perf_counter() - started

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "demo"
        folder.mkdir()
        spec = demo.DemoSpec()
        demo.write_payments(folder / "payments.csv", spec)
        cfg = load_config(demo.write_config(folder, spec))
        month = spec.last_month
        history = months_between(add_months(month, 1 - cfg.segmentation.lookback_months), month)
        for _, outcome in extract_months(cfg, history):
            if isinstance(outcome, Exception):
                raise outcome
        rows.append((f"demo month {month:%Y-%m}", *time_month(cfg, month, "bench")))

        big = Path(tmp) / "big"
        big.mkdir()
        config = synthetic_month(big, args.payments, args.customers)
        first = date(2026, 1, 1)  # the synthetic month
        cfg = load_config(config)
        rows.append((f"synthetic month, {args.payments:,} payments", *time_month(cfg, first, "b")))
        sizes = sorted({100_000, ChecksConfig().batch_rows, args.payments})
        memory = [(n, *raw_gate_memory(config, "2026-01", n)) for n in sizes]

    table = Table(title="Quality gates (seconds, wall clock, GX already imported)")
    for column in ("case", "rows", *GATES, "gates", "month run", "gates %"):
        table.add_column(column, justify="left" if column == "case" else "right")
    for case, total, seconds, n_rows in rows:
        spent = sum(seconds.values())
        table.add_row(
            case,
            f"{n_rows:,}",
            *(f"{seconds[g]:.2f}" for g in GATES),
            f"{spent:.2f}",
            f"{total:.2f}",
            f"{100 * spent / total:.0f} %",
        )
    console = Console(width=150)
    console.print(table)
    console.print(f"import great_expectations (once per process): {gx_import:.1f} s")
    memory_table = Table(
        title=f"Raw gate alone on the synthetic month ({args.payments:,} payments), "
        "one fresh process each"
    )
    for column in ("batch_rows", "seconds", "peak RSS growth"):
        memory_table.add_column(column, justify="right")
    for batch_rows, seconds, growth in memory:
        memory_table.add_row(f"{batch_rows:,}", f"{seconds:.2f}", f"{growth / 2**20:,.0f} MiB")
    console.print(memory_table)


if __name__ == "__main__":
    main()
