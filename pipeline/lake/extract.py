"""The extract: read a month from its source into its lake partition.

The source's rows are typed and judged in SQL (sql/staging_*.sql, sql/month_*.sql),
deduplicated, set aside in the quarantine when bad (quarantine on), checked as a month's
delivery (``pipeline/lake/delivery.py``), and published atomically with the tables derived
from them (``pipeline/lake/derived.py``, ``pipeline/lake/publish.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import duckdb
import pyarrow as pa

from pipeline import storage
from pipeline.config import Config
from pipeline.errors import BadInputError, UnfinishedMonthError
from pipeline.lake.delivery import (
    bad_input_message,
    check_ids_across_months,
    check_ids_across_source,
    check_money_limit,
    refuse_empty_delivery,
)
from pipeline.lake.derived import activity_tables, payment_tables
from pipeline.lake.partition import PAYMENTS, Dataset, Manifest, partition_dir
from pipeline.lake.publish import publish_partition, publish_table
from pipeline.months import format_month, month_bounds
from pipeline.sources import SourceRows, open_months
from pipeline.sources.files import csv_parse_error
from pipeline.sql import bounded_connection, run_sql


def extract(
    cfg: Config,
    month: date,
    *,
    quarantine: bool | None = None,
    provisional: bool = False,
    dataset: Dataset = PAYMENTS,
) -> Manifest:
    """Read month ``month`` from the source into its lake partition (atomically)."""
    ((_, outcome),) = extract_months(
        cfg, [month], quarantine=quarantine, provisional=provisional, dataset=dataset
    )
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def extract_months(
    cfg: Config,
    months: list[date],
    *,
    quarantine: bool | None = None,
    provisional: bool = False,
    dataset: Dataset = PAYMENTS,
) -> Iterator[tuple[date, Manifest | BadInputError]]:
    """Extract several months: a text source is read and parsed once for all of them, a
    typed one a month at a time.

    Yields each month with its manifest, or with the BadInputError that stopped it
    (that month's partition is left as it was; the other months go on). A month that has
    not ended in the business time zone is refused unless ``provisional``: then it is
    extracted and its manifest marked provisional.
    """
    months = sorted(months)
    while months and (refused := cfg.business.before_start(months[0])):
        yield months.pop(0), BadInputError(refused)  # without reading the source
    if not months:
        return
    quarantine = cfg.lake.quarantine if quarantine is None else quarantine
    zone = cfg.business.timezone
    config = dataset.source(cfg)
    con = bounded_connection(cfg)
    try:
        source = open_months(con, config, months[0], months[-1], zone)
        # a typed source is judged a month at a time (a year of a big source at once would
        # spill gigabytes); text is parsed once for all months
        by_month = source.reads_by_month and len(months) > 1
        if not by_month:
            _judge(con, cfg, source, dataset)
        for month in months:
            try:
                unfinished = _refuse_unfinished(cfg, month, provisional)
                if by_month:
                    source = open_months(con, config, month, month, zone)
                    _judge(con, cfg, source, dataset)
                run_sql(con, f"month_{dataset.name}", create=f"staged_{dataset.name}", month=month)
                manifest = _extract_month(cfg, con, source, month, quarantine, unfinished, dataset)
                yield month, manifest
            except BadInputError as exc:
                yield month, exc
    except duckdb.InvalidInputException as exc:  # a CSV the parser cannot read is bad input
        raise csv_parse_error(config, exc, BadInputError) from None
    finally:
        con.close()


def _judge(
    con: duckdb.DuckDBPyConnection, cfg: Config, source: SourceRows, dataset: Dataset = PAYMENTS
) -> None:
    """The table ``judged_payments`` (``judged_activities``): the rows of the view
    ``source_rows``, typed and judged."""
    run_sql(
        con,
        f"staging_{dataset.name}",
        create=f"judged_{dataset.name}",
        currency=cfg.business.currency,
        decimal_separator=dataset.source(cfg).decimal_separator,
        has_currency="currency" in source.columns_present,
        has_units="units" in source.columns_present,
        has_cost="cost" in source.columns_present,
        has_hours="hours" in source.columns_present,
    )


def _refuse_unfinished(cfg: Config, month: date, provisional: bool) -> bool:
    """Whether ``month`` is still going; refused (UnfinishedMonthError) unless provisional."""
    end = month_bounds(month, cfg.business.timezone)[1]
    if datetime.now(UTC) >= end:
        return False
    if not provisional:
        raise UnfinishedMonthError(
            f"month {format_month(month)} has not ended in {cfg.business.timezone} (it ends "
            f"{end.isoformat()}): its payments are still coming, so its figures would be "
            "partial; nothing was written. Run it once it has ended, or pass --provisional to "
            "load it now, marked provisional in pipeline_run."
        )
    return True


def _extract_month(
    cfg: Config,
    con: duckdb.DuckDBPyConnection,
    source: SourceRows,
    month: date,
    quarantine: bool,
    provisional: bool = False,
    ds: Dataset = PAYMENTS,
) -> Manifest:
    staged = f"staged_{ds.name}"
    problems = dict(
        con.execute(
            f"select problem, count(*) from {staged} where problem is not null "
            "group by problem order by problem"
        ).fetchall()
    )
    if problems and not quarantine:
        raise BadInputError(bad_input_message(con, source.label, month, problems, ds))

    if ds.refuse_empty:
        refuse_empty_delivery(cfg, con, source.label, month, provisional)
    check_money_limit(con, source.label, month, ds)
    check_ids_across_source(cfg, con, source.label, month, ds)
    id_range = check_ids_across_months(cfg, con, source.label, month, ds)
    good = _good_rows(con, ds)
    _verify(good, con, ds)
    dated_bad, undated_bad = _bad_rows(con, ds, dated=True), _bad_rows(con, ds, dated=False)
    good_read, duplicates, rounded, amount_sum, first_paid, last_paid = con.execute(
        f"""
        select
            coalesce(sum(copies), 0)::bigint,
            coalesce(sum(copies - 1), 0)::bigint,
            coalesce(sum(rounded_copies), 0)::bigint,
            coalesce(sum({ds.money}), 0)::money,
            min({ds.time}), max({ds.time})
        from {staged} where problem is null
        """
    ).fetchall()[0]
    manifest = Manifest(
        month=format_month(month),
        source_kind=ds.source(cfg).kind,
        source=source.label,
        columns_present=list(source.columns_present),
        rows_read=int(good_read) + dated_bad.num_rows + undated_bad.num_rows,
        rows_duplicate=int(duplicates),
        rows_rounded=int(rounded),
        rows_quarantined=dated_bad.num_rows,
        rows_undated=undated_bad.num_rows,
        rows_written=good.num_rows,
        amount_sum=str(amount_sum),
        paid_at_min=_iso_utc(first_paid),
        paid_at_max=_iso_utc(last_paid),
        provisional=provisional,
        payment_id_min=id_range[0],
        payment_id_max=id_range[1],
        fingerprint=_fingerprint(con, ds),
        data_files=[],
        problems=problems,
    )
    derived = payment_tables(con, source) if ds is PAYMENTS else activity_tables(con, source)
    root = storage.location(cfg.lake.root)
    if quarantine:
        quarantined = root / "quarantine" / ds.quarantine if ds.quarantine else root / "quarantine"
        publish_table(quarantined / f"month={format_month(month)}", "bad-rows", dated_bad)
        if undated_bad.num_rows:
            publish_table(quarantined / "undated", "bad-rows", undated_bad)
    publish_partition(
        partition_dir(root, month, ds),
        good,
        derived,
        manifest,
        orphan_grace_seconds=cfg.lake.orphan_grace_seconds,
        lock_timeout=cfg.lake.lock_timeout,
    )
    return manifest


def _good_rows(con: duckdb.DuckDBPyConnection, ds: Dataset = PAYMENTS) -> pa.Table:
    table = con.sql(
        f"select {', '.join(ds.schema.names)} "
        f"from staged_{ds.name} where problem is null order by {ds.id}"
    ).to_arrow_table()
    return table.cast(ds.schema)


def _verify(good: pa.Table, con: duckdb.DuckDBPyConnection, ds: Dataset = PAYMENTS) -> None:
    """The Arrow table holds exactly the distinct good payments DuckDB judged."""
    query = f"select count(*) from staged_{ds.name} where problem is null"
    expected = con.execute(query).fetchall()[0][0]
    if good.num_rows != expected:
        raise RuntimeError(f"lake write check: {good.num_rows} rows staged for {expected} payments")


def _bad_rows(con: duckdb.DuckDBPyConnection, ds: Dataset = PAYMENTS, *, dated: bool) -> pa.Table:
    condition = "month is not null" if dated else "month is null"
    columns = ", ".join(f"raw_{c} as {c}" for c in ds.raw_columns)
    table = con.sql(
        f"select {columns}, problem, source_file from staged_{ds.name} "
        f"where problem is not null and {condition} "
        f"order by source_file, {ds.id}, {ds.time}, {ds.money}, problem"
    ).to_arrow_table()
    return table


def _fingerprint(con: duckdb.DuckDBPyConnection, ds: Dataset = PAYMENTS) -> str:
    """A hash of the month's delivered rows (typed good rows with copies, raw bad rows).

    Order-independent and streaming: the sum of each row's 64-bit hash, not one string of
    the whole month, so a month of any size fits in bounded memory. DuckDB's ``hash`` is
    fixed for a DuckDB version (the lock pins it), and ten times cheaper than an MD5 of
    each row's text.
    """
    if ds is PAYMENTS:
        query = """
        select md5(concat_ws('|', count(*), coalesce(sum(hash(
            payment_id, customer_id, paid_at, amount, currency, units, cost, copies,
            problem, raw_payment_id, raw_paid_at, raw_amount)::hugeint), 0)))
        from staged_payments
        """
    else:
        query = """
        select md5(concat_ws('|', count(*), coalesce(sum(hash(
            activity_id, customer_id, occurred_at, hours, cost, kind, copies,
            problem, raw_activity_id, raw_occurred_at, raw_hours, raw_cost)::hugeint), 0)))
        from staged_activities
        """
    row = con.execute(query).fetchall()[0]
    return row[0]


def _iso_utc(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None
