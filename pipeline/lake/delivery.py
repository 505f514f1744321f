"""Judging a month's delivery before anything of it is published: the refusals.

A month is refused, by name and with examples, and nothing of it written, when it has bad
rows (quarantine off), when it is empty in an active history, when it carries more money
or units than a month may, or when its ids are given again in another month of the source
or of the lake. Each refusal is a ``BadInputError``: the other months of an extract go on.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import duckdb

from pipeline.config import Config
from pipeline.errors import BadInputError
from pipeline.lake.partition import (
    ACTIVITIES,
    PAYMENTS,
    Dataset,
    extracted_months,
    month_files,
    read_manifest,
)
from pipeline.months import format_month

_EXAMPLES_PER_PROBLEM = 3
# The most money one month may carry, as the sum of |amount| and as the sum of cost. It
# keeps every figure computed from a year of months exact and inside its type: a
# customer's window value (at most 13 months of revenue or margin, |margin| <= |amount| +
# cost) fits DECIMAL(18, 2) many times over, and the XYZ and concentration figures, which
# square those values in HUGEINT cents, stay below 10^30. A month above it is rejected at
# extract, by name, instead of overflowing later.
MONTH_MONEY_LIMIT = Decimal("100000000000.00")
# The most units one month may carry (their sum), for the same reason: the units metric is
# ranked, windowed and squared in the same types as money.
MONTH_UNITS_LIMIT = 100_000_000_000


def bad_input_message(
    con: duckdb.DuckDBPyConnection,
    label: str,
    month: date,
    problems: dict[str, int],
    ds: Dataset = PAYMENTS,
) -> str:
    total = sum(problems.values())
    lines = [
        f"{label}: month {format_month(month)} has {total} bad row(s); "
        "nothing of this month was written.",
    ]
    lines += [f"  {problem}: {count} row(s)" for problem, count in problems.items()]
    lines.append("examples:")
    for problem in problems:
        examples = con.execute(
            f"select {', '.join('raw_' + c for c in ds.raw_columns)}, source_file "
            f"from staged_{ds.name} where problem = ? "
            f"order by raw_{ds.id} nulls first limit ?",
            [problem, _EXAMPLES_PER_PROBLEM],
        ).fetchall()
        for example in examples:
            values = ", ".join(
                f"{name}={value!r}"
                for name, value in zip(ds.raw_columns, example[:-1], strict=True)
                if value is not None
            )
            lines.append(f"  [{problem}] {values}  ({example[-1]})")
    lines.append(
        "Fix the source, or switch quarantine on (--quarantine or [lake] quarantine = true) "
        "to set the bad rows aside and load the rest."
    )
    return "\n".join(lines)


def refuse_empty_delivery(
    cfg: Config, con: duckdb.DuckDBPyConnection, label: str, month: date, provisional: bool
) -> None:
    """A month without payments is a failed delivery (a header-only or truncated file), not a
    quiet month, when the history says the month is active: the lake already holds payments
    of this month, or of a month between history_start and this one. The first month of the
    history may be empty, and so may any month listed in [checks.volume] accept."""
    good, bad = con.execute(
        "select count(*) filter (problem is null), count(*) filter (problem is not null) "
        "from staged_payments where month is not null"
    ).fetchall()[0]
    name = format_month(month)
    if good or name in cfg.checks.volume.accept:
        return
    # this month first, then the months before it, latest first: the first that has payments
    lake_months = [m for m in extracted_months(cfg.lake.root) if cfg.business.history_start <= m]
    held = (
        (m, read_manifest(cfg.lake.root, m).rows_written)
        for m in sorted((m for m in lake_months if m <= month), reverse=True)
    )
    active, rows = next(((m, rows) for m, rows in held if rows), (None, 0))
    if active is None:
        return
    if active == month:
        active_because = f"the lake holds {rows} payment(s) of {name}, which this would replace"
    else:
        active_because = f"{format_month(active)} has {rows} payment(s) in the lake"
    what = f"no good payments ({bad} bad row(s) set aside)" if bad else "no payments"
    unfinished = (
        " The month has not ended: if its payments have not come in yet, run it later."
        if provisional
        else ""
    )
    raise BadInputError(
        f"{label}: month {name} has {what}, but the history says it is active: "
        f"{active_because}. A month without payments in an active history is a failed "
        "delivery (a header-only, truncated or misdated file), not a quiet month, whatever "
        f"[checks.volume] min_rows says; nothing of this month was written.{unfinished} "
        "Check the source's "
        f"delivery of {name}; if the month really had no payments (the business was closed), "
        f'accept it as empty: add "{name}" to [checks.volume] accept and run it again.'
    )


def check_ids_across_source(
    cfg: Config, con: duckdb.DuckDBPyConnection, label: str, month: date, ds: Dataset = PAYMENTS
) -> None:
    """payment_id is unique across the whole source: a payment of this month must not be
    given again, with other values (its paid_at differs), in another month of the rows read
    (a text source is read whole: every month of it, extracted or not). One semi-join of
    the month's payment_ids with the rows read (a group-by of every row's payment_id, for
    all months at once, costs five times a month's probe)."""
    key, at, money, noun = ds.id, ds.time, ds.money, ds.noun
    count, others = con.execute(
        f"select count(distinct {key}), list(distinct month order by month) "
        f"from judged_{ds.name} semi join ("
        f"    select {key} from staged_{ds.name} where problem is null"
        f") as here using ({key}) "
        "where problem is null and month <> ?",
        [month],
    ).fetchall()[0]
    if not count:
        return
    examples = con.execute(
        f"select distinct {key}, here.{at}, here.{money}, there.month, there.{at}, "
        f"there.{money} "
        f"from staged_{ds.name} as here join judged_{ds.name} as there using ({key}) "
        "where here.problem is null and there.problem is null and there.month <> ? "
        f"order by {key}, there.month, there.{at} limit ?",
        [month, _EXAMPLES_PER_PROBLEM],
    ).fetchall()

    def told(other: date) -> str:
        early = " (before [business] history_start)" if cfg.business.before_start(other) else ""
        return format_month(other) + early

    name = format_month(month)
    lines = [
        f"{label}: month {name} has {count} {noun}(s) whose {key} the source gives again, "
        f"with other values, in month(s) {', '.join(map(told, others))}; {key} is unique "
        "across the source, so nothing of this month was written. Examples:"
    ]
    lines += [
        f"  {pid}: {at} {here_at.isoformat()} {money} {here_amount} in {name}, "
        f"{at} {there_at.isoformat()} {money} {there_amount} in {format_month(other)}"
        for pid, here_at, here_amount, other, there_at, there_amount in examples
    ]
    lines.append(
        f"Fix the source: give each {noun} its own {key}, or remove the row whose date is wrong."
    )
    raise BadInputError("\n".join(lines))


def check_money_limit(
    con: duckdb.DuckDBPyConnection, label: str, month: date, ds: Dataset = PAYMENTS
) -> None:
    if ds is PAYMENTS:
        query = (
            "select coalesce(sum(abs(amount)), 0), coalesce(sum(cost), 0), "
            "coalesce(sum(units), 0) from staged_payments where problem is null"
        )
    else:  # hours are summed, windowed and squared like money (the effort metric)
        query = (
            "select coalesce(sum(hours), 0), coalesce(sum(cost), 0), count(*) "
            "from staged_activities where problem is null"
        )
    amounts, costs, units = con.execute(query).fetchall()[0]
    money_hint = "amounts in the wrong unit (cents as whole currency units) or a broken row"
    for what, total, limit, hint in (
        (
            "hours" if ds is ACTIVITIES else "amounts (|amount|)",
            amounts,
            MONTH_MONEY_LIMIT,
            money_hint,
        ),
        ("costs", costs, MONTH_MONEY_LIMIT, money_hint),
        (
            "activities" if ds is ACTIVITIES else "units",
            units,
            MONTH_UNITS_LIMIT,
            "a units value that is not a count (an id, a code)",
        ),
    ):
        if total > limit:
            raise BadInputError(
                f"{label}: month {format_month(month)}: the sum of its {what} is {total}, above "
                f"the {limit:,} a month may carry (so that a year of sums and their "
                f"squares stay exact); nothing of this month was written. Check the source for "
                f"{hint}."
            )


def check_ids_across_months(
    cfg: Config, con: duckdb.DuckDBPyConnection, label: str, month: date, ds: Dataset = PAYMENTS
) -> tuple[str | None, str | None]:
    """payment_id is unique across the whole source: a payment of this month must not be in
    another month of the lake (its paid_at would differ, so its values do). Only months whose
    payment_id range overlaps this month's are read. Returns this month's range."""
    key, at, money, noun = ds.id, ds.time, ds.money, ds.noun
    low, high = con.execute(
        f"select min({key}), max({key}) from staged_{ds.name} where problem is null"
    ).fetchall()[0]
    if low is None:
        return None, None
    clashes = []
    for other in extracted_months(cfg.lake.root, ds):
        manifest = read_manifest(cfg.lake.root, other, ds)
        if other == month or (
            manifest.payment_id_min is not None
            and (manifest.payment_id_max < low or manifest.payment_id_min > high)
        ):
            continue
        found = con.execute(
            f"select here.{key}, here.{at}, here.{money}, there.{at}, there.{money} "
            f"from staged_{ds.name} as here "
            f"join read_parquet(?) as there using ({key}) "
            f"where here.problem is null order by here.{key} limit ?",
            [month_files(cfg.lake.root, other, ds), _EXAMPLES_PER_PROBLEM],
        ).fetchall()
        clashes += [(other, row) for row in found]
    if clashes:
        months = sorted({format_month(other) for other, _ in clashes})
        lines = [
            f"{label}: month {format_month(month)} has {noun}(s) that the lake already holds "
            f"in month(s) {', '.join(months)}; {key} is unique across the source, so "
            "nothing of this month was written. Examples:"
        ]
        lines += [
            f"  {pid}: {at} {here_at.isoformat()} {money} {here_amount} here, "
            f"{at} {there_at.isoformat()} {money} {there_amount} in {format_month(other)}"
            for other, (pid, here_at, here_amount, there_at, there_amount) in clashes
        ]
        lines.append(
            f"If the source moved these {ds.plural} to this month, re-extract the months they left "
            f"as well, oldest first (tiers backfill --from {min(months + [format_month(month)])} "
            f"--to {max(months + [format_month(month)])}); otherwise fix the source's {key}s."
        )
        raise BadInputError("\n".join(lines))
    return low, high
