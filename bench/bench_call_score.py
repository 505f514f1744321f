"""The call list's scoring alone at a large size: time and peak RSS of ``score_alerted``.

    .venv/bin/python bench/bench_call_score.py [--payments 10000000] [--customers 1000000]
        [--months 12] [--alert-share 0.04] [--work /tmp/tiers-bench-score]

Writes (once, into ``--work``) ``--months`` Parquet files of ``--payments`` payments each,
spread over ``--customers`` customers (lake columns customer_id, paid_at, amount), builds the
months' customer_month_history and a customer_alert of about ``--alert-share`` of the
customers in the last month, then runs ``pipeline.compute.call_score.score_alerted`` on them as the
month's computation does (a connection with ``[lake] memory_limit``'s default of 2GB). Issue
20 asks that at 10M payments / 1M customers the scoring completes with a peak RSS under 4 GiB.
Prints the set-up and scoring seconds, the alerted customers and the process's peak RSS
before and after the scoring.
"""

from __future__ import annotations

import argparse
import resource
import time
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipeline.compute.call_score import score_alerted
from pipeline.config.sections import CallListConfig, LakeConfig
from pipeline.sql import connect


def peak_mib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def generate(folder: Path, months: int, payments: int, customers: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    con = connect("UTC")
    files = []
    for m in range(1, months + 1):
        path = folder / f"payments-2025-{m:02d}.parquet"
        files.append(str(path))
        if path.exists():
            continue
        con.execute(
            f"""copy (
                select
                    'c' || lpad((hash(i * 7 + {m}) % {customers})::varchar, 8, '0')
                        as customer_id,
                    timestamptz '2025-{m:02d}-01 00:00:00+00'
                        + to_seconds((hash(i * 13 + {m}) % (28 * 86400))::bigint) as paid_at,
                    ((hash(i * 17 + {m}) % 20000) / 100 + 1)::decimal(18, 2) as amount
                from range({payments}) as t(i)
            ) to '{path}' (format parquet)"""
        )
    con.close()
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--alert-share", type=float, default=0.04)
    parser.add_argument("--work", type=Path, default=Path("/tmp/tiers-bench-score"))
    args = parser.parse_args()
    month = date(2025, args.months, 1)
    folder = args.work / f"{args.payments}-{args.customers}-{args.months}"
    files = generate(folder, args.months, args.payments, args.customers)

    started = time.perf_counter()
    con = connect(
        "UTC", memory_limit=LakeConfig().memory_limit, temp_directory=str(folder / ".spill")
    )
    con.execute(
        f"""create temp table customer_month_history as
        select customer_id, date_trunc('month', paid_at)::date as month,
            sum(amount) as revenue, count(*)::decimal(18, 2) as payments,
            null::decimal(18, 2) as units, null::decimal(18, 2) as margin
        from read_parquet({files!r}) group by all"""
    )
    every = max(round(1 / args.alert_share), 1)
    con.execute(
        f"""create temp table customer_alert as
        select ?::date as month, 'revenue' as metric, customer_id, 'vip_dropped' as alert
        from (select distinct customer_id from customer_month_history)
        where hash(customer_id) % {every} = 0""",
        [month],
    )
    alerts = con.execute("select count(*) from customer_alert").fetchall()[0][0]
    set_up, rss_before = time.perf_counter() - started, peak_mib()

    started = time.perf_counter()
    params = {"month": month, "horizon_months": CallListConfig().horizon_months}
    score_alerted(con, files, params, CallListConfig().fit_customers)
    scoring = time.perf_counter() - started
    scored = con.execute("select count(*) from customer_risk").fetchall()[0][0]
    con.close()

    table = Table(title=f"score_alerted, {args.months} months of {args.payments:,} payments")
    for column in ("customers", "alerted", "scored", "set-up", "scoring", "peak RSS (MiB)"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{args.customers:,}",
        f"{alerts:,}",
        f"{scored:,}",
        f"{set_up:.1f} s",
        f"{scoring:.1f} s",
        f"{rss_before:,} before, {peak_mib():,} after",
    )
    Console().print(table)


if __name__ == "__main__":
    main()
