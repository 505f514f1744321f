"""Seeded synthetic service activities beside ``../shared/perf/gen_data.py``'s payments.

    python bench/gen_activities.py --out DIR --activities 1000000 --customers 100000
                                   [--months 13] [--first 2025-01] [--seed 42]

Writes DIR/src-activities/activities-YYYY-MM.parquet (typed: occurred_at TIMESTAMPTZ,
hours and cost DECIMAL(18, 2)) and DIR/tiers-service.toml: DIR/tiers.toml (the payments'
configuration gen_data.py wrote) with a [service] section reading them. Deterministic for
a seed (hash-based random). A few customers eat most of the effort: the customer is
floor(C x u^3) (u uniform), so low customer numbers are served most; kinds ticket, call,
visit, delivery, return; hours 0.25..4.00 in quarter hours, cost = 45 x hours plus travel
or freight for visits, deliveries and returns.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import duckdb


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--activities", type=int, required=True)
    ap.add_argument("--customers", type=int, required=True)
    ap.add_argument("--months", type=int, default=13)
    ap.add_argument("--first", default="2025-01")
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    out = Path(a.out)
    (out / "src-activities").mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    seed = a.seed + 7  # not the payments' draws
    con.execute(
        f"create macro u(x, k) as hash(x, {seed}::bigint, k)::double / 18446744073709551616.0"
    )
    y, m = map(int, a.first.split("-"))
    for k in range(a.months):
        yy, mm = y + (m - 1 + k) // 12, (m - 1 + k) % 12 + 1
        month = f"{yy:04d}-{mm:02d}"
        target = out / "src-activities" / f"activities-{month}.parquet"
        started = time.perf_counter()
        con.execute(
            f"""
            copy (
                with start as (
                    select timestamptz '{month}-01 00:00:00+00' as s,
                           timestamptz '{month}-01 00:00:00+00' + interval 1 month as e
                ),
                drawn as (
                    select
                        i,
                        printf('A%02d%010d', {k}, i) as activity_id,
                        printf('C%08d', floor({a.customers}
                            * pow(u(i + {k} * 10000000000, 1), 3))::bigint) as customer_id,
                        s + to_microseconds(floor(u(i + {k} * 10000000000, 2)
                            * (epoch_us(e) - epoch_us(s)))::bigint) as occurred_at,
                        (['ticket', 'ticket', 'call', 'call', 'visit', 'delivery', 'return'])[
                            1 + floor(u(i + {k} * 10000000000, 3) * 7)::integer] as kind,
                        (1 + floor(u(i + {k} * 10000000000, 4) * 16))::decimal(18, 2) / 4 as hours
                    from range({a.activities}) t(i), start
                )
                select
                    activity_id, customer_id, occurred_at, kind,
                    hours::decimal(18, 2) as hours,
                    (hours * 45 + case kind when 'visit' then 60 when 'delivery' then 25
                        when 'return' then 30 else 0 end)::decimal(18, 2) as cost
                from drawn order by activity_id
            ) to '{target}' (format parquet, compression zstd)
            """
        )
        print(f"{month}: {a.activities} activities, {time.perf_counter() - started:.1f} s")
    config = (out / "tiers.toml").read_text()
    (out / "tiers-service.toml").write_text(
        config + '\n[service]\nkind = "parquet"\npath = "src-activities/*.parquet"\n'
    )


if __name__ == "__main__":
    main()
