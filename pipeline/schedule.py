"""Which business month an orchestrated run processes, and where its settings come from.

Pure Python (no Airflow, no DuckDB): the DAG in ``dags/`` imports this at parse time.

The monthly DAG runs on ``CronDataIntervalTimetable("0 0 1 * *", timezone=<business zone>)``:
the run that starts at midnight of the 1st of month M+1 processes month M, whose data
interval is [1st of M, 1st of M+1). Airflow gives a run its interval in three ways, and
every one of them maps to the same month here:

* scheduled and backfill runs: the interval is the month itself (logical date = its
  start), so the month is the month of ``data_interval_start`` in the business zone;
* manual runs and ``dag.test()``: Airflow infers the interval from the logical date with
  ``infer_manual_data_interval`` - the last complete month *before* it - so a manual run
  with logical date 2026-03-01 (or 2026-03-17) processes 2026-02, exactly like the
  scheduled run that starts on 2026-03-01;
* a manual run with a zero-width interval (start == end, as ``DataInterval.exact`` makes)
  or none at all (a run triggered without a logical date): we apply the same rule to the
  logical date (or, failing that, to ``run_after``) and process the month BEFORE the one
  it falls in. Taking the month of the date itself instead would make "trigger on the
  2nd" process a month that has barely started, and would disagree with the scheduled
  run of that same day.

An interval that is not exactly one calendar month in the business zone is refused: it
means the DAG's schedule and ``business.timezone`` disagree (a UTC schedule for an Oslo
business shifts every boundary by an hour or two), or someone overrode the interval by
hand. Guessing a month then would load the wrong one silently.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import date, datetime
from zoneinfo import ZoneInfo

from pipeline.months import add_months, format_month

CONFIG_VARIABLE = "tiers_config"  # the Airflow Variable holding the configuration path
CONFIG_ENV = "TIERS_CONFIG"  # the environment variable used when the Variable is unset
TIMEZONE_ENV = "TIERS_TIMEZONE"  # the business time zone the DAG's schedule runs in
DEFAULT_TIMEZONE = "UTC"
_UNSAFE_RUN_ID = re.compile(r"[^A-Za-z0-9._-]+")


class ScheduleError(ValueError):
    """A run's dates do not identify one business month, or no configuration is set."""


def schedule_timezone(environ: Mapping[str, str] | None = None) -> str:
    """The zone the monthly schedule runs in (``TIERS_TIMEZONE``, default UTC)."""
    environ = os.environ if environ is None else environ
    name = (environ.get(TIMEZONE_ENV) or DEFAULT_TIMEZONE).strip()
    try:
        ZoneInfo(name)
    except (KeyError, ValueError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise ScheduleError(
            f"{TIMEZONE_ENV}={name!r} is not an IANA time zone such as 'Europe/Oslo'"
        ) from exc
    return name


def month_for_interval(
    data_interval_start: datetime | None,
    data_interval_end: datetime | None,
    logical_date: datetime | None,
    *,
    run_after: datetime | None = None,
    timezone: str = DEFAULT_TIMEZONE,
) -> str:
    """The business month ('YYYY-MM') a DAG run processes (rules in the module docstring)."""
    zone = ZoneInfo(timezone)
    if data_interval_start is not None and data_interval_end is not None:
        start, end = _local(data_interval_start, zone), _local(data_interval_end, zone)
        if end < start:
            raise ScheduleError(f"data interval ends before it starts: {start} .. {end}")
        if end > start:
            month = start.date().replace(day=1)
            if start != _month_start(month, zone) or end != _month_start(
                add_months(month, 1), zone
            ):
                raise ScheduleError(
                    f"data interval {start.isoformat()} .. {end.isoformat()} is not one calendar "
                    f"month in {timezone}: the DAG must be scheduled monthly in the business "
                    f"time zone (set {TIMEZONE_ENV} to business.timezone)"
                )
            return format_month(month)
    anchor = logical_date if logical_date is not None else run_after
    if anchor is None:
        raise ScheduleError("the run has neither a data interval, a logical date nor run_after")
    return format_month(add_months(_local(anchor, zone).date().replace(day=1), -1))


def check_business_timezone(schedule_zone: str, business_zone: str) -> None:
    """Refuse to run when the DAG's schedule and the configuration disagree on the zone."""
    if schedule_zone != business_zone:
        raise ScheduleError(
            f"the DAG schedules months in {schedule_zone} but business.timezone is "
            f"{business_zone}: set {TIMEZONE_ENV}={business_zone} for every Airflow component"
        )


def config_path(variable_value: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The configuration file: the Airflow Variable if set, else ``TIERS_CONFIG``."""
    environ = os.environ if environ is None else environ
    for value in (variable_value, environ.get(CONFIG_ENV)):
        if value and value.strip():
            return value.strip()
    raise ScheduleError(
        f"no pipeline configuration: set the Airflow Variable {CONFIG_VARIABLE!r} or the "
        f"environment variable {CONFIG_ENV} to the path of the tiers.toml file"
    )


def pipeline_run_id(airflow_run_id: str) -> str:
    """A folder-safe run id derived from the Airflow run id, the same for all its tasks.

    Airflow run ids such as ``scheduled__2026-02-01T00:00:00+00:00`` may hold ':' and '+'
    and, when given by hand, '/' or '..'; the pipeline uses the id as a folder name.
    """
    safe = _UNSAFE_RUN_ID.sub("_", airflow_run_id).strip("._")
    if not safe:
        raise ScheduleError(f"run id {airflow_run_id!r} has no usable characters")
    return safe


def month_start(month: date, timezone: str) -> datetime:
    """Midnight of the 1st of ``month`` in the zone (the month's scheduled interval start)."""
    return _month_start(month, ZoneInfo(timezone))


def backfill_window(first: date, last: date, timezone: str) -> tuple[str, str]:
    """``--from-date`` and ``--to-date`` of ``airflow backfill create`` for months first..last.

    Both are inclusive logical dates, i.e. the 1st of the first and of the last month at
    midnight in the business zone, with the zone's offset: a bare ``2026-01-01`` means UTC
    midnight, which is after the Oslo January run's logical date and would skip it.
    """
    return month_start(first, timezone).isoformat(), month_start(last, timezone).isoformat()


def _month_start(month: date, zone: ZoneInfo) -> datetime:
    return datetime(month.year, month.month, 1, tzinfo=zone)


def _local(moment: datetime, zone: ZoneInfo) -> datetime:
    if moment.tzinfo is None:
        raise ScheduleError(f"{moment.isoformat()} has no time zone; Airflow dates are aware")
    return moment.astimezone(zone)
