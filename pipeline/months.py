"""Calendar months in the business time zone.

A month is represented by the DATE of its first day (as the spec writes it).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})(?:-01)?$")
# A month's computation reads up to two years around it (its lookback, the next month's
# start): months nearer to the calendar's ends (year 1, year 9999) cannot be dates then.
FIRST_MONTH, LAST_MONTH = date(3, 1, 1), date(9997, 12, 1)


def parse_month(text: str | date) -> date:
    """'2026-03' (or '2026-03-01', or a date) -> date(2026, 3, 1)."""
    if isinstance(text, date):
        month = text.replace(day=1)
    else:
        match = _MONTH_RE.match(str(text).strip())
        if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) == 0:
            raise ValueError(f"not a month: {text!r} (expected YYYY-MM)")
        month = date(int(match.group(1)), int(match.group(2)), 1)
    if not FIRST_MONTH <= month <= LAST_MONTH:
        raise ValueError(
            f"month {format_month(month)} is out of range: tiers handles months from "
            f"{format_month(FIRST_MONTH)} to {format_month(LAST_MONTH)}; check the month "
            "(a typo in the year?)"
        )
    return month


def format_month(month: date) -> str:
    return f"{month.year:04d}-{month.month:02d}"


def add_months(month: date, n: int) -> date:
    index = month.year * 12 + (month.month - 1) + n
    return date(index // 12, index % 12 + 1, 1)


def months_between(first: date, last: date) -> list[date]:
    """Every month from first to last, both included (empty if last < first)."""
    out, current = [], parse_month(first)
    last = parse_month(last)
    while current <= last:
        out.append(current)
        current = add_months(current, 1)
    return out


def month_bounds(month: date, timezone: str) -> tuple[datetime, datetime]:
    """[start, end) of the calendar month in the business time zone, as aware datetimes."""
    tz = ZoneInfo(timezone)
    start = datetime(month.year, month.month, 1, tzinfo=tz)
    nxt = add_months(month, 1)
    return start, datetime(nxt.year, nxt.month, 1, tzinfo=tz)
