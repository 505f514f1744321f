"""The steady-state month, side by side with the reference floor and the pandas baseline.

    .venv/bin/python bench/bench_steady_state.py [--sizes 100k,1m] [--runs 3]
        [--work /tmp/tiers-bench] [--backfill] [--later-month] [--jobs 1] [--lake local,s3]

For each size, on data from ``../shared/perf/gen_data.py`` (generated once into
``--work``): months 1-12 are backfilled into the lake and the warehouse (the steady
state users live in), then ``tiers run --month <13th>`` (end to end: extract, gates,
compute, load), ``limit_duckdb.py`` (the raw-DuckDB floor) and ``pandas_baseline.py``
run alternately, ``--runs`` times each, as separate processes. Prints medians, ratios
and each process's peak RSS.

Sizes: ``100k`` (100,000 payments a month, 10,000 customers), ``1m`` (1M / 100k) and
``10m`` (10M / 1M; generating and backfilling it takes about an hour here, so it is
not in the default list).

``--backfill`` also times the 24-month backfill from an empty lake and warehouse
against 24 x the floor's month 24; ``--later-month`` loads months 13..23 and times month
24 against month 13 (the cost of a month must not grow with the warehouse). Both use 24
generated months in ``--work/<size>-24m``, so that the steady state's floor and pandas
read the same 13 files as ever.

``--activities`` adds a [service] source of as many service activities a month as
payments (``bench/gen_activities.py``, Parquet): ``tiers run`` then extracts, checks,
computes and loads both, against the same floor, which reads only the payments (issue 21:
within 3.5x of it at 1M payments plus 1M activities).

``--lake s3`` (or ``local,s3``) puts ``lake.root`` and ``runs.root`` on a local
S3-compatible server (moto in server mode, a dev dependency, on 127.0.0.1), a fresh bucket
each time, with its own warehouse beside the local one; the runs on S3 alternate with the
local ones. On S3 ``tiers run`` is timed twice: with an empty local scratch folder (a worker
that has never read the lake: every file the month reads is downloaded) and with the
scratch the backfill left. The server's CPU time per run is printed: it shares the cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
PERF = ROOT.parent / "shared" / "perf"
PYTHON = sys.executable
TIERS = str(Path(PYTHON).with_name("tiers"))
SIZES = {"100k": (100_000, 10_000), "1m": (1_000_000, 100_000), "10m": (10_000_000, 1_000_000)}
FIRST = (2024, 1)  # 24 months end in 2025-12: every month benchmarked has ended
console = Console(width=150)
CONFIG = ["tiers.toml"]  # tiers-service.toml with --activities


def month(offset: int) -> str:
    """The month ``offset`` months after the first generated one (0 = 2024-01)."""
    index = FIRST[0] * 12 + FIRST[1] - 1 + offset
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


@dataclass
class Measure:
    seconds: float
    peak_mib: float


def timed(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> Measure:
    """Run a command as its own process; wall time and that process's peak RSS."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{stderr[-3000:]}")
    return Measure(seconds, usage.ru_maxrss / 1024)


def generate(folder: Path, payments: int, customers: int, months: int) -> None:
    marker = folder / f".generated-{months}-from-{month(0)}"
    if marker.exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    console.print(f"generating {months} months of {payments:,} payments into {folder}")
    timed(
        [
            PYTHON,
            str(PERF / "gen_data.py"),
            "--out",
            str(folder),
            "--payments",
            str(payments),
            "--customers",
            str(customers),
            "--months",
            str(months),
            "--first",
            month(0),
        ],
        ROOT,
    )
    marker.touch()


def generate_activities(folder: Path, activities: int, customers: int, months: int) -> None:
    marker = folder / f".activities-{months}-from-{month(0)}"
    if marker.exists():
        return
    console.print(f"generating {months} months of {activities:,} activities into {folder}")
    timed(
        [
            PYTHON,
            str(ROOT / "bench" / "gen_activities.py"),
            "--out",
            str(folder),
            "--activities",
            str(activities),
            "--customers",
            str(customers),
            "--months",
            str(months),
            "--first",
            month(0),
        ],
        ROOT,
    )
    marker.touch()


def reset_state(folder: Path) -> None:
    for name in ("lake", "runs", "warehouse.duckdb", "warehouse.duckdb.wal", "warehouse.duckdb.d"):
        for each in (name, name.replace("warehouse", "warehouse-s3")):
            path = folder / each
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(
                missing_ok=True
            )


def backfill(
    folder: Path, first: str, last: str, jobs: int, env: dict[str, str] | None = None
) -> Measure:
    return timed(
        [TIERS, "backfill", "-c", CONFIG[0], "--from", first, "--to", last, "--jobs", str(jobs)],
        folder,
        env,
    )


def tiers_run(folder: Path, the_month: str, env: dict[str, str] | None = None) -> Measure:
    return timed([TIERS, "run", "-c", CONFIG[0], "-m", the_month], folder, env)


def s3_lake(endpoint: str, scratch: Path, warehouse: Path) -> dict[str, str]:
    """The environment of a run with both roots in a fresh bucket of the server at
    ``endpoint``, its local scratch (copies of lake files, spill) in ``scratch`` and its own
    warehouse, so that the local and the S3 state live side by side."""
    sys.path.insert(0, str(ROOT / "tests"))
    from s3_support import new_bucket, s3_environment

    bucket = new_bucket(endpoint)
    scratch.mkdir(parents=True, exist_ok=True)
    return (
        os.environ
        | s3_environment(endpoint)
        | {
            "TIERS__LAKE__ROOT": f"s3://{bucket}/lake",
            "TIERS__RUNS__ROOT": f"s3://{bucket}/runs",
            "TMPDIR": str(scratch),
            "TIERS__WAREHOUSE__URL": f"duckdb:///{warehouse}",
        }
    )


def cpu_seconds(pid: int) -> float:
    """The CPU time a process has used so far (user + system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def floor(folder: Path, the_month: str) -> Measure:
    return timed(
        [
            PYTHON,
            str(PERF / "limit_duckdb.py"),
            "--src",
            "src/*.parquet",
            "--month",
            the_month,
            "--out",
            "limit",
        ],
        folder,
    )


def pandas(folder: Path, the_month: str) -> Measure:
    return timed(
        [
            PYTHON,
            str(PERF / "pandas_baseline.py"),
            "--src",
            "src/*.parquet",
            "--month",
            the_month,
            "--out",
            "pandas",
        ],
        folder,
    )


def median(measures: list[Measure]) -> Measure:
    return Measure(
        statistics.median(m.seconds for m in measures),
        max(m.peak_mib for m in measures),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100k,1m")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/tiers-bench"))
    parser.add_argument("--jobs", type=int, default=1, help="tiers backfill --jobs")
    parser.add_argument("--backfill", action="store_true", help="also time the backfill")
    parser.add_argument("--later-month", action="store_true", help="also time month 24")
    parser.add_argument(
        "--lake", default="local", help="where lake and runs live: local, s3 or local,s3"
    )
    parser.add_argument(
        "--activities",
        action="store_true",
        help="add a [service] source: as many activities a month as payments",
    )
    args = parser.parse_args()
    if args.activities:
        CONFIG[0] = "tiers-service.toml"

    rows, extra, s3_rows = [], [], []
    stack = ExitStack()
    endpoint = None
    if "s3" in args.lake.split(","):
        sys.path.insert(0, str(ROOT / "tests"))
        from s3_support import SERVERS, moto_server

        endpoint = stack.enter_context(moto_server())
        console.print(f"S3-compatible server (moto) at {endpoint}")
    for size in args.sizes.split(","):
        payments, customers = SIZES[size]
        folder = args.work / size
        generate(folder, payments, customers, 13)
        if args.activities:
            generate_activities(folder, payments, customers, 13)
        lakes = args.lake.split(",")
        reset_state(folder)
        if "s3" in lakes:  # its own bucket, scratch and warehouse, beside the local ones
            scratch = Path(tempfile.mkdtemp(prefix="tiers-bench-s3-"))
            env = s3_lake(endpoint, scratch / "backfill", folder / "warehouse-s3.duckdb")
            s3_steady = backfill(folder, month(0), month(11), args.jobs, env)
        if "local" in lakes:
            steady = backfill(folder, month(0), month(11), args.jobs)
        results: dict[str, list[Measure]] = {
            k: [] for k in ("tiers", "floor", "pandas", "cold", "warm")
        }
        server_cpu = []
        for run in range(args.runs):  # alternate A B C ... A B C: load changes hit them all
            if "local" in lakes:
                results["tiers"].append(tiers_run(folder, month(12)))
                results["floor"].append(floor(folder, month(12)))
                results["pandas"].append(pandas(folder, month(12)))
            if "s3" in lakes:
                empty = scratch / f"cold-{run}"
                empty.mkdir()
                before = cpu_seconds(SERVERS[endpoint])
                results["cold"].append(tiers_run(folder, month(12), env | {"TMPDIR": str(empty)}))
                results["warm"].append(tiers_run(folder, month(12), env))
                server_cpu.append((cpu_seconds(SERVERS[endpoint]) - before) / 2)
        if "s3" in lakes:
            cold, warm = median(results["cold"]), median(results["warm"])
            s3_rows.append((size, s3_steady, cold, warm, statistics.median(server_cpu)))
            shutil.rmtree(scratch, ignore_errors=True)
        if "local" not in lakes:
            continue
        tiers, lim, pan = (median(results[k]) for k in ("tiers", "floor", "pandas"))
        rows.append((size, tiers, lim, pan, steady))
        if not (args.backfill or args.later_month):
            continue
        longer = args.work / f"{size}-24m"
        generate(longer, payments, customers, 24)
        if args.activities:
            generate_activities(longer, payments, customers, 24)
        if args.later_month:
            reset_state(longer)
            backfill(longer, month(0), month(11), args.jobs)
            first = median([tiers_run(longer, month(12)) for _ in range(args.runs)])
            backfill(longer, month(13), month(22), args.jobs)
            later = median([tiers_run(longer, month(23)) for _ in range(args.runs)])
            extra.append(
                (
                    f"{size}: month 24 vs month 13 (warehouse holds 23 months)",
                    later.seconds,
                    first.seconds,
                    later.peak_mib,
                )
            )
        if args.backfill:
            reset_state(longer)
            whole = backfill(longer, month(0), month(23), args.jobs)
            floors = [floor(longer, month(23)).seconds for _ in range(args.runs)]
            extra.append(
                (
                    f"{size}: backfill of 24 months from empty vs 24 x floor",
                    whole.seconds,
                    24 * statistics.median(floors),
                    whole.peak_mib,
                )
            )

    table = Table(title=f"tiers run of the steady-state month, median of {args.runs}")
    for column in (
        "case",
        "tiers run",
        "floor",
        "pandas",
        "tiers / floor",
        "pandas / tiers",
        "peak RSS tiers / floor",
    ):
        table.add_column(column, justify="right")
    for size, tiers, lim, pan, _ in rows:
        payments, customers = SIZES[size]
        table.add_row(
            f"{payments:,} payments"
            + (f" + {payments:,} activities" if args.activities else "")
            + f" / {customers:,} customers",
            f"{tiers.seconds:.2f} s",
            f"{lim.seconds:.2f} s",
            f"{pan.seconds:.2f} s",
            f"{tiers.seconds / lim.seconds:.1f}",
            f"{pan.seconds / tiers.seconds:.1f}",
            f"{tiers.peak_mib:,.0f} / {lim.peak_mib:,.0f} MiB",
        )
    console.print(table)
    if extra:
        more = Table(title="Backfill and later months")
        for column in ("case", "seconds", "reference", "ratio", "peak RSS"):
            more.add_column(column, justify="right")
        for label, seconds, reference, peak in extra:
            more.add_row(
                label,
                f"{seconds:.1f}",
                f"{reference:.1f}",
                f"{seconds / reference:.2f}",
                f"{peak:,.0f} MiB",
            )
        console.print(more)
    if s3_rows:
        local = {size: (tiers, steady) for size, tiers, _, _, steady in rows}
        lakes = Table(
            title=f"lake and runs on S3 (moto server) vs local disk, median of {args.runs}"
        )
        for column in ("case", "step", "local disk", "S3", "S3 / local", "peak RSS S3"):
            lakes.add_column(column, justify="right")
        for size, steady, cold, warm, _ in s3_rows:
            payments, customers = SIZES[size]
            on_disk = local.get(size, (None, None))
            for step, measure, reference in (
                ("backfill of months 1-12", steady, on_disk[1]),
                ("tiers run, empty scratch", cold, on_disk[0]),
                ("tiers run, scratch of the backfill", warm, on_disk[0]),
            ):
                lakes.add_row(
                    f"{payments:,} / {customers:,}",
                    step,
                    f"{reference.seconds:.2f} s" if reference else "-",
                    f"{measure.seconds:.2f} s",
                    f"{measure.seconds / reference.seconds:.2f}" if reference else "-",
                    f"{measure.peak_mib:,.0f} MiB",
                )
        console.print(lakes)
        for size, *_, server in s3_rows:
            console.print(
                f"{size}: the S3 server (moto, on the same 2 cores) used {server:.1f} s of CPU "
                "per tiers run of the month"
            )
    stack.close()


if __name__ == "__main__":
    main()
