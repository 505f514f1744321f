"""Quality gates: Great Expectations suites, defined in code, that stop a bad month.

Four gates run in a month's pipeline (``pipeline.runner``):

* ``raw``: the month's lake partition (schema, required values, paid_at inside the
  month, currency, signs, row count and exact amount sum against the manifest);
* ``customer_month``: customer_month against the lake partition (one row per customer,
  exact revenue reconciliation, gross_revenue - refunds = revenue);
* ``outputs``: the other reporting tables (shares, enumerations, cum_share order, the
  VIP count, segments partitioning the population, the roster window);
* ``before_load``: the rows about to be loaded (counts as computed, unique keys).

Every check is one GX expectation with a stable name (``raw.payment_id_unique``) and a
severity from ``[checks.severity]`` ("error" unless configured "warning"). GX validates
pandas DataFrames (it cannot validate DuckDB through SQLAlchemy): per-row rules run as
column expectations on the data itself, in batches of ``checks.batch_rows`` rows, and
each of them holds for a table exactly when it holds for every batch. GX first validates
the few rows that decide them (each column's min, max, first NULL and NaN, and enough of
its distinct values; ``_deciding_rows``), and every row only when one of those fails, for
exact counts and examples: a clean million-row month costs milliseconds, not seconds.
Rules across rows (uniqueness, reconciliations, orderings, counts per group) are "rows
that break the rule" queries in ``sql/checks/``, computed by DuckDB over the Parquet files
or the Arrow tables; GX then expects their check table to be empty. Money never reaches GX as a
number to compare: exact sums are decided in DuckDB, and decimal columns are handed to
GX as float only for sign and range checks, which that conversion cannot change.

Each gate writes GX's validation results as JSON and a readable HTML page into
``<out_dir>/gates/``. GX takes seconds to import, so it is imported on first use (or in
the background by ``warm_up()``), once per process, never when this module is imported.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date
from decimal import Decimal
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import gx_report
from pipeline.config import (
    CANONICAL_COLUMNS,
    REQUIRED_COLUMNS,
    SERVICE_COLUMNS,
    SERVICE_REQUIRED_COLUMNS,
    Config,
)
from pipeline.errors import GateFailed
from pipeline.lake.partition import (
    ACTIVITIES,
    PAYMENTS_SCHEMA,
    derived_file,
    extracted_months,
    month_files,
    read_manifest,
)
from pipeline.months import format_month, month_bounds, parse_month
from pipeline.schema import TABLES, month_tables
from pipeline.sql import bounded_connection, run_sql

EXAMPLES = 5  # bad values or rows kept per check
SHARE_TOLERANCE = 1e-9  # shares are floating point; the spec compares them within 1e-9
SEGMENTS = ("vip", "good", "regular")
MOVEMENTS = ("new_vip", "kept_vip", "dropped_vip")
ALERTS = ("vip_stopped_paying", "vip_dropped", "margin_erosion")
ABC_CLASSES = ("A", "B", "C")
XYZ_CLASSES = ("X", "Y", "Z")
TIERS = (1, 2, 3, 4)
ROSTER_CHANGES = ("added", "removed")
PROFILES = ("best", "good", "troublesome")


# -- results ---------------------------------------------------------------------------


@dataclass
class CheckResult:
    check: str  # stable name, e.g. "raw.payment_id_unique"
    expectation: str  # the GX expectation type, e.g. "expect_table_row_count_to_equal"
    severity: str  # "error" | "warning"
    success: bool
    unexpected_count: int = 0
    examples: list = field(default_factory=list)  # up to EXAMPLES bad values or rows
    detail: str = ""


@dataclass
class GateReport:
    gate: str
    month: str  # YYYY-MM
    results: list[CheckResult]
    files: list[str]  # the report files written (JSON, HTML)
    inputs: list[str] = field(default_factory=list)  # what was validated
    enabled: bool = True
    seconds: float = 0.0

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if not r.success and r.severity == "error"]

    @property
    def warned(self) -> list[CheckResult]:
        return [r for r in self.results if not r.success and r.severity == "warning"]

    @property
    def passed(self) -> bool:
        return not self.failed

    @property
    def n_passed(self) -> int:
        return sum(r.success for r in self.results)

    @property
    def n_failed(self) -> int:
        return len(self.failed)

    @property
    def n_warned(self) -> int:
        return len(self.warned)

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "month": self.month,
            "passed": self.passed,
            "enabled": self.enabled,
            "n_passed": self.n_passed,
            "n_failed": self.n_failed,
            "n_warned": self.n_warned,
            "seconds": round(self.seconds, 3),
            "inputs": list(self.inputs),
            "files": list(self.files),
            "results": [asdict(r) for r in self.results],
        }

    def summary(self) -> str:
        if not self.enabled:
            return f"gate {self.gate} {self.month}: checks disabled ([checks] enabled = false)"
        status = "passed" if self.passed else "FAILED"
        lines = [
            f"gate {self.gate} {self.month}: {status} - {self.n_passed} passed, "
            f"{self.n_failed} failed, {self.n_warned} warning(s) of {len(self.results)} checks"
        ]
        for result in self.failed + self.warned:
            label = "FAILED " if result.severity == "error" else "WARNING"
            lines.append(f"  {label} {result.check} ({result.expectation}): {result.detail}")
            lines += [f"          e.g. {gx_report.brief(example)}" for example in result.examples]
        if self.files:
            lines.append(f"  report: {self.files[-1]}")
        return "\n".join(lines)


def raise_if_failed(report: GateReport) -> None:
    if not report.passed:
        raise GateFailed(report)


# -- what GX validates -----------------------------------------------------------------


@dataclass(frozen=True)
class _Expect:
    """One check: a GX expectation (by type name and arguments) and what it asserts."""

    check: str
    expectation: str  # snake-case GX type, e.g. "expect_column_values_to_not_be_null"
    kwargs: dict[str, Any]
    description: str

    @property
    def columns(self) -> set[str]:
        return {v for k, v in self.kwargs.items() if k in ("column", "column_A", "column_B")}


@dataclass
class _Subject:
    """A table GX validates, as bounded batches of (label, rows)."""

    name: str
    expects: list[_Expect]
    batches: Callable[[], Iterable[tuple[str, pa.Table]]]
    id_columns: tuple[str, ...] = ()  # shown beside each bad value
    rows_are_examples: bool = False  # a check table: each of its rows breaks the rule
    error: str | None = None  # the data could not be prepared for validation


def _not_null(prefix: str, column: str) -> _Expect:
    return _Expect(
        f"{prefix}.{column}_not_null",
        "expect_column_values_to_not_be_null",
        {"column": column},
        f"{column} is never NULL",
    )


def _in_set(prefix: str, column: str, values: Iterable[Any], *, nullable: bool) -> list[_Expect]:
    values = list(values)
    shown = ", ".join(map(str, values)) + (", NULL" if nullable else "")
    expects = [
        _Expect(
            f"{prefix}.{column}_in_set",
            "expect_column_values_to_be_in_set",
            {"column": column, "value_set": values},
            f"{column} is one of {{{shown}}}",
        )
    ]
    return expects if nullable else [_not_null(prefix, column), *expects]


def _between(
    prefix: str, name: str, column: str, low: Any, high: Any, text: str, *, strict_max=False
) -> _Expect:
    kwargs = {"column": column, "min_value": low}
    if high is not None:
        kwargs |= {"max_value": high, "strict_max": strict_max}
    return _Expect(f"{prefix}.{column}_{name}", "expect_column_values_to_be_between", kwargs, text)


def _share(prefix: str, column: str) -> _Expect:
    return _between(
        prefix, "in_range", column, 0, 1 + SHARE_TOLERANCE, f"{column} lies in [0, 1] (within 1e-9)"
    )


def _month_is(prefix: str, month: date) -> _Expect:
    return _Expect(
        f"{prefix}.month_is_run_month",
        "expect_column_values_to_be_in_set",
        {"column": "month", "value_set": [month.isoformat()]},
        f"every row is of month {month.isoformat()}",
    )


# -- the gates -------------------------------------------------------------------------


def gate_raw(cfg: Config, month: date, out_dir: Path) -> GateReport:
    """Validate the lake partition of ``month`` against the canonical schema and its manifest."""
    month = parse_month(month)
    if not cfg.checks.enabled:
        return _disabled("raw", month, out_dir)
    started = time.perf_counter()
    manifest = read_manifest(cfg.lake.root, month)
    files = month_files(cfg.lake.root, month)
    start, end = (b.astimezone(UTC) for b in month_bounds(month, cfg.business.timezone))
    expected = {f.name: f.type for f in PAYMENTS_SCHEMA}
    present = set(REQUIRED_COLUMNS) | set(manifest.columns_present) | {"month"}

    columns = _Subject(
        "lake file columns",
        [
            _Expect(
                "raw.columns",
                "expect_table_columns_to_match_set",
                {"column_set": list(expected), "exact_match": True},
                f"every lake file has exactly the columns {', '.join(expected)}",
            )
        ],
        lambda: ((Path(f).name, pq.read_schema(f).empty_table()) for f in files),
    )
    types = _Subject(
        "lake file column types",
        [
            _Expect(
                "raw.column_types",
                "expect_column_pair_values_to_be_equal",
                {"column_A": "actual_type", "column_B": "expected_type"},
                "every lake column has its canonical type (nullability aside)",
            )
        ],
        lambda: [("schemas", _schema_table(files, expected))],
        id_columns=("file", "column"),
    )
    values = [_not_null("raw", c) for c in CANONICAL_COLUMNS + ("month",) if c in present]
    values += [
        _between(
            "raw",
            "in_month",
            "paid_at",
            start,
            end,
            f"paid_at lies in [{start.isoformat()}, {end.isoformat()}), month "
            f"{format_month(month)} in {cfg.business.timezone}",
            strict_max=True,  # the month is [start, end)
        ),
        _Expect(
            "raw.currency_is_configured",
            "expect_column_values_to_be_in_set",
            {"column": "currency", "value_set": [cfg.business.currency]},
            f"currency, where given, is {cfg.business.currency}",
        ),
        _between("raw", "not_negative", "units", 0, None, "units >= 0"),
        _between("raw", "not_negative", "cost", 0, None, "cost >= 0"),
        _Expect(
            "raw.month_is_partition_month",
            "expect_column_values_to_be_in_set",
            {"column": "month", "value_set": [month.isoformat()]},
            f"the month column is {month.isoformat()} on every row",
        ),
    ]
    wanted = sorted(set().union(*(e.columns for e in values)) | {"payment_id"})
    batch_rows = cfg.checks.batch_rows
    partition = _Subject(
        f"lake partition {format_month(month)}",
        values,
        lambda: _parquet_batches(files, wanted, batch_rows),
        id_columns=("payment_id",),
    )

    with _duckdb(cfg) as con:
        check_table = partial(_check_table, con, cfg.checks.batch_rows)
        unreadable = _lake_view(con, files)
        params = {"rows_written": manifest.rows_written, "amount_sum": manifest.amount_sum}
        volume = _recent_volume(cfg, month, con)
        keys = _keys_view(con, "select payment_id from lake_partition", unreadable)
        subjects = [
            columns,
            types,
            partition,
            check_table(
                "duplicate_keys",
                "raw.payment_id_unique",
                "payment_id is unique in the partition",
                setup_error=keys,
            ),
            check_table(
                "raw_row_count_vs_manifest",
                "raw.row_count_matches_manifest",
                f"the partition holds the manifest's rows_written ({manifest.rows_written})",
                setup_error=unreadable,
                **params,
            ),
            check_table(
                "raw_amount_sum_vs_manifest",
                "raw.amount_sum_matches_manifest",
                f"sum(amount) equals the manifest's amount_sum ({manifest.amount_sum}) exactly",
                setup_error=unreadable,
                **params,
            ),
            check_table(
                "raw_volume_vs_recent_months",
                "raw.volume_matches_recent_months",
                volume.pop("description"),
                **volume,
            ),
        ]
        return _run_gate("raw", cfg, month, subjects, out_dir, files, started)


def gate_raw_activities(cfg: Config, month: date, out_dir: Path) -> GateReport:
    """Validate the activity partition of ``month`` (a [service] source) against the
    canonical schema and its manifest, as gate_raw validates the payments (no volume rule:
    a month may hold no activity)."""
    month = parse_month(month)
    if not cfg.checks.enabled:
        return _disabled("raw_activities", month, out_dir)
    started = time.perf_counter()
    manifest = read_manifest(cfg.lake.root, month, ACTIVITIES)
    files = month_files(cfg.lake.root, month, ACTIVITIES)
    start, end = (b.astimezone(UTC) for b in month_bounds(month, cfg.business.timezone))
    expected = {f.name: f.type for f in ACTIVITIES.schema}
    present = set(SERVICE_REQUIRED_COLUMNS) | set(manifest.columns_present) | {"month"}
    prefix = "raw.activities"
    columns = _Subject(
        "activity lake file columns",
        [
            _Expect(
                f"{prefix}.columns",
                "expect_table_columns_to_match_set",
                {"column_set": list(expected), "exact_match": True},
                f"every activity lake file has exactly the columns {', '.join(expected)}",
            ),
        ],
        lambda: ((Path(f).name, pq.read_schema(f).empty_table()) for f in files),
    )
    types = _Subject(
        "activity lake file column types",
        [
            _Expect(
                f"{prefix}.column_types",
                "expect_column_pair_values_to_be_equal",
                {"column_A": "actual_type", "column_B": "expected_type"},
                "every activity lake column has its canonical type (nullability aside)",
            )
        ],
        lambda: [("schemas", _schema_table(files, expected))],
        id_columns=("file", "column"),
    )
    values = [
        _not_null(prefix, c) for c in SERVICE_COLUMNS + ("month",) if c in present and c != "kind"
    ]
    values += [
        _between(
            prefix,
            "in_month",
            "occurred_at",
            start,
            end,
            f"occurred_at lies in [{start.isoformat()}, {end.isoformat()}), month "
            f"{format_month(month)} in {cfg.business.timezone}",
            strict_max=True,
        ),
        _between(prefix, "not_negative", "hours", 0, None, "hours >= 0"),
        _between(prefix, "not_negative", "cost", 0, None, "cost >= 0"),
        _Expect(
            f"{prefix}.month_is_partition_month",
            "expect_column_values_to_be_in_set",
            {"column": "month", "value_set": [month.isoformat()]},
            f"the month column is {month.isoformat()} on every row",
        ),
    ]
    wanted = sorted(set().union(*(e.columns for e in values)) | {"activity_id"})
    batch_rows = cfg.checks.batch_rows
    partition = _Subject(
        f"activity lake partition {format_month(month)}",
        values,
        lambda: _parquet_batches(files, wanted, batch_rows),
        id_columns=("activity_id",),
    )
    with _duckdb(cfg) as con:
        check_table = partial(_check_table, con, cfg.checks.batch_rows)
        unreadable = _lake_view(con, files)
        params = {"rows_written": manifest.rows_written, "amount_sum": manifest.amount_sum}
        keys = _keys_view(con, "select activity_id from lake_partition", unreadable)
        subjects = [
            columns,
            types,
            partition,
            check_table(
                "duplicate_keys",
                f"{prefix}.activity_id_unique",
                "activity_id is unique in the partition",
                setup_error=keys,
            ),
            check_table(
                "raw_row_count_vs_manifest",
                f"{prefix}.row_count_matches_manifest",
                f"the partition holds the manifest's rows_written ({manifest.rows_written})",
                setup_error=unreadable,
                **params,
            ),
            check_table(
                "raw_amount_sum_vs_manifest",
                f"{prefix}.cost_sum_matches_manifest",
                f"sum(cost) equals the manifest's sum ({manifest.amount_sum}) exactly",
                setup_error=unreadable,
                inputs={"lake_partition": "select cost as amount from lake_partition"},
                **params,
            ),
        ]
        return _run_gate("raw_activities", cfg, month, subjects, out_dir, files, started)


def gate_customer_month(
    cfg: Config, month: date, tables: dict[str, Rows], out_dir: Path
) -> GateReport:
    """Validate customer_month against the month's lake partition."""
    month = parse_month(month)
    if not cfg.checks.enabled:
        return _disabled("customer_month", month, out_dir)
    started = time.perf_counter()
    files = month_files(cfg.lake.root, month)
    customer_month = _table(tables, "customer_month")
    prefix = "customer_month"
    columns = _Subject(
        "customer_month",
        [
            _month_is(prefix, month),
            _not_null(prefix, "customer_id"),
            _not_null(prefix, "revenue"),
            _between(prefix, "not_negative", "payments", 0, None, "payments >= 0"),
            _between(prefix, "not_negative", "gross_revenue", 0, None, "gross_revenue >= 0"),
            _between(prefix, "not_negative", "refunds", 0, None, "refunds >= 0"),
        ],
        _batches(customer_month, cfg.checks.batch_rows),
        id_columns=("customer_id",),
    )
    with _duckdb(cfg) as con:
        check_table = partial(_check_table, con, cfg.checks.batch_rows)
        unreadable = _lake_view(con, files)
        _register(con, "customer_month", customer_month)
        subjects = [
            columns,
            check_table(
                "duplicate_keys",
                f"{prefix}.one_row_per_customer",
                "one row per (month, customer_id)",
                setup_error=_keys_view(con, "select month, customer_id from customer_month"),
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
        return _run_gate("customer_month", cfg, month, subjects, out_dir, files, started)


def gate_outputs(cfg: Config, month: date, tables: dict[str, Rows], out_dir: Path) -> GateReport:
    """Validate the reporting tables computed for ``month`` (customer_month aside)."""
    month = parse_month(month)
    if not cfg.checks.enabled:
        return _disabled("outputs", month, out_dir)
    started = time.perf_counter()
    seg = cfg.segmentation
    per_table: dict[str, list[_Expect]] = {
        "customer_abc": [
            _share("outputs.customer_abc", "share"),
            _share("outputs.customer_abc", "cum_share"),
            _not_null("outputs.customer_abc", "cum_share"),
            *_in_set("outputs.customer_abc", "abc_class", ABC_CLASSES, nullable=False),
            *_in_set("outputs.customer_abc", "xyz_class", XYZ_CLASSES, nullable=True),
        ],
        "customer_segment": [
            *_in_set("outputs.customer_segment", "segment", SEGMENTS, nullable=False),
            *_in_set("outputs.customer_segment", "movement", MOVEMENTS, nullable=True),
        ],
        "vip_roster": [
            _not_null("outputs.vip_roster", "months_as_vip"),
            _between(
                "outputs.vip_roster",
                "in_range",
                "months_as_vip",
                1,
                seg.roster_months,
                f"months_as_vip lies in 1..{seg.roster_months} (roster_months)",
            ),
        ],
        "vip_roster_change": _in_set(
            "outputs.vip_roster_change", "change", ROSTER_CHANGES, nullable=False
        ),
        "customer_alert": _in_set("outputs.customer_alert", "alert", ALERTS, nullable=False),
        "customer_call": [
            *_in_set("outputs.customer_call", "priority", ("call", "watch"), nullable=False),
            _not_null("outputs.customer_call", "call_rank"),
            _between("outputs.customer_call", "positive", "call_rank", 1, None, "call_rank >= 1"),
            _between(
                "outputs.customer_call",
                "in_range",
                "p_alive",
                0,
                1 + SHARE_TOLERANCE,
                "p_alive lies in [0, 1] (NULL without a model)",
            ),
            _between(
                "outputs.customer_call",
                "not_negative",
                "value_at_risk",
                0,
                None,
                "value_at_risk >= 0",
            ),
        ],
        "customer_tier": _in_set("outputs.customer_tier", "tier", TIERS, nullable=False),
        "pareto_summary": [
            _share("outputs.pareto_summary", c) for c in ("top20_share", "top1_share", "hhi")
        ],
        "criteria_overlap": [_share("outputs.criteria_overlap", "jaccard")],
    }
    service = cfg.service is not None
    if service:
        per_table |= {
            "customer_service": [
                _not_null("outputs.customer_service", "activities"),
                _between(
                    "outputs.customer_service", "positive", "activities", 1, None, "activities >= 1"
                ),
                _between(
                    "outputs.customer_service", "not_negative", "hours", 0, None, "hours >= 0"
                ),
                _between(
                    "outputs.customer_service",
                    "not_negative",
                    "cost_to_serve",
                    0,
                    None,
                    "cost_to_serve >= 0",
                ),
            ],
            "customer_service_kind": [
                _not_null("outputs.customer_service_kind", "kind"),
                _between(
                    "outputs.customer_service_kind",
                    "positive",
                    "activities",
                    1,
                    None,
                    "activities >= 1",
                ),
            ],
            "customer_service_profile": [
                _share("outputs.customer_service_profile", "revenue_share"),
                _share("outputs.customer_service_profile", "effort_share"),
                *_in_set(
                    "outputs.customer_service_profile", "revenue_class", ABC_CLASSES, nullable=True
                ),
                *_in_set(
                    "outputs.customer_service_profile", "effort_class", ABC_CLASSES, nullable=True
                ),
                *_in_set("outputs.customer_service_profile", "profile", PROFILES, nullable=False),
            ],
        }
    subjects = []
    for name, expects in per_table.items():
        subjects.append(
            _Subject(
                name,
                [_month_is(f"outputs.{name}", month), *expects],
                _batches(_table(tables, name), cfg.checks.batch_rows),
                id_columns=tuple(c for c in TABLES[name].key if c != "month"),
            )
        )
    numerator, denominator = Decimal(seg.vip_share).as_integer_ratio()
    with _duckdb(cfg) as con:
        check_table = partial(_check_table, con, cfg.checks.batch_rows)
        for table in month_tables(service):
            _register(con, table.name, _table(tables, table.name))
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
        return _run_gate("outputs", cfg, month, subjects, out_dir, list(tables), started)


def _service_checks(
    cfg: Config, month: date, con: duckdb.DuckDBPyConnection, check_table: Callable
) -> list[_Subject]:
    """The service tables against the month's activity partition and themselves."""
    unreadable = _lake_view(con, month_files(cfg.lake.root, month, ACTIVITIES))
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
    tables: dict[str, Rows],
    expected_counts: dict[str, int],
    out_dir: Path,
) -> GateReport:
    """Validate the rows about to be loaded: counts as computed, unique keys."""
    month = parse_month(month)
    if not cfg.checks.enabled:
        return _disabled("before_load", month, out_dir)
    started = time.perf_counter()
    wanted = {t.name for t in month_tables(cfg.service is not None)}
    names = sorted(wanted | set(tables) | set(expected_counts))
    row_counts = pa.table(
        {
            "table_name": names,
            "computed_rows": pa.array([expected_counts.get(n) for n in names], pa.int64()),
            "rows_to_load": pa.array(
                [_num_rows(tables[n]) if n in tables else None for n in names], pa.int64()
            ),
        }
    )
    with _duckdb(cfg) as con:
        check_table = partial(_check_table, con, cfg.checks.batch_rows)
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
            _register(con, "rows_to_load", tables[name])
            subjects.append(
                check_table(
                    "duplicate_keys",
                    f"before_load.{name}.key_unique",
                    f"({key}) is unique",
                    setup_error=_keys_view(con, f"select {key} from rows_to_load"),
                )
            )
            if table.file_order:  # rows are ordered by other columns than the key
                order = ", ".join(table.row_order)
                subjects.append(
                    check_table(
                        "duplicate_keys",
                        f"before_load.{name}.row_order_unique",
                        f"({order}) is unique, so it orders the rows of the file completely",
                        setup_error=_keys_view(con, f"select {order} from rows_to_load"),
                    )
                )
        return _run_gate("before_load", cfg, month, subjects, out_dir, names, started)


# -- data for GX ------------------------------------------------------------------------


def _recent_volume(cfg: Config, month: date, con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """This month's rows, customers and amount, and the table ``recent_months`` of the
    extracted months before it that sql/checks/raw_volume_vs_recent_months.sql compares."""
    rule = cfg.checks.volume
    earlier = [
        m for m in extracted_months(cfg.lake.root) if cfg.business.history_start <= m < month
    ]
    recent = [_volume(cfg, m) for m in earlier[-rule.months :]]
    con.register(
        "recent_months",
        pa.table(
            {
                "month": pa.array([m for m, *_ in recent], pa.date32()),
                "rows": pa.array([r for _, r, _, _ in recent], pa.int64()),
                "customers": pa.array([c for _, _, c, _ in recent], pa.int64()),
                "amount": pa.array([a for *_, a in recent], pa.decimal128(18, 2)),
            }
        ),
    )
    _, rows, customers, amount = _volume(cfg, month)
    accepted = format_month(month) in rule.accept
    compared = ", ".join(format_month(m) for m, *_ in recent) or "none yet"
    return {
        "rows": rows,
        "customers": customers,
        "amount": amount,
        "accepted": accepted,
        "max_drop": rule.max_drop,
        "max_rise": rule.max_rise,
        "min_rows": rule.min_rows,
        "description": (
            f"rows, customers and amount lie within [median x {1 - rule.max_drop}, median x "
            f"{rule.max_rise}] of the months before ({compared}; compared from a median of "
            f"{rule.min_rows} rows)"
            + ("; this month's change is accepted ([checks.volume] accept)" if accepted else "")
            + ". A real change: list the month in [checks.volume] accept, or make the check a "
            "warning in [checks.severity]"
        ),
    }


def _volume(cfg: Config, month: date) -> tuple[date, int, int | None, Decimal]:
    manifest = read_manifest(cfg.lake.root, month)
    derived = derived_file(cfg.lake.root, month, "customer_month")  # none in lake schema 1
    customers = pq.ParquetFile(derived).metadata.num_rows if derived else None
    return month, manifest.rows_written, customers, Decimal(manifest.amount_sum)


# A computed table: its rows in memory, or the Parquet file the computation wrote (read
# in batches and by DuckDB, so that a month of millions of rows is never held whole).
Rows = pa.Table | Path


def _table(tables: dict[str, Rows], name: str) -> Rows:
    """The computed table, or an empty one of its schema when it is missing."""
    return tables[name] if name in tables else TABLES[name].arrow_schema().empty_table()


def _num_rows(rows: Rows) -> int:
    return rows.num_rows if isinstance(rows, pa.Table) else pq.ParquetFile(rows).metadata.num_rows


def _register(con: duckdb.DuckDBPyConnection, name: str, rows: Rows) -> None:
    """Make ``rows`` the view ``name`` of the connection."""
    if isinstance(rows, pa.Table):
        con.register(name, rows)
    else:
        con.read_parquet(str(rows)).create_view(name, replace=True)


def _batches(rows: Rows, batch_rows: int) -> Callable[[], Iterator]:
    if isinstance(rows, pa.Table):
        return _table_batches(rows, batch_rows)
    columns = pq.read_schema(rows).names
    return lambda: _parquet_batches([str(rows)], columns, batch_rows)


def _schema_table(files: list[str], expected: dict[str, pa.DataType]) -> pa.Table:
    """One row per (file, column present in the file and canonical): actual and expected type."""
    rows = {"file": [], "column": [], "actual_type": [], "expected_type": []}
    for path in files:
        for column in pq.read_schema(path):
            if column.name in expected:
                rows["file"].append(Path(path).name)
                rows["column"].append(column.name)
                rows["actual_type"].append(str(column.type))
                rows["expected_type"].append(str(expected[column.name]))
    return pa.table(rows, schema=pa.schema([(k, pa.string()) for k in rows]))


def _parquet_batches(
    files: list[str], columns: list[str], batch_rows: int
) -> Iterator[tuple[str, pa.Table]]:
    """The files' rows in batches of at most ``batch_rows``, with the wanted columns they have."""
    for path in files:
        parquet = pq.ParquetFile(path)
        have = [c for c in columns if c in parquet.schema_arrow.names]
        offset = 0
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=have):
            yield f"{Path(path).name} rows {offset}..", pa.Table.from_batches([batch])
            offset += batch.num_rows
        if parquet.metadata.num_rows == 0:
            yield f"{Path(path).name} (empty)", parquet.schema_arrow.empty_table().select(have)


def _table_batches(table: pa.Table, batch_rows: int) -> Callable[[], Iterator]:
    def batches() -> Iterator[tuple[str, pa.Table]]:
        yield "rows 0..", table.slice(0, batch_rows)  # at least one batch, possibly empty
        for offset in range(batch_rows, table.num_rows, batch_rows):
            yield f"rows {offset}..", table.slice(offset, batch_rows)

    return batches


@contextmanager
def _duckdb(cfg: Config) -> Iterator[duckdb.DuckDBPyConnection]:
    con = bounded_connection(cfg)
    try:
        yield con
    finally:
        con.close()


def _lake_view(con: duckdb.DuckDBPyConnection, files: list[str]) -> str | None:
    """Create the view ``lake_partition`` over the files; the error text if they cannot be read."""
    try:
        # the folder is named month=YYYY-MM: the month column comes from the files, not the path
        relation = con.read_parquet(files, union_by_name=True, hive_partitioning=False)
        relation.create_view("lake_partition")
    except duckdb.Error as exc:
        return str(exc)
    return None


def _keys_view(
    con: duckdb.DuckDBPyConnection, query: str, setup_error: str | None = None
) -> str | None:
    """Point ``checked_keys`` (read by sql/checks/duplicate_keys.sql) at ``query``."""
    if setup_error:
        return setup_error
    try:
        con.execute(f"create or replace temp view checked_keys as {query}")
    except duckdb.Error as exc:
        return str(exc)
    return None


def _check_table(
    con: duckdb.DuckDBPyConnection,
    batch_rows: int,
    rule: str,
    check: str,
    description: str,
    *,
    setup_error: str | None = None,
    inputs: dict[str, str] | None = None,
    **params: Any,
) -> _Subject:
    """Compute ``sql/checks/<rule>.sql`` (the rows that break the rule) as a temp table."""
    expect = _Expect(check, "expect_table_row_count_to_equal", {"value": 0}, description)
    table_name = f"check_{check.replace('.', '_')}"
    subject = _Subject(f"sql/checks/{rule}.sql", [expect], lambda: (), rows_are_examples=True)
    if setup_error:
        subject.error = setup_error
        return subject
    try:
        run_sql(con, f"checks/{rule}", create=table_name, inputs=inputs, **params)
    except duckdb.Error as exc:
        subject.error = str(exc)
        return subject

    def batches() -> Iterator[tuple[str, pa.Table]]:
        reader = con.table(table_name).to_arrow_reader(batch_rows)
        offset = 0
        for batch in reader:
            yield f"rows {offset}..", pa.Table.from_batches([batch])
            offset += batch.num_rows
        if offset == 0:  # GX validates the empty check table: that is the passing case
            yield "no rows", reader.schema.empty_table()

    subject.batches = batches
    return subject


def _frame(table: pa.Table):
    """The rows as a pandas DataFrame that GX validates quickly and decides the same way.

    Decimals become float64 through their exact text (correctly rounded, so sign and range
    checks decide as on the decimals) and dates their ISO text: as Arrow-backed pandas
    types, GX's column metrics would fall back to a Python call per value.
    """
    columns = {}
    for column in table.schema:
        values = table[column.name]
        if pa.types.is_decimal(column.type):
            values = values.cast(pa.string()).cast(pa.float64())
        elif pa.types.is_date(column.type):
            values = values.cast(pa.string())
        columns[column.name] = values
    return pa.table(columns).to_pandas()


# -- running GX ------------------------------------------------------------------------

_GX: SimpleNamespace | None = None
_GX_LOCK = threading.Lock()


def warm_up() -> None:
    """Import Great Expectations in a background thread, so that its seconds of importing
    overlap with the month's extract and computation (DuckDB releases the GIL) instead of
    delaying the first gate. The gates wait for it; a failure shows there."""

    def load() -> None:
        with contextlib.suppress(Exception):
            _gx()

    threading.Thread(target=load, name="gx-import", daemon=True).start()


def preload_gx() -> None:
    """Import Great Expectations and set up the gates' context now, in this process (the
    Airflow scheduler, before it forks the processes of the tasks: ``pipeline.preload``)."""
    _gx()


def _gx() -> SimpleNamespace:
    """Great Expectations, imported and set up once per process (it takes seconds)."""
    with _GX_LOCK:
        return _load_gx()


def _load_gx() -> SimpleNamespace:
    global _GX
    if _GX is None:
        os.environ["GX_ANALYTICS_ENABLED"] = "false"
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        import great_expectations as gx
        import great_expectations.execution_engine.pandas_execution_engine as pandas_engine
        import great_expectations.expectations as gxe
        from great_expectations.data_context.types.base import ProgressBarsConfig

        # GX fingerprints every batch below this size by hashing all its values: half the
        # raw gate's time on a million payments, for batch metadata that no expectation
        # reads. GX itself skips it for frames of 1 GB and more.
        pandas_engine.HASH_THRESHOLD = 0

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        asset = context.data_sources.add_pandas("pipeline_checks").add_dataframe_asset("frames")
        _GX = SimpleNamespace(
            gx=gx, gxe=gxe, whole_frame=asset.add_batch_definition_whole_dataframe("whole_frame")
        )
    return _GX


def _gx_class(expectation: str) -> type:
    return getattr(_gx().gxe, "".join(part.title() for part in expectation.split("_")))


@dataclass
class _Tally:
    """One check's outcome, summed over the batches of its subject."""

    success: bool = True
    unexpected: int = 0
    examples: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add_examples(self, values: Iterable[Any]) -> None:
        for value in values:
            if len(self.examples) < EXAMPLES:
                self.examples.append(gx_report.plain(value))


def _validate(subject: _Subject, severities: dict[str, str]) -> tuple[dict[str, _Tally], list]:
    """Validate every batch of ``subject`` with one suite; sum the outcomes per check."""
    tallies = {e.check: _Tally() for e in subject.expects}
    if subject.error:
        for tally in tallies.values():
            tally.success = False
            tally.notes.append(f"could not be evaluated: {subject.error}")
        return tallies, []
    gx = _gx()
    suite = gx.gx.ExpectationSuite(name=subject.name)
    for expect in subject.expects:
        severity = "critical" if severities[expect.check] == "error" else "warning"
        suite.add_expectation(
            _gx_class(expect.expectation)(
                **expect.kwargs, meta={"check": expect.check}, severity=severity
            )
        )
    if all(e.expectation in _DECIDED_BY_DECIDING_ROWS for e in subject.expects):
        tallies, validations = _validate_batches(subject, suite, _deciding_rows(subject))
        if all(tally.success for tally in tallies.values()):
            return tallies, validations
        # something broke a rule: validate every row, for exact counts and examples
        tallies = {e.check: _Tally() for e in subject.expects}
    return _validate_batches(subject, suite, subject.batches(), tallies)


# Expectations whose outcome on a table is decided by a few of its rows: the rows holding
# each checked column's minimum, maximum, first NULL and first NaN, and, for a set of k
# values, the first rows of k + 1 of its distinct values. A table passes them exactly when
# those rows do, so GX validates those rows first, and every row only when one fails.
_DECIDED_BY_DECIDING_ROWS = {
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_between",
    "expect_column_values_to_be_in_set",
}


def _deciding_rows(subject: _Subject) -> Iterator[tuple[str, pa.Table]]:
    """One batch: the rows of all of ``subject``'s batches that decide its expectations."""
    set_sizes = {
        e.kwargs["column"]: len(e.kwargs["value_set"])
        for e in subject.expects
        if e.expectation == "expect_column_values_to_be_in_set"
    }
    checked = set().union(*(e.columns for e in subject.expects))
    parts, batches, total = [], 0, 0
    for _, rows in subject.batches():
        batches, total = batches + 1, total + rows.num_rows
        picked: set[int] = set()
        for name in checked & set(rows.column_names):
            picked |= _deciding_indices(rows[name], set_sizes.get(name))
        parts.append(rows.take(sorted(picked)) if picked else rows.slice(0, 0))
    label = (
        f"deciding rows of {total} in {batches} batch(es): each checked column's min, max, "
        "first NULL and NaN, and the first row of its first values beyond a checked set's size"
    )
    if not parts:  # nothing to validate, as with every row
        return
    if all(part.schema == parts[0].schema for part in parts):
        yield label, pa.concat_tables(parts)
    else:  # files of one partition with different columns: each validated on its own
        yield from ((f"{label} (part {i})", part) for i, part in enumerate(parts))


def _deciding_indices(values: pa.ChunkedArray, set_size: int | None = None) -> set[int]:
    """Row indices holding the column's min, max, first NULL and first NaN; with the size
    of a value set, also the first row of each of its first ``set_size + 1`` distinct
    values: if there are more distinct values than the set holds, one of those is not in
    it (a set of k values cannot hold k + 1 distinct ones)."""
    if len(values) == 0:
        return set()
    found = set()
    if values.null_count:
        found.add(pc.index(pc.is_null(values), True).as_py())
    if pa.types.is_floating(values.type):
        found.add(pc.index(pc.is_nan(values).fill_null(False), True).as_py())
    wanted = []
    if values.null_count < len(values) and not pa.types.is_null(values.type):
        extremes = pc.min_max(values)
        wanted += [extremes["min"], extremes["max"]]
    if set_size is not None:
        wanted += pc.unique(values.drop_null())[: set_size + 1]
    found |= {pc.index(values, value).as_py() for value in wanted if value.is_valid}
    return {index for index in found if index >= 0}


def _validate_batches(
    subject: _Subject,
    suite: Any,
    batches: Iterable[tuple[str, pa.Table]],
    tallies: dict[str, _Tally] | None = None,
) -> tuple[dict[str, _Tally], list]:
    gx = _gx()
    tallies = tallies or {e.check: _Tally() for e in subject.expects}
    validations, row_examples = [], []
    for label, rows in batches:
        frame = _frame(rows)
        batch = gx.whole_frame.get_batch(batch_parameters={"dataframe": frame})
        # BASIC is the cheaper format; a batch with bad values that still lack examples is
        # validated again with SUMMARY, which names the rows (by id_columns) they were in.
        basic = {"result_format": "BASIC", "partial_unexpected_count": EXAMPLES}
        outcome = batch.validate(suite, result_format=basic)
        ids = [c for c in subject.id_columns if c in frame.columns]
        wants_examples = any(
            not r.success and len(tallies[r.expectation_config.meta["check"]].examples) < EXAMPLES
            for r in outcome.results
        )
        if ids and wants_examples:
            summary = basic | {"result_format": "SUMMARY", "unexpected_index_column_names": ids}
            outcome = batch.validate(suite, result_format=summary)
        validations.append(
            {
                "subject": subject.name,
                "batch": label,
                "rows": len(frame),
                "result": outcome.to_json_dict(),
            }
        )
        if subject.rows_are_examples and len(row_examples) < EXAMPLES:
            row_examples += rows.slice(0, EXAMPLES - len(row_examples)).to_pylist()
        for result in outcome.results:
            _tally(tallies[result.expectation_config.meta["check"]], result, label)
    for tally in tallies.values():
        if subject.rows_are_examples and not tally.success:
            tally.add_examples(row_examples)
    return tallies, validations


def _tally(tally: _Tally, result: Any, label: str) -> None:
    errors = _gx_errors(result.exception_info or {})
    if errors:
        tally.success = False
        tally.notes.append(f"{label}: could not be evaluated: {'; '.join(errors)}")
        return
    tally.success &= bool(result.success)
    details = result.result or {}
    if "unexpected_count" in details:
        tally.unexpected += int(details["unexpected_count"] or 0)
        tally.add_examples(
            details.get("partial_unexpected_index_list")
            or details.get("partial_unexpected_list")
            or []
        )
    elif result.expectation_config.type == "expect_table_row_count_to_equal":
        tally.unexpected += int(details.get("observed_value") or 0)
    elif not result.success:
        mismatched = (details.get("details") or {}).get("mismatched")
        tally.unexpected += 1
        tally.add_examples(
            [{"batch": label, **(mismatched or {"observed": details.get("observed_value")})}]
        )


def _gx_errors(info: dict[str, Any]) -> list[str]:
    """GX's exception messages: one exception_info, or one per metric it could not compute."""
    infos = [info] if "raised_exception" in info else list(info.values())
    messages = {i.get("exception_message") or "error" for i in infos if i.get("raised_exception")}
    return sorted(messages)


def _run_gate(
    gate: str,
    cfg: Config,
    month: date,
    subjects: list[_Subject],
    out_dir: Path,
    inputs: Iterable[str],
    started: float,
) -> GateReport:
    severities = {
        e.check: cfg.checks.severity.get(e.check, "error") for s in subjects for e in s.expects
    }
    results, validations = [], []
    for subject in subjects:
        tallies, subject_validations = _validate(subject, severities)
        validations += subject_validations
        for expect in subject.expects:
            tally = tallies[expect.check]
            results.append(
                CheckResult(
                    check=expect.check,
                    expectation=expect.expectation,
                    severity=severities[expect.check],
                    success=tally.success,
                    unexpected_count=tally.unexpected,
                    examples=tally.examples,
                    detail=_detail(expect, subject, tally),
                )
            )
    report = GateReport(gate, format_month(month), results, [], [str(i) for i in inputs])
    report.seconds = time.perf_counter() - started
    report.files = gx_report.write(report, validations, out_dir)
    return report


def _detail(expect: _Expect, subject: _Subject, tally: _Tally) -> str:
    if tally.success:
        return expect.description
    if tally.notes:
        return f"{expect.description}: " + "; ".join(tally.notes)
    if subject.rows_are_examples:
        broken = f"{tally.unexpected} row(s) of the check table ({subject.name}) break it"
    elif expect.expectation.startswith("expect_table_"):
        broken = f"{tally.unexpected} mismatch(es) in {subject.name}"
    else:
        broken = f"{tally.unexpected} value(s) in {subject.name} break it"
    return f"{expect.description}: {broken}"


def _disabled(gate: str, month: date, out_dir: Path) -> GateReport:
    report = GateReport(gate, format_month(month), [], [], enabled=False)
    report.files = gx_report.write(report, [], out_dir)
    return report
