"""Which business month an orchestrated run processes, and where its settings come from.

Pure Python (no Airflow, no DuckDB): the DAG in ``dags/`` imports this at parse time.

The monthly DAG runs on ``CronDataIntervalTimetable("0 0 1 * *", timezone=<business zone>)``:
the run that starts at midnight of the 1st of month M+1 processes month M, whose data
interval is [1st of M, 1st of M+1). Which month a run processes:

* scheduled and backfill runs: the month of their data interval (logical date = the
  month's start, midnight of the 1st in the business zone). A ``month`` Param that
  disagrees with it is refused.
* manual runs: the ``month`` Param (YYYY-MM), whatever their dates. Airflow infers a
  manual run's interval from the moment it is triggered, not from the logical date given
  (``airflow dags trigger --logical-date`` processed "last month"), so dates are never
  trusted for manual runs, and a manual run without the Param is refused.
* a manual run must carry no logical date that a scheduled or backfill run needs (the 1st
  of a month at midnight in the business zone): Airflow keeps one run per logical date,
  so such a run makes ``airflow backfill create`` skip that month. It is refused with the
  command to use instead. Trigger without a logical date (REST ``"logical_date": null``,
  the CLI without ``--logical-date``, the UI form with its logical date left empty).

An interval that is not exactly one calendar month in the business zone is refused: it
means the DAG's schedule and ``business.timezone`` disagree (a UTC schedule for an Oslo
business shifts every boundary by an hour or two), or someone overrode the interval by
hand. Guessing a month then would load the wrong one silently.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from zoneinfo import ZoneInfo

from pipeline.errors import ScheduleError
from pipeline.months import add_months, format_month, parse_month

CONFIG_VARIABLE = "tiers_config"  # the Airflow Variable holding the configuration path
CONFIG_ENV = "TIERS_CONFIG"  # the environment variable used when the Variable is unset
TIMEZONE_ENV = "TIERS_TIMEZONE"  # the business time zone the DAG's schedule runs in
DEFAULT_TIMEZONE = "UTC"
MONTH_PARAM = "month"  # the DAG Param naming the business month of a manual run
CASCADE_PARAM = "cascade"  # the DAG Param: also recompute the later months that read it
REPORT_PARAM = "report"  # the DAG Param: draw the month's report (default: see report_due)
MONTH_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"  # JSON-schema pattern of the month Param
DAG_ID = "tiers_monthly"
INTERVAL_RUN_TYPES = ("scheduled", "backfill")  # runs whose month is their data interval
_UNSAFE_RUN_ID = re.compile(r"[^A-Za-z0-9._-]+")


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


def run_month(
    run_type: str,
    month_param: str | None,
    data_interval_start: datetime | None,
    data_interval_end: datetime | None,
    logical_date: datetime | None,
    *,
    timezone: str = DEFAULT_TIMEZONE,
) -> str:
    """The business month ('YYYY-MM') a DAG run processes (rules in the module docstring)."""
    run_type = str(getattr(run_type, "value", run_type))
    month = None
    if month_param is not None and str(month_param).strip():
        try:
            month = format_month(parse_month(str(month_param)))
        except ValueError as exc:
            raise ScheduleError(f"the {MONTH_PARAM} Param {month_param!r}: {exc}") from None
    if run_type in INTERVAL_RUN_TYPES:
        interval_month = month_for_interval(
            data_interval_start, data_interval_end, logical_date, timezone=timezone
        )
        if month is not None and month != interval_month:
            raise ScheduleError(
                f"this {run_type} run processes {interval_month} (its data interval) but its "
                f"{MONTH_PARAM} Param says {month}: drop the Param from the run's conf"
            )
        return interval_month
    if month is None:
        raise ScheduleError(
            f"a manual run needs the {MONTH_PARAM} Param (YYYY-MM): " + trigger_command("YYYY-MM")
        )
    if logical_date is not None and is_month_start(logical_date, timezone):
        taken = format_month(_local(logical_date, ZoneInfo(timezone)).date())
        raise ScheduleError(
            f"this manual run has logical date {logical_date.isoformat()}, the date of the "
            f"scheduled/backfill run of {taken}: Airflow keeps one run per logical date, so "
            f"`airflow backfill create` would skip {taken}. Delete this run and trigger "
            f"without a logical date: {trigger_command(month)}"
        )
    return month


def trigger_command(month: str, *, cascade: bool = False) -> str:
    """The CLI command that runs ``month`` (and, with ``cascade``, the months that read it)."""
    conf = f'"{MONTH_PARAM}": "{month}"' + (f', "{CASCADE_PARAM}": true' if cascade else "")
    return f"airflow dags trigger {DAG_ID} --conf '{{{conf}}}'"


def report_due(
    wanted: bool | None, run_type: str, month: date, next_month_has_run: Callable[[], bool]
) -> tuple[bool, str]:
    """Whether a run draws its month's report, and why (for the task's log).

    The ``report`` Param decides when set (true: draw, false: do not). Otherwise scheduled
    and manual runs draw it, and a backfill run draws it only for the backfill's last
    month: when the DAG has no run for the month after (``airflow backfill create``
    creates every run of its range before any starts, so this does not depend on which
    month finishes first). The pages of the other months are the ones nobody opens; any
    of them can be drawn later from the warehouse with ``tiers report --month``.
    ``next_month_has_run`` is asked only for a backfill run without the Param.
    """
    if wanted is not None:
        return bool(wanted), f"the run's Param {REPORT_PARAM} is {str(bool(wanted)).lower()}"
    if run_type != "backfill":
        return True, f"a {run_type} run draws its month's report"
    if not next_month_has_run():
        return True, "the last month of the backfill"
    later = format_month(add_months(month, 1))
    return False, (
        f"{later} has a run of its own, so {format_month(month)} is not the last month of "
        "the backfill, whose report is drawn for its last month only. Draw this one with "
        f"`tiers report --month {format_month(month)}`, or every month of a backfill with "
        f"`airflow backfill create ... --dag-run-conf '{{\"{REPORT_PARAM}\": true}}'`"
    )


def is_month_start(moment: datetime, timezone: str) -> bool:
    """Whether ``moment`` is midnight of a 1st in the zone (a scheduled run's logical date)."""
    local = _local(moment, ZoneInfo(timezone))
    return (local.day, local.hour, local.minute, local.second, local.microsecond) == (
        1,
        0,
        0,
        0,
        0,
    )


def missing_history_command(config: str, first: date, last: date, timezone: str) -> str:
    """The commands that extract and load months first..last, for an error message."""
    from_date, to_date = backfill_window(first, last, timezone)
    return (
        f"tiers backfill --config {config} --from {format_month(first)} "
        f"--to {format_month(last)}, or in Airflow: airflow backfill create --dag-id {DAG_ID} "
        f"--from-date {from_date} --to-date {to_date}"
    )


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
