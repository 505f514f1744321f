"""A backfill through a real Airflow scheduler against `tiers backfill`, in one run.

    .venv/bin/python bench/bench_airflow.py [--sizes 100k,1m] [--months 6]
        [--parallelism 4] [--rounds 1] [--work /tmp/tiers-bench-airflow]
        [--pg postgresql://postgres@127.0.0.1:5432/postgres] [--no-month | --month-only]
        [--cold]

For each size, on data from ``../shared/perf/gen_data.py`` (``--months`` + 1 months from
2025-01, generated once into ``--work``), starting from an empty lake and warehouse:

* the command line: ``tiers backfill --from <first> --to <last>`` then ``tiers report
  --month <last>`` (the steps the DAG runs, report included: a backfill under Airflow
  draws the report of its last month only, see the README);
* Airflow: ``airflow backfill create`` over the same months through the project's own
  real-scheduler harness (``tests/airflow_server.py``: scheduler, DAG processor and API
  server, LocalExecutor, PostgreSQL metadata database), timed from the command until
  every run is finished (the harness's start-up is not timed, nor one run that fails at
  once before it, which warms the servers as a deployment's are: ``--cold`` skips it);
* then, unless ``--no-month``, one more month (the one after the backfill) as a single
  run, as the schedule would start it: a run through Airflow against ``tiers run`` (and
  ``tiers run`` + ``tiers report``) on the CLI's copy of the same state. With
  ``--month-only``, the backfill is done by the CLI alone and only that month is timed,
  on two copies of the backfilled state, with its own per-task table: twice on the same
  servers, the first run after they start and a second one, warm.

The CLI runs before and after Airflow (a drift of the machine's speed is shared) and the
ratio is against their mean. ``--parallelism`` takes a list (``2,3,4``): one Airflow
backfill per value, alternating with CLI runs, on a fresh copy each. ``--rounds``
repeats the whole comparison. Gates are on (the default of gen_data's configuration).

Prints, per size: wall seconds of each side with the machine's load average when it
ran, the ratio, and the median duration per task over the months (as in issue 22),
with the median wait of a task between its upstream ending and its own start.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
PERF = ROOT.parent / "shared" / "perf"
PYTHON = sys.executable
TIERS = str(Path(PYTHON).with_name("tiers"))
SIZES = {"100k": (100_000, 10_000), "1m": (1_000_000, 100_000)}
FIRST = (2025, 1)
console = Console(width=150)

sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]
from airflow_server import AirflowServer  # noqa: E402


def month(offset: int) -> str:
    index = FIRST[0] * 12 + FIRST[1] - 1 + offset
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def generate(work: Path, size: str, months: int) -> Path:
    data = work / f"{size}-{months}m"
    if not (data / "tiers.toml").exists():
        payments, customers = SIZES[size]
        subprocess.run(
            [PYTHON, str(PERF / "gen_data.py"), "--out", str(data), "--payments", str(payments),
             "--customers", str(customers), "--months", str(months), "--first", month(0)],
            check=True, capture_output=True,
        )  # fmt: skip
    return data


def fresh_copy(data: Path, name: str) -> Path:
    """An empty lake and warehouse over the generated source files."""
    folder = data.parent / f"{data.name}-runs" / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.symlink(data / "src", folder / "src")
    shutil.copy(data / "tiers.toml", folder / "tiers.toml")
    return folder


def tiers(folder: Path, *args: str) -> float:
    started = time.monotonic()
    done = subprocess.run(
        [TIERS, *args, "--config", "tiers.toml"], cwd=folder, capture_output=True, text=True
    )
    took = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"tiers {' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr}")
    return took


def cli_backfill(data: Path, name: str, first: str, last: str) -> dict:
    folder = fresh_copy(data, name)
    at = load()
    backfill = tiers(folder, "backfill", "--from", first, "--to", last)
    report = tiers(folder, "report", "--month", last)
    console.print(
        f"  tiers backfill {first}..{last}: {backfill:.1f} s + tiers report {last}: "
        f"{report:.1f} s ({at})"
    )
    return {"folder": folder, "backfill": backfill, "report": report, "total": backfill + report}


def wait_for(server: AirflowServer, count: int, run_type: str, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [r for r in server.runs() if r["run_type"] == run_type]
        if len(runs) == count and all(r["state"] in ("success", "failed") for r in runs):
            return runs
        time.sleep(0.5)
    raise SystemExit(f"{run_type} runs not finished in {timeout} s:\n{server.logs()}")


def task_times(server: AirflowServer, runs: list[dict]) -> dict[str, dict[str, list[float]]]:
    """Per task: its durations and its waits (start minus the end of its latest upstream)."""
    found: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        tis = server.task_instances(run["dag_run_id"])
        ends = {t: _at(ti["end_date"]) for t, ti in tis.items() if ti.get("end_date")}
        for task, ti in tis.items():
            entry = found.setdefault(task, {"duration": [], "wait": []})
            if ti.get("state") in ("success", "failed") and ti.get("duration") is not None:
                entry["duration"].append(ti["duration"])
            upstream = [ends[u] for u in UPSTREAM.get(task, []) if u in ends]
            if ti.get("state") in ("success", "failed") and ti.get("start_date") and upstream:
                entry["wait"].append((_at(ti["start_date"]) - max(upstream)).total_seconds())
    return found


UPSTREAM: dict[str, list[str]] = {}


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def warm_up(server: AirflowServer, args) -> None:
    """One run that fails at once (a month before history_start: refused in extract,
    nothing written), so that the servers have answered a task before the timing starts.
    The API server's first execution-API request takes 6-7 s (seen in its access log: the
    first ``PATCH /execution/task-instances/...``), and every task that starts meanwhile
    waits for it; a deployment's servers have long paid that. ``--cold`` skips this."""
    if args.cold:
        return
    started = time.monotonic()
    run_id = server.trigger({"month": "2000-01"})
    (run,) = server.wait_for_runs([run_id], timeout=args.timeout).values()
    console.print(f"  warm-up run (refused month 2000-01): {time.monotonic() - started:.1f} s, "
                  f"{run['state']}")  # fmt: skip


def airflow_backfill(data: Path, name: str, first: str, last: str, n: int, args) -> dict:
    folder = fresh_copy(data, name)
    home = folder / "airflow-home"
    env = {
        "TIERS_CONFIG": str(folder / "tiers.toml"),
        "AIRFLOW__CORE__PARALLELISM": str(args.parallelism_value),
    }
    with AirflowServer(home, args.pg, env=env) as server:
        dag = server.api("GET", "/dags/tiers_monthly/tasks")
        UPSTREAM.clear()
        for task in dag["tasks"]:
            for down in task["downstream_task_ids"]:
                UPSTREAM.setdefault(down, []).append(task["task_id"])
        warm_up(server, args)
        at = load()
        started = time.monotonic()
        server.cli(
            "backfill", "create", "--dag-id", "tiers_monthly",
            "--from-date", f"{first}-01T00:00:00+00:00", "--to-date", f"{last}-01T00:00:00+00:00",
        )  # fmt: skip
        runs = wait_for(server, n, "backfill", args.timeout)
        took = time.monotonic() - started
        states = sorted({r["state"] for r in runs})
        console.print(
            f"  airflow backfill create {first}..{last} (parallelism {args.parallelism_value}): "
            f"{took:.1f} s, {len(runs)} runs {states} ({at})"
        )
        result = {"backfill": took, "tasks": task_times(server, runs), "states": states}
        if not args.no_month:
            nxt = month(n)
            at = load()
            started = time.monotonic()
            run_id = server.trigger({"month": nxt})
            (run,) = server.wait_for_runs([run_id], timeout=args.timeout).values()
            result["month"] = time.monotonic() - started
            result["month_state"] = run["state"]
            console.print(f"  airflow run of {nxt}: {result['month']:.1f} s, {run['state']} ({at})")
    return result


def copy_state(folder: Path, name: str) -> Path:
    """A copy of a backfilled folder (lake, warehouse, runs), over the same source files."""
    target = folder.parent / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(folder, target, symlinks=True, ignore=shutil.ignore_patterns("airflow-home"))
    return target


def airflow_month(folder: Path, nxt: str, args) -> dict:
    """One run of month ``nxt`` through the scheduler, on a backfilled folder."""
    env = {
        "TIERS_CONFIG": str(folder / "tiers.toml"),
        "AIRFLOW__CORE__PARALLELISM": str(args.parallelism_value),
    }
    with AirflowServer(folder / "airflow-home", args.pg, env=env) as server:
        result = {}
        # the first run after the servers start pays their warm-up (the API server's first
        # requests: about 6 s before the first task starts its step); a deployment's
        # scheduled month meets servers that have been up for a month: the second run
        for attempt in ("first", "second"):
            at = load()
            started = time.monotonic()
            run_id = server.trigger({"month": nxt})
            (run,) = server.wait_for_runs([run_id], timeout=args.timeout).values()
            took = time.monotonic() - started
            state = run["state"]
            console.print(f"  airflow run of {nxt} ({attempt}): {took:.1f} s, {state} ({at})")
            result[attempt] = {"month": took, "month_state": run["state"]}
            result[attempt]["tasks"] = task_times(server, [run])
        return result


def month_on_cli(folder: Path, nxt: str) -> dict:
    at = load()
    run = tiers(folder, "run", "--month", nxt)
    report = tiers(folder, "report", "--month", nxt)
    console.print(f"  tiers run {nxt}: {run:.1f} s + tiers report: {report:.1f} s ({at})")
    return {"run": run, "report": report}


def print_tasks(size: str, parallelism: int, tasks: dict) -> None:
    table = Table(title=f"{size}: median per task over the months (parallelism {parallelism})")
    for column in ("task", "median", "max", "wait before start (median)", "n"):
        table.add_column(column, justify="right")
    order = [t for t in TASK_ORDER if t in tasks] + sorted(set(tasks) - set(TASK_ORDER))
    for task in order:
        d, w = tasks[task]["duration"], tasks[task]["wait"]
        table.add_row(
            task,
            f"{statistics.median(d):.1f} s" if d else "-",
            f"{max(d):.1f} s" if d else "-",
            f"{statistics.median(w):.1f} s" if w else "-",
            str(len(d)),
        )
    console.print(table)


TASK_ORDER = [
    "extract", "raw_gate", "compute", "output_gates", "load", "report", "publish", "notify",
    "cascade",
]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100k,1m")
    ap.add_argument("--months", type=int, default=6)
    ap.add_argument("--parallelism", default="4")  # as make airflow and docker-compose
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("/tmp/tiers-bench-airflow"))
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--no-month", action="store_true", help="skip the single scheduled month")
    ap.add_argument("--cold", action="store_true", help="no warm-up run before the timed backfill")
    ap.add_argument(
        "--month-only",
        action="store_true",
        help="time only the single month (after a CLI backfill), with its per-task table",
    )
    args = ap.parse_args()
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    n = args.months
    first, last = month(0), month(n - 1)
    summary = Table(title=f"Airflow backfill vs tiers backfill, {first}..{last} ({n} months)")
    for column in ("size", "parallelism", "round", "tiers (mean)", "airflow", "ratio"):
        summary.add_column(column, justify="right")
    months = Table(title=f"One more month ({month(n)}) after the backfill")
    for column in ("size", "parallelism", "tiers run", "+ report", "airflow run", "ratio"):
        months.add_column(column, justify="right")
    for size in args.sizes.split(","):
        data = generate(args.work, size, n + 1)
        for round_ in range(1, args.rounds + 1):
            console.rule(f"{size}, round {round_}")
            if args.month_only:
                state = cli_backfill(data, "state", first, last)["folder"]
                for i, parallelism in enumerate(int(p) for p in args.parallelism.split(",")):
                    args.parallelism_value = parallelism
                    runs = airflow_month(copy_state(state, f"airflow-month-{i}"), month(n), args)
                    one = month_on_cli(copy_state(state, f"cli-month-{i}"), month(n))
                    both = one["run"] + one["report"]
                    for attempt, af in runs.items():
                        months.add_row(
                            f"{size} ({attempt} run)", str(parallelism), f"{one['run']:.1f} s",
                            f"{both:.1f} s", f"{af['month']:.1f} s ({af['month_state']})",
                            f"{af['month'] / one['run']:.2f} / {af['month'] / both:.2f}",
                        )  # fmt: skip
                        print_tasks(f"{size}, {month(n)}, {attempt} run", parallelism, af["tasks"])
                continue
            cli = [cli_backfill(data, "cli-0", first, last)]
            for i, parallelism in enumerate(int(p) for p in args.parallelism.split(",")):
                args.parallelism_value = parallelism
                af = airflow_backfill(data, f"airflow-{parallelism}", first, last, n, args)
                cli.append(cli_backfill(data, f"cli-{i + 1}", first, last))
                mean = (cli[-2]["total"] + cli[-1]["total"]) / 2
                summary.add_row(
                    size, str(parallelism), str(round_),
                    f"{mean:.1f} s", f"{af['backfill']:.1f} s", f"{af['backfill'] / mean:.2f}",
                )  # fmt: skip
                print_tasks(size, parallelism, af["tasks"])
                if not args.no_month:
                    one = month_on_cli(cli[-1]["folder"], month(n))
                    both = one["run"] + one["report"]
                    months.add_row(
                        size, str(parallelism), f"{one['run']:.1f} s", f"{both:.1f} s",
                        f"{af['month']:.1f} s ({af['month_state']})",
                        f"{af['month'] / one['run']:.2f} / {af['month'] / both:.2f}",
                    )  # fmt: skip
    if not args.month_only:
        console.print(summary)
    if not args.no_month:
        console.print(months)
        console.print("ratio: airflow run / tiers run, and / (tiers run + tiers report)")


if __name__ == "__main__":
    main()
