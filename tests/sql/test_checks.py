"""The quality gates (pipeline/gates/): every rule fails its gate on a crafted bad input.

The lakes and computed tables are built once per module; each test corrupts a copy
(a rewritten partition, an Arrow table with one value changed) and asserts which checks
fail, how many values or rows broke them and what the examples show. Great Expectations
is imported once, on the first gate.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import asdict
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipeline import gates
from pipeline.compute.month import compute_month
from pipeline.config.sections import ChecksConfig
from pipeline.errors import BadInputError, GateFailed
from pipeline.gates import engine
from pipeline.lake.extract import extract
from pipeline.lake.partition import month_files, partition_dir, read_manifest
from pipeline.run import backfill, steps
from pipeline.schema.tables import TABLES
from pipeline.warehouse import open_warehouse

from support import csv_config, write_payments

JAN, FEB, MAR = date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)
HEADER = ("payment_id", "customer_id", "paid_at", "amount", "currency", "units", "cost")

# January 2026 in Europe/Oslo, naive times in the business time zone. The lake orders
# rows by payment_id, so p01 is row 0. 0.10 + 0.20 makes a float sum inexact.
RAW_ROWS = [
    ("p01", "c01", "2026-01-01 00:00:00", "0.10", "EUR", 1, "0.05"),  # first instant
    ("p02", "c01", "2026-01-05 10:00:00", "0.20", "EUR", 2, "0.10"),
    ("p03", "c02", "2026-01-10 12:30:00", "100.00", "EUR", 3, "60.00"),
    ("p04", "c02", "2026-01-11 08:00:00", "-5.00", "EUR", 0, "0.00"),
    ("p05", "c03", "2026-01-15 09:15:00", "19.99", "EUR", 1, "12.00"),
    ("p06", "c04", "2026-01-20 18:00:00", "250.00", "EUR", 5, "200.00"),
    ("p07", "c05", "2026-01-31 23:59:59", "42.42", "EUR", 2, "40.00"),  # last second
    ("p08", "c05", "2026-01-25 14:00:00", "7.77", "EUR", 1, "3.00"),
]
RAW_SUM = "415.48"

RAW_CHECKS = {
    "raw.columns",
    "raw.column_types",
    "raw.payment_id_not_null",
    "raw.customer_id_not_null",
    "raw.paid_at_not_null",
    "raw.amount_not_null",
    "raw.currency_not_null",
    "raw.units_not_null",
    "raw.cost_not_null",
    "raw.month_not_null",
    "raw.paid_at_in_month",
    "raw.currency_is_configured",
    "raw.units_not_negative",
    "raw.cost_not_negative",
    "raw.month_is_partition_month",
    "raw.payment_id_unique",
    "raw.row_count_matches_manifest",
    "raw.amount_sum_matches_manifest",
    "raw.volume_matches_recent_months",
}


def failed(report: gates.GateReport) -> set[str]:
    return {r.check for r in report.results if not r.success}


def result(report: gates.GateReport, check: str) -> gates.CheckResult:
    (found,) = [r for r in report.results if r.check == check]
    return found


def with_value(table: pa.Table, column: str, row: int, value) -> pa.Table:
    """``table`` with one value replaced (the column becomes nullable)."""
    index = table.schema.get_field_index(column)
    field = table.schema.field(index).with_nullable(True)
    values = table[column].to_pylist()
    values[row] = value
    return table.set_column(index, field, pa.array(values, field.type))


def row_of(table: pa.Table, **match) -> int:
    rows = table.to_pylist()
    return next(i for i, r in enumerate(rows) if all(r[k] == v for k, v in match.items()))


# --- fixtures: a small lake of January, a shop of three months and its computed tables ---


@pytest.fixture(scope="module")
def raw_lake(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("raw")
    source = write_payments(folder / "payments.csv", RAW_ROWS, HEADER)
    cfg = csv_config(folder, source, timezone="Europe/Oslo")
    extract(cfg, JAN)
    return folder


@pytest.fixture
def raw_cfg(raw_lake, tmp_path):
    """A private copy of the small lake, to corrupt."""
    shutil.copytree(raw_lake / "lake", tmp_path / "lake")
    return csv_config(tmp_path, raw_lake / "payments.csv", timezone="Europe/Oslo")


def partition(cfg, month=JAN) -> pa.Table:
    return pa.concat_tables(pq.ParquetFile(f).read() for f in month_files(cfg.lake.root, month))


def rewrite_partition(cfg, table: pa.Table | None = None, month=JAN, **manifest_fields) -> None:
    """Replace the partition's data file and/or manifest fields, as a broken writer would
    (naming its file by content, as the extract does: the read's hash check passes)."""
    folder = partition_dir(cfg.lake.root, month)
    manifest = read_manifest(cfg.lake.root, month)
    if table is not None:
        pq.write_table(table, folder / "part-rewritten.parquet")
        digest = hashlib.sha256((folder / "part-rewritten.parquet").read_bytes()).hexdigest()
        name = f"part-{digest[:16]}.parquet"
        (folder / "part-rewritten.parquet").rename(folder / name)
        manifest.data_files = [name]
    for key, value in manifest_fields.items():
        setattr(manifest, key, value)
    (folder / "manifest.json").write_text(json.dumps(asdict(manifest)))


def shop_rows(customers: int = 26) -> list[tuple]:
    """Three months of payments. The biggest customer stops paying in March, so March's
    population is customers - 1 and a VIP alert is raised; c01 has a refund in March."""
    rows = []
    for m, month in enumerate(("2026-01", "2026-02", "2026-03")):
        for c in range(1, customers + 1):
            if c == customers and month == "2026-03":
                continue
            for k in range(1 + (c + m) % 3):
                amount = Decimal(c * 10 + k * 3 + m) + Decimal("0.25")
                cost = (amount * Decimal("0.6") + (5 if c % 7 == 0 else 0)).quantize(
                    Decimal("0.01")
                )
                paid_at = f"{month}-{10 + k:02d} 12:00:00"
                rows.append(
                    (
                        f"{month}-c{c:02d}-{k}",
                        f"c{c:02d}",
                        paid_at,
                        str(amount),
                        "EUR",
                        k + 1,
                        str(cost),
                    )
                )
    rows.append(("2026-03-c01-refund", "c01", "2026-03-20 09:00:00", "-3.00", "EUR", 0, "0.00"))
    return rows


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """The shop's lake (Jan-Mar 2026) and March's computed tables (population 25)."""
    folder = tmp_path_factory.mktemp("shop")
    source = write_payments(folder / "payments.csv", shop_rows(), HEADER)
    cfg = csv_config(folder, source, timezone="Europe/Oslo")
    for month in (JAN, FEB, MAR):
        extract(cfg, month)
    return cfg, compute_month(cfg, MAR)


@pytest.fixture
def shop_cfg(shop):
    return shop[0]


@pytest.fixture
def march(shop) -> dict[str, pa.Table]:
    return dict(shop[1])


# --- the module itself ----------------------------------------------------------------


def test_importing_the_gates_does_not_import_great_expectations() -> None:
    code = (
        "import sys, pipeline.gates, pipeline.run.steps; "
        "print('great_expectations' in sys.modules, 'pandas' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


# --- gate 1: the raw lake partition ---------------------------------------------------


def test_raw_gate_passes_a_clean_partition_and_writes_json_and_html(raw_cfg, tmp_path) -> None:
    report = gates.gate_raw(raw_cfg, JAN, tmp_path / "run")
    assert {r.check for r in report.results} == RAW_CHECKS
    assert failed(report) == set()
    assert report.passed and report.n_passed == len(RAW_CHECKS)
    assert (report.n_failed, report.n_warned) == (0, 0)
    assert report.inputs == month_files(raw_cfg.lake.root, JAN)
    gates.raise_if_failed(report)  # does not raise

    json_path, html_path = (tmp_path / "run" / "gates" / f"raw.{ext}" for ext in ("json", "html"))
    assert report.files == [str(json_path), str(html_path)]
    document = json.loads(json_path.read_text())
    assert document["passed"] is True and document["n_passed"] == len(RAW_CHECKS)
    validations = document["gx_validation_results"]
    assert all(v["result"]["success"] for v in validations)
    validated = {
        r["expectation_config"]["meta"]["check"]: r["expectation_config"]["type"]
        for v in validations
        for r in v["result"]["results"]
    }
    assert set(validated) == RAW_CHECKS
    assert validated["raw.payment_id_unique"] == "expect_table_row_count_to_equal"
    assert validated["raw.paid_at_in_month"] == "expect_column_values_to_be_between"
    page = html_path.read_text()
    assert all(check in page for check in RAW_CHECKS)
    assert "passed" in page and "FAILED" not in page


# corruption: (the checks it must fail, the one looked at, its unexpected count, an example)
RAW_CORRUPTIONS = {
    "null customer_id": (
        lambda t: with_value(t, "customer_id", 2, None),
        {"raw.customer_id_not_null"},
        "raw.customer_id_not_null",
        1,
        {"payment_id": "p03", "customer_id": None},
    ),
    "payment_id delivered twice": (
        lambda t: with_value(t, "payment_id", 3, "p03"),
        {"raw.payment_id_unique"},
        "raw.payment_id_unique",
        1,
        {"payment_id": "p03", "n_rows": 2},
    ),
    "paid_at in February in Oslo (still January in UTC)": (
        lambda t: with_value(t, "paid_at", 4, datetime(2026, 1, 31, 23, 30, tzinfo=UTC)),
        {"raw.paid_at_in_month"},
        "raw.paid_at_in_month",
        1,
        {"payment_id": "p05", "paid_at": "2026-01-31T23:30:00+00:00"},
    ),
    "paid_at exactly at the month's end (exclusive)": (
        lambda t: with_value(t, "paid_at", 4, datetime(2026, 1, 31, 23, 0, tzinfo=UTC)),
        {"raw.paid_at_in_month"},
        "raw.paid_at_in_month",
        1,
        {"payment_id": "p05"},
    ),
    "paid_at just before the month in Oslo": (
        lambda t: with_value(t, "paid_at", 0, datetime(2025, 12, 31, 22, 59, 59, tzinfo=UTC)),
        {"raw.paid_at_in_month"},
        "raw.paid_at_in_month",
        1,
        {"payment_id": "p01"},
    ),
    "another currency": (
        lambda t: with_value(t, "currency", 5, "USD"),
        {"raw.currency_is_configured"},
        "raw.currency_is_configured",
        1,
        {"payment_id": "p06", "currency": "USD"},
    ),
    "negative units": (
        lambda t: with_value(t, "units", 6, -1),
        {"raw.units_not_negative"},
        "raw.units_not_negative",
        1,
        {"payment_id": "p07", "units": -1},
    ),
    "negative cost": (
        lambda t: with_value(t, "cost", 7, Decimal("-0.01")),
        {"raw.cost_not_negative"},
        "raw.cost_not_negative",
        1,
        {"payment_id": "p08", "cost": -0.01},
    ),
    "a row of another month": (
        lambda t: with_value(t, "month", 1, FEB),
        {"raw.month_is_partition_month"},
        "raw.month_is_partition_month",
        1,
        {"payment_id": "p02", "month": "2026-02-01"},
    ),
    "an amount changed by one cent": (
        lambda t: with_value(t, "amount", 2, Decimal("100.01")),
        {"raw.amount_sum_matches_manifest"},
        "raw.amount_sum_matches_manifest",
        1,
        {"amount_sum_in_lake": "415.49", "amount_sum_in_manifest": RAW_SUM},
    ),
    "a row lost": (
        lambda t: t.slice(0, 7),
        {"raw.row_count_matches_manifest", "raw.amount_sum_matches_manifest"},
        "raw.row_count_matches_manifest",
        1,
        {"rows_in_lake": 7, "rows_in_manifest": 8},
    ),
}


@pytest.mark.parametrize("case", sorted(RAW_CORRUPTIONS))
def test_raw_gate_fails_on_a_corrupted_partition(raw_cfg, tmp_path, case) -> None:
    corrupt, expected, looked_at, unexpected, example = RAW_CORRUPTIONS[case]
    rewrite_partition(raw_cfg, corrupt(partition(raw_cfg)))
    report = gates.gate_raw(raw_cfg, JAN, tmp_path)
    assert failed(report) == expected
    assert not report.passed and report.n_failed == len(expected)
    found = result(report, looked_at)
    assert found.unexpected_count == unexpected
    assert any(example.items() <= e.items() for e in found.examples), found.examples
    with pytest.raises(GateFailed) as raised:
        gates.raise_if_failed(report)
    message = str(raised.value)
    assert raised.value.report is report
    assert message.startswith("gate raw 2026-01: FAILED")
    assert all(check in message for check in expected)


def test_raw_gate_decides_money_exactly(raw_cfg, tmp_path) -> None:
    # 0.10 + 0.20 + ... is 415.48 exactly, which a float sum would miss
    assert sum(float(r[3]) for r in RAW_ROWS) != float(RAW_SUM)
    assert gates.gate_raw(raw_cfg, JAN, tmp_path).passed
    rewrite_partition(raw_cfg, amount_sum="415.47")
    report = gates.gate_raw(raw_cfg, JAN, tmp_path)
    assert failed(report) == {"raw.amount_sum_matches_manifest"}
    assert result(report, "raw.amount_sum_matches_manifest").examples == [
        {"amount_sum_in_lake": "415.48", "amount_sum_in_manifest": "415.47"}
    ]


def test_raw_gate_checks_the_schema_against_the_canonical_one(raw_cfg, tmp_path) -> None:
    table = partition(raw_cfg)
    amount = table.schema.get_field_index("amount")
    broken = table.drop_columns(["cost"]).append_column("note", pa.array(["x"] * 8))
    broken = broken.set_column(amount, "amount", table["amount"].cast(pa.float64()))
    rewrite_partition(raw_cfg, broken)
    (written,) = read_manifest(raw_cfg.lake.root, JAN).data_files
    report = gates.gate_raw(raw_cfg, JAN, tmp_path)
    assert {"raw.columns", "raw.column_types"} <= failed(report)
    (columns,) = result(report, "raw.columns").examples
    assert (columns["missing"], columns["unexpected"]) == (["cost"], ["note"])
    assert result(report, "raw.column_types").examples == [
        {
            "file": written,
            "column": "amount",
            "actual_type": "double",
            "expected_type": "decimal128(18, 2)",
        }
    ]
    # checks of the missing column cannot be evaluated, so they fail rather than pass
    assert {"raw.cost_not_null", "raw.cost_not_negative"} <= failed(report)
    assert "could not be evaluated" in result(report, "raw.cost_not_negative").detail


def test_raw_gate_allows_nullability_differences(raw_cfg, tmp_path) -> None:
    table = partition(raw_cfg)
    relaxed = pa.schema([f.with_nullable(True) for f in table.schema])
    rewrite_partition(raw_cfg, table.cast(relaxed))
    assert gates.gate_raw(raw_cfg, JAN, tmp_path).passed


def test_currency_may_be_missing_when_the_source_has_no_currency_column(tmp_path) -> None:
    rows = [r[:4] for r in RAW_ROWS]
    source = write_payments(tmp_path / "payments.csv", rows, HEADER[:4])
    cfg = csv_config(tmp_path, source, timezone="Europe/Oslo")
    extract(cfg, JAN)
    report = gates.gate_raw(cfg, JAN, tmp_path / "run")
    assert report.passed
    # without those source columns there is nothing to require of them
    assert not {"raw.currency_not_null", "raw.units_not_null"} & {r.check for r in report.results}
    assert result(report, "raw.currency_is_configured").success


def test_a_month_without_payments_passes_once_accepted(raw_cfg, tmp_path) -> None:
    # January had payments: an empty February is a failed delivery until someone says it is
    # real; the extract refuses it (whatever min_rows), and so does the raw gate
    with pytest.raises(BadInputError, match="month 2026-02 has no payments"):
        extract(raw_cfg, FEB)  # the source has no February payments
    raw_cfg.checks.volume.accept.append("2026-02")
    extract(raw_cfg, FEB)
    assert read_manifest(raw_cfg.lake.root, FEB).rows_written == 0
    raw_cfg.checks.volume.accept.remove("2026-02")
    raw_cfg.checks.volume.min_rows = 1  # January has 8 rows
    refused = gates.gate_raw(raw_cfg, FEB, tmp_path)
    assert failed(refused) == {"raw.volume_matches_recent_months"}
    raw_cfg.checks.volume.accept.append("2026-02")
    report = gates.gate_raw(raw_cfg, FEB, tmp_path)
    assert failed(report) == set() and {r.check for r in report.results} == RAW_CHECKS
    empty = {name: table.arrow_schema().empty_table() for name, table in TABLES.items()}
    assert gates.gate_customer_month(raw_cfg, FEB, empty, tmp_path).passed
    assert gates.gate_outputs(raw_cfg, FEB, empty, tmp_path).passed
    assert gates.gate_before_load(raw_cfg, FEB, empty, dict.fromkeys(TABLES, 0), tmp_path).passed


def test_raw_gate_validates_big_partitions_in_bounded_batches(tmp_path) -> None:
    rows = [
        (
            f"p{i:05d}",
            f"c{i % 97:03d}",
            f"2026-01-{1 + i % 28:02d} 10:00:00",
            f"{i}.25",
            "EUR",
            i % 4,
            "1.00",
        )
        for i in range(2500)
    ]
    source = write_payments(tmp_path / "payments.csv", rows, HEADER)
    cfg = csv_config(tmp_path, source, checks={"batch_rows": 1000})
    extract(cfg, JAN)
    table = partition(cfg)
    for row in (10, 1500, 2400):  # one bad value in each batch
        table = with_value(table, "units", row, -row)
    rewrite_partition(cfg, table)
    report = gates.gate_raw(cfg, JAN, tmp_path / "run")
    assert failed(report) == {"raw.units_not_negative"}
    units = result(report, "raw.units_not_negative")
    assert units.unexpected_count == 3
    assert [e["units"] for e in units.examples] == [-10, -1500, -2400]
    document = json.loads((tmp_path / "run" / "gates" / "raw.json").read_text())
    batches = [
        v["rows"]
        for v in document["gx_validation_results"]
        if v["subject"] == "lake partition 2026-01"
    ]
    assert batches == [1000, 1000, 500]


def test_a_warning_check_lets_the_gate_pass_and_is_recorded(raw_cfg, tmp_path) -> None:
    rewrite_partition(raw_cfg, with_value(partition(raw_cfg), "currency", 5, "USD"))
    cfg = raw_cfg.model_copy(
        update={"checks": ChecksConfig(severity={"raw.currency_is_configured": "warning"})}
    )
    report = gates.gate_raw(cfg, JAN, tmp_path)
    assert report.passed
    assert (report.n_failed, report.n_warned) == (0, 1)
    warning = result(report, "raw.currency_is_configured")
    assert (warning.success, warning.severity, warning.unexpected_count) == (False, "warning", 1)
    gates.raise_if_failed(report)  # does not raise
    assert "WARNING raw.currency_is_configured" in report.summary()
    document = json.loads((tmp_path / "gates" / "raw.json").read_text())
    assert (document["passed"], document["n_warned"]) == (True, 1)
    severities = {
        r["expectation_config"]["meta"]["check"]: r["expectation_config"]["severity"]
        for v in document["gx_validation_results"]
        for r in v["result"]["results"]
    }
    assert severities["raw.currency_is_configured"] == "warning"
    assert severities["raw.payment_id_unique"] == "critical"
    # the same data with the default severity stops the month
    assert not gates.gate_raw(raw_cfg, JAN, tmp_path).passed


def test_disabled_checks_give_an_empty_passing_report(raw_cfg, tmp_path) -> None:
    rewrite_partition(raw_cfg, amount_sum="0.00")
    cfg = raw_cfg.model_copy(update={"checks": ChecksConfig(enabled=False)})
    tables = {name: table.arrow_schema().empty_table() for name, table in TABLES.items()}
    reports = [
        gates.gate_raw(cfg, JAN, tmp_path),
        gates.gate_customer_month(cfg, JAN, tables, tmp_path),
        gates.gate_outputs(cfg, JAN, tables, tmp_path),
        gates.gate_before_load(cfg, JAN, tables, {}, tmp_path),
    ]
    for report in reports:
        assert report.passed and report.results == [] and not report.enabled
        assert json.loads(Path(report.files[0]).read_text())["enabled"] is False


# --- gate 2: customer_month against the lake -------------------------------------------


def test_customer_month_gate_passes_the_computed_table(shop_cfg, march, tmp_path) -> None:
    report = gates.gate_customer_month(shop_cfg, MAR, march, tmp_path)
    assert failed(report) == set()
    assert {r.check for r in report.results} == {
        "customer_month.month_is_run_month",
        "customer_month.customer_id_not_null",
        "customer_month.revenue_not_null",
        "customer_month.payments_not_negative",
        "customer_month.gross_revenue_not_negative",
        "customer_month.refunds_not_negative",
        "customer_month.one_row_per_customer",
        "customer_month.customers_match_lake",
        "customer_month.revenue_matches_lake",
        "customer_month.gross_minus_refunds_is_revenue",
    }
    assert (tmp_path / "gates" / "customer_month.html").exists()


def _add(table: pa.Table, column: str, row: int, delta: str) -> pa.Table:
    return with_value(table, column, row, table[column][row].as_py() + Decimal(delta))


def test_customer_month_gate_catches_each_broken_rule(shop_cfg, march, tmp_path) -> None:
    months = march["customer_month"]
    c01 = row_of(months, customer_id="c01")
    assert months["refunds"][c01].as_py() == Decimal("3.00")

    def gate(table: pa.Table) -> gates.GateReport:
        return gates.gate_customer_month(shop_cfg, MAR, march | {"customer_month": table}, tmp_path)

    twice = gate(pa.concat_tables([months, months.slice(c01, 1)]))
    assert failed(twice) == {
        "customer_month.one_row_per_customer",
        "customer_month.revenue_matches_lake",
    }
    assert result(twice, "customer_month.one_row_per_customer").examples == [
        {"month": "2026-03-01", "customer_id": "c01", "n_rows": 2}
    ]

    lost = gate(months.filter(pc.not_equal(months["customer_id"], "c05")))
    assert failed(lost) == {
        "customer_month.customers_match_lake",
        "customer_month.revenue_matches_lake",
    }
    assert result(lost, "customer_month.customers_match_lake").examples == [
        {"customer_id": "c05", "paid_in_lake": True, "in_customer_month": False}
    ]

    # a cent more revenue (and gross, so the row still adds up) breaks the reconciliation
    cent = gate(_add(_add(months, "revenue", c01, "0.01"), "gross_revenue", c01, "0.01"))
    assert failed(cent) == {"customer_month.revenue_matches_lake"}
    (example,) = result(cent, "customer_month.revenue_matches_lake").examples
    lake_sum = Decimal(example["amount_sum_in_lake"])
    assert Decimal(example["revenue_in_customer_month"]) - lake_sum == Decimal("0.01")
    assert lake_sum == sum(Decimal(r[3]) for r in shop_rows() if r[2].startswith("2026-03"))

    gross = gate(_add(months, "gross_revenue", c01, "0.01"))
    assert failed(gross) == {"customer_month.gross_minus_refunds_is_revenue"}
    (example,) = result(gross, "customer_month.gross_minus_refunds_is_revenue").examples
    assert example["customer_id"] == "c01" and example["refunds"] == "3.00"

    negative = gate(with_value(months, "payments", c01, -1))
    assert failed(negative) == {"customer_month.payments_not_negative"}
    assert result(negative, "customer_month.payments_not_negative").examples == [
        {"payments": -1, "customer_id": "c01"}
    ]

    other_month = gate(with_value(months, "month", c01, FEB))
    assert failed(other_month) == {"customer_month.month_is_run_month"}


# --- gate 3: the other reporting tables --------------------------------------------------


def test_outputs_gate_passes_the_computed_tables(shop_cfg, march, tmp_path) -> None:
    # every table has rows to corrupt in the tests below
    assert all(table.num_rows > 0 for table in march.values()), {
        name: table.num_rows for name, table in march.items()
    }
    report = gates.gate_outputs(shop_cfg, MAR, march, tmp_path)
    assert failed(report) == set()
    names = {r.check for r in report.results}
    assert {
        "outputs.customer_abc.share_in_range",
        "outputs.customer_abc.cum_share_monotone",
        "outputs.customer_abc.cum_share_ends_at_one",
        "outputs.customer_segment.vip_count",
        "outputs.customer_segment.partitions_population",
        "outputs.vip_roster.months_as_vip_in_range",
        "outputs.customer_tier.tier_in_set",
    } <= names
    computed = [t for t in TABLES if t != "customer_month" and not TABLES[t].service_only]
    assert {f"outputs.{t}.month_is_run_month" for t in computed} <= names  # no [service]


def test_vip_count_is_decided_exactly(shop_cfg, march, tmp_path) -> None:
    """vip_share 0.28 of 25 customers is exactly 7; in floating point, ceil gives 8."""
    import math

    assert math.ceil(0.28 * 25) == 8
    cfg = shop_cfg.model_copy(deep=True)
    cfg.segmentation.vip_share = Decimal("0.28")
    tables = compute_month(cfg, MAR)
    segments = tables["customer_segment"].to_pylist()
    revenue = [r for r in segments if r["metric"] == "revenue"]
    assert len(revenue) == 25
    assert sum(r["segment"] == "vip" for r in revenue) == 7
    assert gates.gate_outputs(cfg, MAR, tables, tmp_path).passed

    eighth = row_of(tables["customer_segment"], metric="revenue", rank=8)
    too_many = with_value(tables["customer_segment"], "segment", eighth, "vip")
    report = gates.gate_outputs(cfg, MAR, tables | {"customer_segment": too_many}, tmp_path)
    assert failed(report) == {"outputs.customer_segment.vip_count"}
    assert result(report, "outputs.customer_segment.vip_count").examples == [
        {
            "month": "2026-03-01",
            "metric": "revenue",
            "n_customers": 25,
            "n_vip": 8,
            "expected_vip": 7,
        }
    ]


def _abc_row(abc: pa.Table, rank: int, *, window: int = 1) -> int:
    return row_of(abc, metric="revenue", window_months=window, rank=rank)


def _last_rank(abc: pa.Table, window: int = 1) -> int:
    return max(
        r["rank"]
        for r in abc.to_pylist()
        if r["metric"] == "revenue" and r["window_months"] == window
    )


def _corruptions(march: dict[str, pa.Table]) -> dict[str, tuple]:
    """Per broken rule: (changed tables, the checks that must fail, the one looked at, one
    of its examples' fields)."""
    abc, segment = march["customer_abc"], march["customer_segment"]
    roster, alert = march["vip_roster"], march["customer_alert"]
    first, second, last = _abc_row(abc, 1), _abc_row(abc, 2), _abc_row(abc, _last_rank(abc))
    regular = row_of(segment, metric="revenue", segment="regular")
    vip = row_of(segment, metric="revenue", segment="vip")
    ghost = with_value(segment.slice(regular, 1), "customer_id", 0, "ghost")
    below_first = abc["cum_share"][first].as_py() - 0.01
    return {
        "share above 1": (
            {"customer_abc": with_value(abc, "share", first, 1.5)},
            {"customer_abc.share_in_range"},
            None,
            {"share": 1.5, "metric": "revenue"},
        ),
        "cum_share going down": (
            {"customer_abc": with_value(abc, "cum_share", second, below_first)},
            {"customer_abc.cum_share_monotone"},
            None,
            {"metric": "revenue", "window_months": 1, "rank": 2},
        ),
        "cum_share ending below 1": (
            {"customer_abc": with_value(abc, "cum_share", last, 0.999)},
            {"customer_abc.cum_share_ends_at_one"},
            None,
            {"metric": "revenue", "window_months": 1, "last_cum_share": 0.999},
        ),
        "abc class D": (
            {"customer_abc": with_value(abc, "abc_class", first, "D")},
            {"customer_abc.abc_class_in_set"},
            None,
            {"abc_class": "D"},
        ),
        "abc class missing": (
            {"customer_abc": with_value(abc, "abc_class", first, None)},
            {"customer_abc.abc_class_not_null"},
            None,
            {"abc_class": None},
        ),
        "xyz class W": (
            {"customer_abc": with_value(abc, "xyz_class", _abc_row(abc, 1, window=12), "W")},
            {"customer_abc.xyz_class_in_set"},
            None,
            {"xyz_class": "W"},
        ),
        "segment platinum": (
            {"customer_segment": with_value(segment, "segment", regular, "platinum")},
            {"customer_segment.segment_in_set"},
            None,
            {"segment": "platinum"},
        ),
        "movement unknown": (
            {"customer_segment": with_value(segment, "movement", regular, "gone")},
            {"customer_segment.movement_in_set"},
            None,
            {"movement": "gone"},
        ),
        "a VIP too few": (
            {"customer_segment": with_value(segment, "segment", vip, "good")},
            {"customer_segment.vip_count"},
            None,
            {"metric": "revenue", "n_customers": 25, "n_vip": 4, "expected_vip": 5},
        ),
        "a customer of the population without a segment": (
            {
                "customer_segment": segment.filter(
                    pa.array([i != regular for i in range(segment.num_rows)])
                )
            },
            {"customer_segment.partitions_population"},
            None,
            {"metric": "revenue", "in_population": True, "n_segments": 0},
        ),
        "a segment for someone outside the population": (  # 26 segmented: 6 VIPs expected
            {"customer_segment": pa.concat_tables([segment, ghost.cast(segment.schema)])},
            {"customer_segment.partitions_population", "customer_segment.vip_count"},
            "customer_segment.partitions_population",
            {"customer_id": "ghost", "in_population": False, "n_segments": 1},
        ),
        "a customer with two segments": (
            {
                "customer_segment": pa.concat_tables(
                    [segment, with_value(segment, "segment", regular, "good").slice(regular, 1)]
                )
            },
            {"customer_segment.partitions_population"},
            None,
            {"in_population": True, "n_segments": 2, "segments": "good,regular"},
        ),
        "months_as_vip outside the roster window": (
            {
                "vip_roster": with_value(
                    with_value(roster, "months_as_vip", 0, 0), "months_as_vip", 1, 7
                )
            },
            {"vip_roster.months_as_vip_in_range"},
            None,
            {"months_as_vip": 7},
        ),
        "unknown alert": (
            {"customer_alert": with_value(alert, "alert", 0, "vip_left")},
            {"customer_alert.alert_in_set"},
            None,
            {"alert": "vip_left"},
        ),
        "tier 5": (
            {"customer_tier": with_value(march["customer_tier"], "tier", 0, 5)},
            {"customer_tier.tier_in_set"},
            None,
            {"tier": 5},
        ),
        "roster change unknown": (
            {"vip_roster_change": with_value(march["vip_roster_change"], "change", 0, "moved")},
            {"vip_roster_change.change_in_set"},
            None,
            {"change": "moved"},
        ),
        "jaccard above 1": (
            {"criteria_overlap": with_value(march["criteria_overlap"], "jaccard", 0, 1.2)},
            {"criteria_overlap.jaccard_in_range"},
            None,
            {"jaccard": 1.2},
        ),
        "a summary of another month": (
            {"pareto_summary": with_value(march["pareto_summary"], "month", 0, FEB)},
            {"pareto_summary.month_is_run_month"},
            None,
            {"month": "2026-02-01"},
        ),
    }


OUTPUT_CASES = (
    "share above 1",
    "cum_share going down",
    "cum_share ending below 1",
    "abc class D",
    "abc class missing",
    "xyz class W",
    "segment platinum",
    "movement unknown",
    "a VIP too few",
    "a customer of the population without a segment",
    "a segment for someone outside the population",
    "a customer with two segments",
    "months_as_vip outside the roster window",
    "unknown alert",
    "tier 5",
    "roster change unknown",
    "jaccard above 1",
    "a summary of another month",
)


@pytest.mark.parametrize("case", OUTPUT_CASES)
def test_outputs_gate_fails_on_a_broken_rule(shop_cfg, march, tmp_path, case) -> None:
    changes, expected, looked_at, example = _corruptions(march)[case]
    report = gates.gate_outputs(shop_cfg, MAR, march | changes, tmp_path)
    assert failed(report) == {f"outputs.{check}" for check in expected}
    looked_at = "outputs." + (looked_at or next(iter(expected)))
    examples = result(report, looked_at).examples
    assert any(example.items() <= e.items() for e in examples), examples
    with pytest.raises(GateFailed, match=looked_at.replace(".", r"\.")):
        gates.raise_if_failed(report)


def test_cum_share_may_miss_1_by_floating_point_noise_only(shop_cfg, march, tmp_path) -> None:
    abc = march["customer_abc"]
    last = _abc_row(abc, _last_rank(abc))
    for value, passes in ((1 - 1e-12, True), (1 + 1e-12, True), (1 - 1e-6, False)):
        changed = march | {"customer_abc": with_value(abc, "cum_share", last, value)}
        report = gates.gate_outputs(shop_cfg, MAR, changed, tmp_path)
        assert report.passed is passes, value


# --- gate 4: before load --------------------------------------------------------------------


def test_before_load_gate(shop_cfg, march, tmp_path) -> None:
    counts = {name: table.num_rows for name, table in march.items()}
    clean = gates.gate_before_load(shop_cfg, MAR, march, counts, tmp_path)
    assert failed(clean) == set()
    assert {r.check for r in clean.results} == {"before_load.row_counts"} | {
        f"before_load.{name}.key_unique" for name in TABLES if not TABLES[name].service_only
    } | {
        "before_load.customer_abc.row_order_unique",
        "before_load.customer_segment.row_order_unique",
        "before_load.customer_call.row_order_unique",  # call_rank: a total order per metric
    }

    more = gates.gate_before_load(shop_cfg, MAR, march, counts | {"customer_abc": 1}, tmp_path)
    assert failed(more) == {"before_load.row_counts"}
    assert result(more, "before_load.row_counts").examples == [
        {
            "table_name": "customer_abc",
            "computed_rows": 1,
            "rows_to_load": march["customer_abc"].num_rows,
        }
    ]

    missing = {k: v for k, v in march.items() if k != "criteria_overlap"}
    lost = gates.gate_before_load(shop_cfg, MAR, missing, counts, tmp_path)
    assert failed(lost) == {"before_load.row_counts"}
    assert result(lost, "before_load.row_counts").examples[0]["rows_to_load"] is None

    tier = march["customer_tier"]
    doubled = march | {"customer_tier": pa.concat_tables([tier, tier.slice(0, 1)])}
    counted = {name: table.num_rows for name, table in doubled.items()}
    twice = gates.gate_before_load(shop_cfg, MAR, doubled, counted, tmp_path)
    assert failed(twice) == {"before_load.customer_tier.key_unique"}
    (example,) = result(twice, "before_load.customer_tier.key_unique").examples
    assert example["n_rows"] == 2 and example["customer_id"] == tier["customer_id"][0].as_py()

    # two customers of one ranking with the same rank: the file's row order would not be total
    abc = march["customer_abc"]
    second = _abc_row(abc, 2)
    tied = march | {"customer_abc": with_value(abc, "rank", second, 1)}
    ties = gates.gate_before_load(shop_cfg, MAR, tied, counts, tmp_path)
    assert failed(ties) == {"before_load.customer_abc.row_order_unique"}
    (example,) = result(ties, "before_load.customer_abc.row_order_unique").examples
    assert example == {"metric": "revenue", "window_months": 1, "rank": 1, "n_rows": 2}


# --- through the steps: a failed gate loads nothing ------------------------------------------


def _warehouse(cfg, name: str, month: date | None = None) -> list[dict]:
    warehouse = open_warehouse(cfg)
    try:
        return warehouse.read_table(name, month).to_pylist()
    finally:
        warehouse.close()


def test_a_failed_gate_stops_the_month_before_anything_is_loaded(
    shop, tmp_path, monkeypatch
) -> None:
    shop_cfg, march = shop
    shutil.copytree(Path(shop_cfg.lake.root), tmp_path / "lake")
    cfg = csv_config(tmp_path, Path(shop_cfg.source.path), timezone="Europe/Oslo")
    backfill.run_month(cfg, FEB, extract=False)
    loaded = _warehouse(cfg, "customer_segment", FEB)
    assert loaded

    # the raw gate: a manifest sum one cent off; nothing of March is loaded
    real_sum = Decimal(read_manifest(cfg.lake.root, MAR).amount_sum)
    rewrite_partition(cfg, month=MAR, amount_sum=str(real_sum - Decimal("0.01")))
    with pytest.raises(GateFailed, match="raw.amount_sum_matches_manifest"):
        backfill.run_month(cfg, MAR, extract=False)
    assert _warehouse(cfg, "customer_month", MAR) == []
    (run,) = [r for r in _warehouse(cfg, "pipeline_run") if r["month"] == MAR]
    assert run["status"] == "failed" and run["checks_failed"] == 1
    assert "raw.amount_sum_matches_manifest" in run["error"]

    # an output gate: February recomputed with a broken VIP count replaces nothing
    segment = dict(compute_month(cfg, FEB))
    vip = row_of(segment["customer_segment"], metric="revenue", segment="vip")
    broken = segment | {
        "customer_segment": with_value(segment["customer_segment"], "segment", vip, "good")
    }

    def write_broken(cfg, month, folder: Path) -> dict[str, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        for name, table in broken.items():
            pq.write_table(table, folder / f"{name}.parquet")
        return {name: folder / f"{name}.parquet" for name in broken}

    monkeypatch.setattr(steps, "write_month", write_broken)
    with pytest.raises(GateFailed, match="outputs.customer_segment.vip_count"):
        backfill.run_month(cfg, FEB, extract=False)
    assert _warehouse(cfg, "customer_segment", FEB) == loaded


def _volume_cfg(folder: Path, rows: list[tuple], **config):
    folder.mkdir(parents=True, exist_ok=True)
    source = write_payments(folder / "payments.csv", rows, HEADER)
    cfg = csv_config(folder, source, **config)
    accepted, cfg.checks.volume.accept = cfg.checks.volume.accept, ["2026-03"]
    for month in (JAN, FEB, MAR):  # an empty March too (the extract accepts it), for the gate
        extract(cfg, month)
    cfg.checks.volume.accept = accepted
    return cfg


def _volume_month(month: str, payments: int, start: int = 0) -> list[tuple]:
    return [
        (f"v{start + i}", f"c{i % 7}", f"{month}-10 12:00:00", "10.00", "EUR", 1, "4.00")
        for i in range(payments)
    ]


@pytest.mark.parametrize(
    ("march_payments", "broken"),
    [(0, {"rows", "customers", "amount"}), (4, {"rows", "amount"}), (90, {"rows", "amount"})],
    ids=["header only", "a fraction", "a jump"],
)
def test_the_raw_gate_stops_a_month_whose_volume_collapses_or_jumps(
    tmp_path, march_payments, broken
) -> None:
    rows = _volume_month("2026-01", 20) + _volume_month("2026-02", 22, 100)
    rows += _volume_month("2026-03", march_payments, 200)
    cfg = _volume_cfg(tmp_path, rows, checks={"volume": {"min_rows": 10}})
    assert gates.gate_raw(cfg, FEB, tmp_path / "feb").passed  # 22 against 20: in line
    report = gates.gate_raw(cfg, MAR, tmp_path / "mar")
    assert failed(report) == {"raw.volume_matches_recent_months"}
    found = result(report, "raw.volume_matches_recent_months")
    assert {e["measure"] for e in found.examples} == broken
    rows_example = next(e for e in found.examples if e["measure"] == "rows")
    assert (rows_example["this_month"], rows_example["recent_median"]) == (
        f"{march_payments}.00",
        "21.00",
    )
    with pytest.raises(GateFailed, match="raw.volume_matches_recent_months"):
        gates.raise_if_failed(report)


def test_an_accepted_volume_change_passes_and_says_so(tmp_path) -> None:
    rows = _volume_month("2026-01", 20) + _volume_month("2026-02", 20, 100)
    cfg = _volume_cfg(tmp_path, rows, checks={"volume": {"accept": ["2026-03"], "min_rows": 10}})
    small = _volume_cfg(tmp_path / "small", rows)  # 20 rows a month: below min_rows (100)
    assert gates.gate_raw(small, MAR, tmp_path / "small-mar").passed
    report = gates.gate_raw(cfg, MAR, tmp_path / "mar")
    assert report.passed
    assert "accepted" in result(report, "raw.volume_matches_recent_months").detail


# -- the rows that decide a column expectation ------------------------------------------


def _holds(values: list, rule: str, low: float, high: float, allowed: set) -> bool:
    """The column rule on plain Python values, as GX decides it (NULLs aside but for
    not_null; NaN lies in no range)."""
    present = [v for v in values if v is not None]
    if rule == "not_null":
        return len(present) == len(values)
    if rule == "between":
        return all(low <= v <= high for v in present)  # NaN compares False: out of range
    return all(v in allowed for v in present)


SPECIAL_FLOATS = st.sampled_from([float("nan"), float("inf"), float("-inf"), 0.0, -0.0])


@given(
    values=st.lists(
        st.one_of(st.none(), SPECIAL_FLOATS, st.floats(-20, 20, width=32)),
        max_size=40,
    ),
    low=st.floats(-10, 10, width=32),
    span=st.floats(0, 20, width=32),
    allowed=st.sets(st.sampled_from([0.0, 1.0, 2.5, -3.0, float("inf")]), max_size=3),
)
@settings(max_examples=300, deadline=None)
@example(values=[1.0, float("nan")], low=0.0, span=1.0, allowed={1.0})
def test_the_deciding_rows_decide_every_column_rule_as_all_rows_do(
    values, low, span, allowed
) -> None:
    column = pa.chunked_array(
        [pa.array(values[:7], pa.float64()), pa.array(values[7:], pa.float64())]
    )
    for rule in ("not_null", "between", "in_set"):
        picked = engine._deciding_indices(column, len(allowed) if rule == "in_set" else None)
        deciding = [values[i] for i in sorted(picked)]
        assert _holds(deciding, rule, low, low + span, allowed) == _holds(
            values, rule, low, low + span, allowed
        ), (rule, deciding)


@given(
    values=st.lists(st.one_of(st.none(), st.sampled_from("abcdefgh")), max_size=60),
    allowed=st.sets(st.sampled_from("abcdefgh"), max_size=4),
)
@settings(max_examples=200, deadline=None)
@example(values=["a", "c", "b"], allowed={"a", "c"})  # b is neither min nor max
def test_the_deciding_rows_of_a_value_set_check(values, allowed) -> None:
    column = pa.chunked_array([pa.array(values, pa.string())])
    deciding = [values[i] for i in engine._deciding_indices(column, len(allowed))]
    outside = {v for v in values if v is not None and v not in allowed}
    assert bool(outside) == any(v is not None and v not in allowed for v in deciding)
    assert (None in values) == (None in deciding)


def test_a_clean_partition_is_validated_on_its_deciding_rows(raw_cfg, tmp_path) -> None:
    report = gates.gate_raw(raw_cfg, JAN, tmp_path / "run")
    assert report.passed
    document = json.loads((tmp_path / "run" / "gates" / "raw.json").read_text())
    (validation,) = [
        v for v in document["gx_validation_results"] if v["subject"] == "lake partition 2026-01"
    ]
    assert validation["batch"].startswith(f"deciding rows of {len(RAW_ROWS)} in 1 batch(es)")
    assert 0 < validation["rows"] < len(RAW_ROWS)
