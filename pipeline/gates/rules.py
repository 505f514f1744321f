"""The rule vocabulary: a check is one GX expectation with a stable name (``Expect``),
run on a table GX validates as bounded batches (``Subject``); the builders below write
the per-row rules the gates share (not NULL, in a set, between, a share, the run month)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

import pyarrow as pa

SHARE_TOLERANCE = 1e-9  # shares are floating point; the spec compares them within 1e-9


@dataclass(frozen=True)
class Expect:
    """One check: a GX expectation (by type name and arguments) and what it asserts."""

    check: str
    expectation: str  # snake-case GX type, e.g. "expect_column_values_to_not_be_null"
    kwargs: dict[str, Any]
    description: str

    @property
    def columns(self) -> set[str]:
        return {v for k, v in self.kwargs.items() if k in ("column", "column_A", "column_B")}


@dataclass
class Subject:
    """A table GX validates, as bounded batches of (label, rows)."""

    name: str
    expects: list[Expect]
    batches: Callable[[], Iterable[tuple[str, pa.Table]]]
    id_columns: tuple[str, ...] = ()  # shown beside each bad value
    rows_are_examples: bool = False  # a check table: each of its rows breaks the rule
    error: str | None = None  # the data could not be prepared for validation


def not_null(prefix: str, column: str) -> Expect:
    return Expect(
        f"{prefix}.{column}_not_null",
        "expect_column_values_to_not_be_null",
        {"column": column},
        f"{column} is never NULL",
    )


def in_set(prefix: str, column: str, values: Iterable[Any], *, nullable: bool) -> list[Expect]:
    values = list(values)
    shown = ", ".join(map(str, values)) + (", NULL" if nullable else "")
    expects = [
        Expect(
            f"{prefix}.{column}_in_set",
            "expect_column_values_to_be_in_set",
            {"column": column, "value_set": values},
            f"{column} is one of {{{shown}}}",
        )
    ]
    return expects if nullable else [not_null(prefix, column), *expects]


def between(
    prefix: str, name: str, column: str, low: Any, high: Any, text: str, *, strict_max=False
) -> Expect:
    kwargs = {"column": column, "min_value": low}
    if high is not None:
        kwargs |= {"max_value": high, "strict_max": strict_max}
    return Expect(f"{prefix}.{column}_{name}", "expect_column_values_to_be_between", kwargs, text)


def share(prefix: str, column: str) -> Expect:
    return between(
        prefix, "in_range", column, 0, 1 + SHARE_TOLERANCE, f"{column} lies in [0, 1] (within 1e-9)"
    )


def month_is(prefix: str, month: date) -> Expect:
    return Expect(
        f"{prefix}.month_is_run_month",
        "expect_column_values_to_be_in_set",
        {"column": "month", "value_set": [month.isoformat()]},
        f"every row is of month {month.isoformat()}",
    )
