"""The gates of a computed month: ``customer_month`` against the month's lake partition
(one row per customer, exact revenue reconciliation, gross_revenue - refunds = revenue),
``outputs`` on the other reporting tables (shares, enumerations, cum_share order, the VIP
count, segments partitioning the population, the roster window, and with a [service]
source the service tables against the activity partition), and ``before_load`` on the
rows about to be loaded (counts as computed, unique keys)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from functools import partial
from pathlib import Path

import duckdb
import pyarrow as pa

import pipeline.gates.data as data
from pipeline.config import Config
from pipeline.gates.engine import disabled, run_gate
from pipeline.gates.results import GateReport
from pipeline.gates.rules import (
    SHARE_TOLERANCE,
    Expect,
    Subject,
    between,
    in_set,
    month_is,
    not_null,
    share,
)
from pipeline.lake.partition import ACTIVITIES, month_files
from pipeline.schema.tables import TABLES, month_tables

SEGMENTS = ("vip", "good", "regular")
MOVEMENTS = ("new_vip", "kept_vip", "dropped_vip")
ALERTS = ("vip_stopped_paying", "vip_dropped", "margin_erosion")
ABC_CLASSES = ("A", "B", "C")
XYZ_CLASSES = ("X", "Y", "Z")
TIERS = (1, 2, 3, 4)
ROSTER_CHANGES = ("added", "removed")
PROFILES = ("best", "good", "troublesome")


def gate_customer_month(
    cfg: Config, month: date, tables: dict[str, data.Rows], out_dir: Path
) -> GateReport:
    """Validate customer_month against the month's lake partition."""
    if not cfg.checks.enabled:
        return disabled("customer_month", month, out_dir)
    started = time.perf_counter()
    files = month_files(cfg.lake.root, month)
    customer_month = data.table(tables, "customer_month")
    prefix = "customer_month"
    columns = Subject(
        "customer_month",
        [
            month_is(prefix, month),
            not_null(prefix, "customer_id"),
            not_null(prefix, "revenue"),
            between(prefix, "not_negative", "payments", 0, None, "payments >= 0"),
            between(prefix, "not_negative", "gross_revenue", 0, None, "gross_revenue >= 0"),
            between(prefix, "not_negative", "refunds", 0, None, "refunds >= 0"),
        ],
        data.batches(customer_month, cfg.checks.batch_rows),
        id_columns=("customer_id",),
    )
    with data.connect(cfg) as con:
        check_table = partial(data.check_table, con, cfg.checks.batch_rows)
        unreadable = data.lake_view(con, files)
        data.register(con, "customer_month", customer_month)
        subjects = [
            columns,
            check_table(
                "duplicate_keys",
                f"{prefix}.one_row_per_customer",
                "one row per (month, customer_id)",
                setup_error=data.keys_view(con, "select month, customer_id from customer_month"),
            ),
            check_table(
                "customer_month_customers_vs_lake",
                f"{prefix}.customers_match_lake",
                "a row for every customer with a payment in the lake partition, none else",
                setup_error=unreadable,
            ),
            check_table(
                "customer_month_revenue_vs_lake",
                f"{prefix}.revenue_matches_lake",
                "sum(revenue) equals the lake partition's sum(amount) exactly",
                setup_error=unreadable,
            ),
            check_table(
                "customer_month_gross_minus_refunds",
                f"{prefix}.gross_minus_refunds_is_revenue",
                "gross_revenue - refunds = revenue on every row, exactly",
            ),
        ]
        return run_gate("customer_month", cfg, month, subjects, out_dir, files, started)


def gate_outputs(
    cfg: Config, month: date, tables: dict[str, data.Rows], out_dir: Path
) -> GateReport:
    """Validate the reporting tables computed for ``month`` (customer_month aside)."""
    if not cfg.checks.enabled:
        return disabled("outputs", month, out_dir)
    started = time.perf_counter()
    seg = cfg.segmentation
    per_table: dict[str, list[Expect]] = {
        "customer_abc": [
            share("outputs.customer_abc", "share"),
            share("outputs.customer_abc", "cum_share"),
            not_null("outputs.customer_abc", "cum_share"),
            *in_set("outputs.customer_abc", "abc_class", ABC_CLASSES, nullable=False),
            *in_set("outputs.customer_abc", "xyz_class", XYZ_CLASSES, nullable=True),
        ],
        "customer_segment": [
            *in_set("outputs.customer_segment", "segment", SEGMENTS, nullable=False),
            *in_set("outputs.customer_segment", "movement", MOVEMENTS, nullable=True),
        ],
        "vip_roster": [
            not_null("outputs.vip_roster", "months_as_vip"),
            between(
                "outputs.vip_roster",
                "in_range",
                "months_as_vip",
                1,
                seg.roster_months,
                f"months_as_vip lies in 1..{seg.roster_months} (roster_months)",
            ),
        ],
        "vip_roster_change": in_set(
            "outputs.vip_roster_change", "change", ROSTER_CHANGES, nullable=False
        ),
        "customer_alert": in_set("outputs.customer_alert", "alert", ALERTS, nullable=False),
        "customer_call": [
            *in_set("outputs.customer_call", "priority", ("call", "watch"), nullable=False),
            not_null("outputs.customer_call", "call_rank"),
            between("outputs.customer_call", "positive", "call_rank", 1, None, "call_rank >= 1"),
            between(
                "outputs.customer_call",
                "in_range",
                "p_alive",
                0,
                1 + SHARE_TOLERANCE,
                "p_alive lies in [0, 1] (NULL without a model)",
            ),
            between(
                "outputs.customer_call",
                "not_negative",
                "value_at_risk",
                0,
                None,
                "value_at_risk >= 0",
            ),
        ],
        "customer_tier": in_set("outputs.customer_tier", "tier", TIERS, nullable=False),
        "pareto_summary": [
            share("outputs.pareto_summary", c) for c in ("top20_share", "top1_share", "hhi")
        ],
        "criteria_overlap": [share("outputs.criteria_overlap", "jaccard")],
    }
    service = cfg.service is not None
    if service:
        per_table |= {
            "customer_service": [
                not_null("outputs.customer_service", "activities"),
                between(
                    "outputs.customer_service", "positive", "activities", 1, None, "activities >= 1"
                ),
                between("outputs.customer_service", "not_negative", "hours", 0, None, "hours >= 0"),
                between(
                    "outputs.customer_service",
                    "not_negative",
                    "cost_to_serve",
                    0,
                    None,
                    "cost_to_serve >= 0",
                ),
            ],
            "customer_service_kind": [
                not_null("outputs.customer_service_kind", "kind"),
                between(
                    "outputs.customer_service_kind",
                    "positive",
                    "activities",
                    1,
                    None,
                    "activities >= 1",
                ),
            ],
            "customer_service_profile": [
                share("outputs.customer_service_profile", "revenue_share"),
                share("outputs.customer_service_profile", "effort_share"),
                *in_set(
                    "outputs.customer_service_profile", "revenue_class", ABC_CLASSES, nullable=True
                ),
                *in_set(
                    "outputs.customer_service_profile", "effort_class", ABC_CLASSES, nullable=True
                ),
                *in_set("outputs.customer_service_profile", "profile", PROFILES, nullable=False),
            ],
        }
    subjects = []
    for name, expects in per_table.items():
        subjects.append(
            Subject(
                name,
                [month_is(f"outputs.{name}", month), *expects],
                data.batches(data.table(tables, name), cfg.checks.batch_rows),
                id_columns=tuple(c for c in TABLES[name].key if c != "month"),
            )
        )
    numerator, denominator = Decimal(seg.vip_share).as_integer_ratio()
    with data.connect(cfg) as con:
        check_table = partial(data.check_table, con, cfg.checks.batch_rows)
        for table in month_tables(service):
            data.register(con, table.name, data.table(tables, table.name))
        if service:
            subjects += _service_checks(cfg, month, con, check_table)
        subjects += [
            check_table(
                "outputs_cum_share_order",
                "outputs.customer_abc.cum_share_monotone",
                "cum_share never decreases with rank within a (metric, window_months)",
            ),
            check_table(
                "outputs_cum_share_ends_at_one",
                "outputs.customer_abc.cum_share_ends_at_one",
                "the last cum_share of each (metric, window_months) is 1 (within 1e-9)",
                share_tolerance=SHARE_TOLERANCE,
            ),
            check_table(
                "outputs_vip_count",
                "outputs.customer_segment.vip_count",
                f"each metric has exactly ceil({seg.vip_share} x N) VIPs, N = its population",
                vip_share_numerator=numerator,
                vip_share_denominator=denominator,
            ),
            check_table(
                "outputs_segment_population",
                "outputs.customer_segment.partitions_population",
                "each customer of a metric's population (value > 0) has exactly one "
                "segment, and nobody else has one",
            ),
        ]
        return run_gate("outputs", cfg, month, subjects, out_dir, list(tables), started)


def _service_checks(
    cfg: Config, month: date, con: duckdb.DuckDBPyConnection, check_table: Callable
) -> list[Subject]:
    """The service tables against the month's activity partition and themselves."""
    unreadable = data.lake_view(con, month_files(cfg.lake.root, month, ACTIVITIES))
    return [
        check_table(
            "outputs_cost_to_serve_vs_lake",
            "outputs.customer_service.matches_lake",
            "customer_service adds up, exactly, to the activity partition: its activities to "
            "the partition's rows, its cost_to_serve to the sum of cost, and every customer "
            "served has a row",
            setup_error=unreadable,
        ),
        check_table(
            "outputs_service_shares_end_at_one",
            "outputs.customer_service_profile.shares_end_at_one",
            "the effort shares and the revenue shares of customer_service_profile each add up "
            "to 1 (within 1e-9), or to 0 when nobody has effort (revenue)",
            share_tolerance=SHARE_TOLERANCE,
        ),
        check_table(
            "outputs_loaded_margin",
            "outputs.customer_tier.loaded_margin_is_margin_minus_cost_to_serve",
            "loaded_margin = margin - cost_to_serve on every row of customer_tier where they are "
            "given, exactly, and the three are given together",
        ),
    ]


def gate_before_load(
    cfg: Config,
    month: date,
    tables: dict[str, data.Rows],
    expected_counts: dict[str, int],
    out_dir: Path,
) -> GateReport:
    """Validate the rows about to be loaded: counts as computed, unique keys."""
    if not cfg.checks.enabled:
        return disabled("before_load", month, out_dir)
    started = time.perf_counter()
    wanted = {t.name for t in month_tables(cfg.service is not None)}
    names = sorted(wanted | set(tables) | set(expected_counts))
    row_counts = pa.table(
        {
            "table_name": names,
            "computed_rows": pa.array([expected_counts.get(n) for n in names], pa.int64()),
            "rows_to_load": pa.array(
                [data.num_rows(tables[n]) if n in tables else None for n in names], pa.int64()
            ),
        }
    )
    with data.connect(cfg) as con:
        check_table = partial(data.check_table, con, cfg.checks.batch_rows)
        con.register("row_counts", row_counts)
        subjects = [
            check_table(
                "before_load_row_counts",
                "before_load.row_counts",
                "every reporting table holds exactly the rows computed for it",
            )
        ]
        for name, table in TABLES.items():
            if name not in tables:
                continue  # before_load.row_counts reports it
            key = ", ".join(table.key)
            data.register(con, "rows_to_load", tables[name])
            subjects.append(
                check_table(
                    "duplicate_keys",
                    f"before_load.{name}.key_unique",
                    f"({key}) is unique",
                    setup_error=data.keys_view(con, f"select {key} from rows_to_load"),
                )
            )
            if table.file_order:  # rows are ordered by other columns than the key
                order = ", ".join(table.row_order)
                subjects.append(
                    check_table(
                        "duplicate_keys",
                        f"before_load.{name}.row_order_unique",
                        f"({order}) is unique, so it orders the rows of the file completely",
                        setup_error=data.keys_view(con, f"select {order} from rows_to_load"),
                    )
                )
        return run_gate("before_load", cfg, month, subjects, out_dir, names, started)
