"""The raw gates: a month's lake partition, of payments (``gate_raw``) and of service
activities (``gate_raw_activities``), against the canonical schema and its manifest
(schema, required values, the timestamp inside the month, currency, signs, row count and
exact sum); the payments also against the volume of the months before."""

from __future__ import annotations

import time
from datetime import UTC, date
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

import pipeline.gates.data as data
from pipeline.config import Config
from pipeline.gates.engine import disabled, run_gate
from pipeline.gates.results import GateReport
from pipeline.gates.rules import Expect, Subject, between, not_null
from pipeline.lake.partition import (
    ACTIVITIES,
    PAYMENTS_SCHEMA,
    derived_file,
    extracted_months,
    month_files,
    read_manifest,
)
from pipeline.months import format_month, month_bounds
from pipeline.schema.inputs import (
    CANONICAL_COLUMNS,
    REQUIRED_COLUMNS,
    SERVICE_COLUMNS,
    SERVICE_REQUIRED_COLUMNS,
)


def gate_raw(cfg: Config, month: date, out_dir: Path) -> GateReport:
    """Validate the lake partition of ``month`` against the canonical schema and its manifest."""
    if not cfg.checks.enabled:
        return disabled("raw", month, out_dir)
    started = time.perf_counter()
    manifest = read_manifest(cfg.lake.root, month)
    files = month_files(cfg.lake.root, month)
    start, end = (b.astimezone(UTC) for b in month_bounds(month, cfg.business.timezone))
    expected = {f.name: f.type for f in PAYMENTS_SCHEMA}
    present = set(REQUIRED_COLUMNS) | set(manifest.columns_present) | {"month"}

    columns = Subject(
        "lake file columns",
        [
            Expect(
                "raw.columns",
                "expect_table_columns_to_match_set",
                {"column_set": list(expected), "exact_match": True},
                f"every lake file has exactly the columns {', '.join(expected)}",
            )
        ],
        lambda: ((Path(f).name, pq.read_schema(f).empty_table()) for f in files),
    )
    types = Subject(
        "lake file column types",
        [
            Expect(
                "raw.column_types",
                "expect_column_pair_values_to_be_equal",
                {"column_A": "actual_type", "column_B": "expected_type"},
                "every lake column has its canonical type (nullability aside)",
            )
        ],
        lambda: [("schemas", data.schema_table(files, expected))],
        id_columns=("file", "column"),
    )
    values = [not_null("raw", c) for c in CANONICAL_COLUMNS + ("month",) if c in present]
    values += [
        between(
            "raw",
            "in_month",
            "paid_at",
            start,
            end,
            f"paid_at lies in [{start.isoformat()}, {end.isoformat()}), month "
            f"{format_month(month)} in {cfg.business.timezone}",
            strict_max=True,  # the month is [start, end)
        ),
        Expect(
            "raw.currency_is_configured",
            "expect_column_values_to_be_in_set",
            {"column": "currency", "value_set": [cfg.business.currency]},
            f"currency, where given, is {cfg.business.currency}",
        ),
        between("raw", "not_negative", "units", 0, None, "units >= 0"),
        between("raw", "not_negative", "cost", 0, None, "cost >= 0"),
        Expect(
            "raw.month_is_partition_month",
            "expect_column_values_to_be_in_set",
            {"column": "month", "value_set": [month.isoformat()]},
            f"the month column is {month.isoformat()} on every row",
        ),
    ]
    wanted = sorted(set().union(*(e.columns for e in values)) | {"payment_id"})
    batch_rows = cfg.checks.batch_rows
    partition = Subject(
        f"lake partition {format_month(month)}",
        values,
        lambda: data.parquet_batches(files, wanted, batch_rows),
        id_columns=("payment_id",),
    )

    with data.connect(cfg) as con:
        check_table = partial(data.check_table, con, cfg.checks.batch_rows)
        unreadable = data.lake_view(con, files)
        params = {"rows_written": manifest.rows_written, "amount_sum": manifest.amount_sum}
        volume = _recent_volume(cfg, month, con)
        keys = data.keys_view(con, "select payment_id from lake_partition", unreadable)
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
        return run_gate("raw", cfg, month, subjects, out_dir, files, started)


def gate_raw_activities(cfg: Config, month: date, out_dir: Path) -> GateReport:
    """Validate the activity partition of ``month`` (a [service] source) against the
    canonical schema and its manifest, as gate_raw validates the payments (no volume rule:
    a month may hold no activity)."""
    if not cfg.checks.enabled:
        return disabled("raw_activities", month, out_dir)
    started = time.perf_counter()
    manifest = read_manifest(cfg.lake.root, month, ACTIVITIES)
    files = month_files(cfg.lake.root, month, ACTIVITIES)
    start, end = (b.astimezone(UTC) for b in month_bounds(month, cfg.business.timezone))
    expected = {f.name: f.type for f in ACTIVITIES.schema}
    present = set(SERVICE_REQUIRED_COLUMNS) | set(manifest.columns_present) | {"month"}
    prefix = "raw.activities"
    columns = Subject(
        "activity lake file columns",
        [
            Expect(
                f"{prefix}.columns",
                "expect_table_columns_to_match_set",
                {"column_set": list(expected), "exact_match": True},
                f"every activity lake file has exactly the columns {', '.join(expected)}",
            ),
        ],
        lambda: ((Path(f).name, pq.read_schema(f).empty_table()) for f in files),
    )
    types = Subject(
        "activity lake file column types",
        [
            Expect(
                f"{prefix}.column_types",
                "expect_column_pair_values_to_be_equal",
                {"column_A": "actual_type", "column_B": "expected_type"},
                "every activity lake column has its canonical type (nullability aside)",
            )
        ],
        lambda: [("schemas", data.schema_table(files, expected))],
        id_columns=("file", "column"),
    )
    values = [
        not_null(prefix, c) for c in SERVICE_COLUMNS + ("month",) if c in present and c != "kind"
    ]
    values += [
        between(
            prefix,
            "in_month",
            "occurred_at",
            start,
            end,
            f"occurred_at lies in [{start.isoformat()}, {end.isoformat()}), month "
            f"{format_month(month)} in {cfg.business.timezone}",
            strict_max=True,
        ),
        between(prefix, "not_negative", "hours", 0, None, "hours >= 0"),
        between(prefix, "not_negative", "cost", 0, None, "cost >= 0"),
        Expect(
            f"{prefix}.month_is_partition_month",
            "expect_column_values_to_be_in_set",
            {"column": "month", "value_set": [month.isoformat()]},
            f"the month column is {month.isoformat()} on every row",
        ),
    ]
    wanted = sorted(set().union(*(e.columns for e in values)) | {"activity_id"})
    batch_rows = cfg.checks.batch_rows
    partition = Subject(
        f"activity lake partition {format_month(month)}",
        values,
        lambda: data.parquet_batches(files, wanted, batch_rows),
        id_columns=("activity_id",),
    )
    with data.connect(cfg) as con:
        check_table = partial(data.check_table, con, cfg.checks.batch_rows)
        unreadable = data.lake_view(con, files)
        params = {"rows_written": manifest.rows_written, "amount_sum": manifest.amount_sum}
        keys = data.keys_view(con, "select activity_id from lake_partition", unreadable)
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
        return run_gate("raw_activities", cfg, month, subjects, out_dir, files, started)


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
