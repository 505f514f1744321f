"""Sources, the month rule, bad input, quarantine and the atomic lake partition."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.compute.month import compute_month
from pipeline.errors import BadInputError, CorruptPartitionError, MissingMonthError, SourceError
from pipeline.lake import delivery
from pipeline.lake.delivery import MONTH_MONEY_LIMIT, MONTH_UNITS_LIMIT
from pipeline.lake.extract import _judge, extract, extract_months
from pipeline.lake.partition import (
    derived_file,
    extracted_months,
    month_files,
    partition_dir,
    read_manifest,
    read_month,
)
from pipeline.months import add_months, format_month
from pipeline.sources import open_months
from pipeline.sql import bounded_connection

from support import FLOAT_CASE_ROWS, csv_config, float_case_values, write_payments

JAN, FEB, MAR = date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)


def lake_rows(cfg, month) -> list[dict]:
    return read_month(cfg.lake.root, month).to_pylist()


def ids(cfg, month) -> list[str]:
    return [r["payment_id"] for r in lake_rows(cfg, month)]


# --- the month of a payment -------------------------------------------------------

TZ_CASES = [
    # (paid_at as delivered, business time zone, expected month)
    ("2026-01-31T23:30:00Z", "Europe/Oslo", FEB),  # the spec's example
    ("2026-01-31T23:30:00Z", "UTC", JAN),
    ("2026-01-31T22:59:59Z", "Europe/Oslo", JAN),
    ("2026-03-31T21:59:59Z", "Europe/Oslo", MAR),  # summer time: UTC+2
    ("2026-03-31T22:00:00Z", "Europe/Oslo", date(2026, 4, 1)),
    ("2026-10-31T23:00:00Z", "Europe/Oslo", date(2026, 11, 1)),  # back to UTC+1
    ("2028-02-29T23:30:00Z", "Europe/Oslo", date(2028, 3, 1)),  # leap day
    ("2028-02-29 23:30:00", "Europe/Oslo", date(2028, 2, 1)),  # naive: business wall clock
    ("2026-02-01", "Europe/Oslo", FEB),  # date only: midnight in the business zone
    ("2026-02-01T00:30:00+01:00", "UTC", JAN),  # explicit offset wins
    ("2026-01-31 20:00:00", "America/New_York", JAN),
]


@pytest.mark.parametrize("process_tz", ["UTC", "Asia/Tokyo", "America/Los_Angeles"])
@pytest.mark.parametrize(("paid_at", "zone", "expected"), TZ_CASES)
def test_month_is_the_calendar_month_in_the_business_time_zone(
    tmp_path, monkeypatch, process_tz, paid_at, zone, expected
) -> None:
    monkeypatch.setenv("TZ", process_tz)
    time.tzset()
    try:
        source = write_payments(tmp_path / "p.csv", [("p1", "c1", paid_at, "10.00", "EUR")])
        neighbours = (add_months(expected, -1), add_months(expected, 1))
        accept = {"accept": [format_month(m) for m in neighbours]}  # empty after a payment
        cfg = csv_config(
            tmp_path, source, timezone=zone, history_start="2025-01", **{"checks.volume": accept}
        )
        # some cases lie in the future (29 February 2028): provisional lets them extract
        extract(cfg, expected, provisional=True)
        assert ids(cfg, expected) == ["p1"]
        for other in neighbours:
            assert extract(cfg, other, provisional=True).rows_read == 0
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_paid_at_is_stored_as_utc_instant(tmp_path) -> None:
    source = write_payments(
        tmp_path / "p.csv", [("p1", "c1", "2026-02-01 00:30:00", "1.00", "EUR")]
    )
    cfg = csv_config(tmp_path, source, timezone="Europe/Oslo")
    extract(cfg, FEB)
    (row,) = lake_rows(cfg, FEB)
    assert row["paid_at"] == datetime(2026, 1, 31, 23, 30, tzinfo=UTC)
    assert row["month"] == FEB
    assert row["amount"] == Decimal("1.00")


# --- sources ----------------------------------------------------------------------


def test_csv_with_own_header_names_delimiter_and_decimal_comma(tmp_path) -> None:
    source = tmp_path / "export.csv"
    source.write_text(
        "id;kunde;tidspunkt;total_eur;valuta;antall;kost\n"
        'a1;k1;2026-01-05T10:00:00Z;"1234,56";EUR;3;"1000,10"\n'
        "a2;k2;2026-01-06T10:00:00Z;-0,01;EUR;0;0\n"
    )
    columns = {
        "payment_id": "id",
        "customer_id": "kunde",
        "paid_at": "tidspunkt",
        "amount": "total_eur",
        "currency": "valuta",
        "units": "antall",
        "cost": "kost",
    }
    cfg = csv_config(
        tmp_path,
        source,
        source={"delimiter": ";", "decimal_separator": ",", "columns": columns},
    )
    manifest = extract(cfg, JAN)
    rows = {r["payment_id"]: r for r in lake_rows(cfg, JAN)}
    assert rows["a1"]["amount"] == Decimal("1234.56")
    assert rows["a1"]["cost"] == Decimal("1000.10")
    assert rows["a1"]["units"] == 3
    assert rows["a2"]["amount"] == Decimal("-0.01")
    assert manifest.amount_sum == "1234.55"
    assert manifest.columns_present == ["currency", "units", "cost"]


def test_parquet_source_with_typed_columns(tmp_path) -> None:
    table = pa.table(
        {
            "payment_id": ["p1", "p2", "p3"],
            "customer_id": ["c1", "c1", "c2"],
            "paid_at": pa.array(
                [
                    datetime(2026, 1, 31, 23, 30, tzinfo=UTC),
                    datetime(2026, 1, 10, tzinfo=UTC),
                    datetime(2026, 2, 10, tzinfo=UTC),
                ],
                pa.timestamp("us", tz="UTC"),
            ),
            "amount": pa.array(
                [Decimal("10.10"), Decimal("0.20"), Decimal("3.00")], pa.decimal128(12, 2)
            ),
        }
    )
    pq.write_table(table, tmp_path / "payments.parquet")
    cfg = csv_config(
        tmp_path,
        tmp_path / "payments.parquet",
        timezone="Europe/Oslo",
        source={"kind": "parquet"},
    )
    assert extract(cfg, JAN).amount_sum == "0.20"
    assert extract(cfg, FEB).amount_sum == "13.10"
    assert sorted(ids(cfg, FEB)) == ["p1", "p3"]


# The same payments as typed Parquet columns and as CSV text: (payment_id, paid_at,
# amount, units, cost, the problem both must find).
TYPED_ROWS = [
    ("t01", datetime(2026, 1, 5, 10), "5.00", 1, "1.00", None),
    ("t02", datetime(2026, 1, 31, 23, 30), "7.25", 0, "0.00", None),  # Oslo wall clock: Jan
    ("t03", datetime(2026, 1, 6), "1.005", 1, "1.00", "amount with more than 2 decimals"),
    ("t04", datetime(2026, 1, 7), "-3.10", -2, "1.00", "negative units"),
    ("t05", datetime(2026, 1, 8), "4.00", 1, "-0.01", "negative cost"),
    ("t06", datetime(2026, 1, 9), "4.00", 1, "0.125", "cost with more than 2 decimals"),
    ("t07", datetime(2026, 1, 9), None, 1, "1.00", "missing amount"),
    ("t08", datetime(2026, 1, 9), "4.00", None, "1.00", "missing units"),
    ("t09", datetime(2026, 1, 9), "4.00", 1, None, "missing cost"),
    ("t10", None, "4.00", 1, "1.00", "missing paid_at"),
    ("t11", datetime(2026, 1, 9), "12345678901234567.000", 1, "1.00", "amount out of range"),
]


@pytest.mark.parametrize("amount_type", [pa.decimal128(24, 3), pa.float64()])
def test_typed_columns_are_judged_as_their_text_is(tmp_path, amount_type) -> None:
    """A typed source is taken as values, not parsed back from text (the fast path); a
    DOUBLE amount is read as its nearest cent (1.005 is not within its resolution of one).
    Both find the same problems and rows."""
    money = pa.decimal128(24, 3)
    table = pa.table(
        {
            "payment_id": [r[0] for r in TYPED_ROWS],
            "customer_id": ["c1"] * len(TYPED_ROWS),
            "paid_at": pa.array([r[1] for r in TYPED_ROWS], pa.timestamp("us")),  # naive
            "amount": pa.array([r[2] and Decimal(r[2]) for r in TYPED_ROWS], money).cast(
                amount_type
            ),
            "currency": ["EUR"] * len(TYPED_ROWS),
            "units": pa.array([r[3] for r in TYPED_ROWS], pa.int32()),
            "cost": pa.array([r[4] and Decimal(r[4]) for r in TYPED_ROWS], money),
        }
    )
    pq.write_table(table, tmp_path / "typed.parquet")
    text_rows = [
        (r[0], "c1", r[1] and r[1].isoformat(sep=" "), r[2] or "", "EUR", r[3], r[4] or "")
        for r in TYPED_ROWS
    ]
    header = ("payment_id", "customer_id", "paid_at", "amount", "currency", "units", "cost")
    write_payments(tmp_path / "text.csv", text_rows, header)
    found = {}
    for kind, name in (("parquet", "typed.parquet"), ("csv", "text.csv")):
        folder = tmp_path / kind
        folder.mkdir()
        cfg = csv_config(
            folder,
            tmp_path / name,
            timezone="Europe/Oslo",
            source={"kind": kind},
            lake={"quarantine": True},
        )
        manifest = extract(cfg, JAN)
        bad = pq.read_table(cfg.lake.root / "quarantine" / "month=2026-01" / "bad-rows.parquet")
        undated = pq.read_table(cfg.lake.root / "quarantine" / "undated" / "bad-rows.parquet")
        problems = dict(
            zip(
                bad["payment_id"].to_pylist() + undated["payment_id"].to_pylist(),
                bad["problem"].to_pylist() + undated["problem"].to_pylist(),
                strict=True,
            )
        )
        found[kind] = (lake_rows(cfg, JAN), problems, manifest.amount_sum)
        assert problems == {r[0]: r[5] for r in TYPED_ROWS if r[5]}
        assert [r["payment_id"] for r in found[kind][0]] == ["t01", "t02"]
        if kind == "parquet" and amount_type == money:  # a typed value's text in the example
            assert bad.filter(pa.compute.equal(bad["payment_id"], "t03"))["amount"][0].as_py() == (
                "1.005"
            )
    assert found["parquet"] == found["csv"]


def test_a_typed_source_extracts_month_by_month_as_it_does_alone(tmp_path) -> None:
    rows = [
        (f"p{i:03d}", f"c{i % 7}", datetime(2026, 1 + i % 3, 1 + i % 27, 12, tzinfo=UTC), i)
        for i in range(90)
    ] + [("p999", "c1", None, 5)]  # no paid_at: a bad row of every month
    table = pa.table(
        {
            "payment_id": [r[0] for r in rows],
            "customer_id": [r[1] for r in rows],
            "paid_at": pa.array([r[2] for r in rows], pa.timestamp("us", tz="UTC")),
            "amount": pa.array([Decimal(r[3]) for r in rows], pa.decimal128(12, 2)),
        }
    )
    pq.write_table(table, tmp_path / "payments.parquet")
    manifests = {}
    for how in ("together", "alone"):
        folder = tmp_path / how
        folder.mkdir()
        cfg = csv_config(
            folder,
            tmp_path / "payments.parquet",
            source={"kind": "parquet"},
            lake={"quarantine": True},
        )
        if how == "together":
            found = dict(extract_months(cfg, [JAN, FEB, MAR]))
        else:
            found = {m: extract(cfg, m) for m in (JAN, FEB, MAR)}
        manifests[how] = {
            m: (x.rows_written, x.rows_undated, x.amount_sum, x.fingerprint, x.data_files)
            for m, x in found.items()
        }
    assert manifests["together"] == manifests["alone"]
    assert [manifests["alone"][m][:2] for m in (JAN, FEB, MAR)] == [(30, 1)] * 3


def test_duckdb_table_source_with_naive_timestamps(tmp_path) -> None:
    db = tmp_path / "ops.duckdb"
    con = duckdb.connect(str(db))
    con.execute('create table sales (ref varchar, who varchar, "at" timestamp, eur decimal(10, 2))')
    con.execute(
        "insert into sales values ('s1', 'c1', '2026-01-31 23:30:00', 5.00), "
        "('s2', 'c2', '2026-02-01 00:10:00', 7.50), ('s3', 'c2', null, 1.00)"
    )
    con.close()
    cfg = csv_config(
        tmp_path,
        db,
        timezone="Europe/Oslo",
        source={
            "kind": "duckdb",
            "table": "sales",
            "columns": {
                "payment_id": "ref",
                "customer_id": "who",
                "paid_at": "at",
                "amount": "eur",
            },
        },
        lake={"quarantine": True},
    )
    manifest = extract(cfg, JAN)
    assert ids(cfg, JAN) == ["s1"]
    assert manifest.rows_undated == 1  # the row with no paid_at is not silently dropped
    assert extract(cfg, FEB).amount_sum == "7.50"


def test_missing_source_and_missing_required_column(tmp_path) -> None:
    cfg = csv_config(tmp_path, tmp_path / "nope.csv")
    with pytest.raises(SourceError, match="nope.csv"):
        extract(cfg, JAN)
    source = write_payments(
        tmp_path / "p.csv", [("p1", "2026-01-01", "1")], header=("payment_id", "paid_at", "amount")
    )
    with pytest.raises(SourceError, match=r"customer_id"):
        extract(csv_config(tmp_path, source), JAN)


# --- duplicates and bad rows ------------------------------------------------------


def test_exact_duplicates_are_dropped_and_counted(tmp_path) -> None:
    row = ("p1", "c1", "2026-01-05T10:00:00Z", "10.00", "EUR")
    same_value_other_text = ("p1", "c1", "2026-01-05 10:00:00+00", "10.0", "EUR")
    source = write_payments(
        tmp_path / "p.csv",
        [row, row, same_value_other_text, ("p2", "c1", "2026-01-06", "1.00", "EUR")],
    )
    manifest = extract(csv_config(tmp_path, source), JAN)
    assert (manifest.rows_read, manifest.rows_duplicate, manifest.rows_written) == (4, 2, 2)
    assert manifest.amount_sum == "11.00"


BAD_ROWS = [
    (("", "c1", "2026-01-05", "1.00", "EUR"), "missing payment_id"),
    (("b2", "", "2026-01-05", "1.00", "EUR"), "missing customer_id"),
    (("b3", "c1", "2026-01-05", "", "EUR"), "missing amount"),
    (("b4", "c1", "2026-01-05", "12,00", "EUR"), "unparseable amount"),
    (("b5", "c1", "2026-01-05", "1.005", "EUR"), "amount with more than 2 decimals"),
    (("b6", "c1", "2026-01-05", "1.00", "USD"), "other currency"),
    (("b7", "c1", "2026-01-05", "1.00", ""), "missing currency"),
    (("b8", "c1", "yesterday", "1.00", "EUR"), "unparseable paid_at"),
    (("b9", "c1", "", "1.00", "EUR"), "missing paid_at"),
    (("b10", "c1", "2026-02-30", "1.00", "EUR"), "unparseable paid_at"),
    # the two-decimals rule holds at any precision, not only within DECIMAL(38, 10)
    (("b11", "c1", "2026-01-05", "100.00000000001", "EUR"), "amount with more than 2 decimals"),
    (
        ("b12", "c1", "2026-01-05", "100.000000000000000000000001", "EUR"),
        "amount with more than 2 decimals",
    ),
    # too large for DECIMAL(18, 2): named as such, not as "more than 2 decimals"
    (("b13", "c1", "2026-01-05", "20000000000000000.00", "EUR"), "amount out of range"),
    (("b14", "c1", "2026-01-05", "1e40", "EUR"), "amount out of range"),
    (("b15", "c1", "2026-01-05", "inf", "EUR"), "unparseable amount"),
]


@pytest.mark.parametrize(("row", "problem"), BAD_ROWS, ids=[p for _, p in BAD_ROWS])
def test_each_bad_row_class_stops_the_month(tmp_path, row, problem) -> None:
    good = ("g1", "c1", "2026-01-03T10:00:00Z", "5.00", "EUR")
    source = write_payments(tmp_path / "p.csv", [good, row])
    cfg = csv_config(tmp_path, source)
    with pytest.raises(BadInputError) as error:
        extract(cfg, JAN)
    message = str(error.value)
    assert str(source) in message
    assert f"{problem}: 1 row(s)" in message
    assert f"[{problem}]" in message  # an example row is shown
    assert "nothing of this month was written" in message
    with pytest.raises(MissingMonthError):
        read_manifest(cfg.lake.root, JAN)


@pytest.mark.parametrize(
    ("units", "cost", "problem"),
    [
        ("-1", "1.00", "negative units"),
        ("2", "-0.01", "negative cost"),
        ("x", "1.00", "unparseable units"),
        ("1.5", "1.00", "unparseable units"),  # units are whole: never rounded to 2
        ("1", "", "missing cost"),
        ("1", "0.001", "cost with more than 2 decimals"),
        ("1", "99999999999999999.00", "cost out of range"),
    ],
)
def test_negative_or_bad_units_and_cost(tmp_path, units, cost, problem) -> None:
    header = ("payment_id", "customer_id", "paid_at", "amount", "units", "cost")
    source = write_payments(
        tmp_path / "p.csv", [("p1", "c1", "2026-01-05", "3.00", units, cost)], header=header
    )
    with pytest.raises(BadInputError, match=f"{problem}: 1 row"):
        extract(csv_config(tmp_path, source), JAN)


def test_whole_units_written_with_zero_decimals_are_whole(tmp_path) -> None:
    header = ("payment_id", "customer_id", "paid_at", "amount", "units", "cost")
    source = write_payments(
        tmp_path / "p.csv", [("p1", "c1", "2026-01-05", "3.00", "2.0", "1.00")], header=header
    )
    cfg = csv_config(tmp_path, source)
    extract(cfg, JAN)
    assert read_month(cfg.lake.root, JAN)["units"].to_pylist() == [2]


def test_a_month_beyond_the_money_limit_is_rejected_by_name(tmp_path) -> None:
    """Each amount fits DECIMAL(18, 2), but a year of such months would not: the month is
    refused at extract, by name, instead of overflowing a sum later."""
    rows = [(f"p{i}", f"c{i}", "2026-01-05", "9000000000000000.00", "EUR") for i in range(3)] + [
        ("q1", "c1", "2026-02-05", "1.00", "EUR")
    ]
    cfg = csv_config(tmp_path, write_payments(tmp_path / "p.csv", rows))
    with pytest.raises(BadInputError) as error:
        extract(cfg, JAN)
    message = str(error.value)
    assert "month 2026-01" in message and "27000000000000000.00" in message
    assert f"{MONTH_MONEY_LIMIT:,}" in message
    with pytest.raises(MissingMonthError):
        read_manifest(cfg.lake.root, JAN)
    assert extract(cfg, FEB).amount_sum == "1.00"  # other months are not affected


def test_a_month_beyond_the_units_limit_is_rejected_and_one_at_it_computes(tmp_path) -> None:
    """Units are ranked, windowed and squared like money: a month whose units add up to
    more than MONTH_UNITS_LIMIT is refused at extract, by name; one at the limit computes."""
    header = ("payment_id", "customer_id", "paid_at", "amount", "currency", "units")
    limit = MONTH_UNITS_LIMIT
    rows = [("p1", "c1", "2026-01-05", "1.00", "EUR", str(limit - 1))]
    rows += [("p2", "c2", "2026-01-06", "1.00", "EUR", "1")]
    rows += [
        ("q1", "c1", "2026-02-05", "1.00", "EUR", str(limit)),
        ("q2", "c2", "2026-02-06", "1.00", "EUR", "1"),
    ]
    cfg = csv_config(tmp_path, write_payments(tmp_path / "p.csv", rows, header=header))
    extract(cfg, JAN)
    with pytest.raises(BadInputError) as error:
        extract(cfg, FEB)
    message = str(error.value)
    assert "month 2026-02" in message and f"units is {limit + 1}" in message
    assert f"{limit:,}" in message
    with pytest.raises(MissingMonthError):
        read_manifest(cfg.lake.root, FEB)
    tables = compute_month(cfg, JAN)
    units = {
        r["customer_id"]: r["value"]
        for r in tables["customer_abc"].to_pylist()
        if r["metric"] == "units" and r["window_months"] == 12
    }
    assert units == {"c1": Decimal(limit - 1), "c2": Decimal(1)}


def test_a_fresh_lake_can_spill(tmp_path) -> None:
    """DuckDB creates its spill folder but not the folders above it: an extract that spills
    into a lake that does not exist yet must not fail."""
    source = write_payments(tmp_path / "p.csv", [("p1", "c1", "2026-01-05", "1.00", "EUR")])
    cfg = csv_config(tmp_path, source)
    assert not cfg.lake.root.exists()
    con = bounded_connection(cfg)
    try:
        spill = con.execute("select current_setting('temp_directory')").fetchone()[0]
        assert Path(spill) == cfg.lake.root / ".spill" and Path(spill).is_dir()
    finally:
        con.close()


def test_same_payment_id_with_different_values_is_an_error(tmp_path) -> None:
    source = write_payments(
        tmp_path / "p.csv",
        [
            ("p1", "c1", "2026-01-05", "10.00", "EUR"),
            ("p1", "c1", "2026-01-05", "11.00", "EUR"),
        ],
    )
    with pytest.raises(
        BadInputError, match="payment_id repeated with different values: 2 row"
    ) as e:
        extract(csv_config(tmp_path, source), JAN)
    assert "amount='11.00'" in str(e.value) and "amount='10.00'" in str(e.value)


def test_a_failed_re_extract_keeps_the_previous_partition(tmp_path) -> None:
    source = write_payments(tmp_path / "p.csv", [("p1", "c1", "2026-01-05", "10.00", "EUR")])
    cfg = csv_config(tmp_path, source)
    extract(cfg, JAN)
    write_payments(source, [("p1", "c1", "2026-01-05", "oops", "EUR")])
    with pytest.raises(BadInputError):
        extract(cfg, JAN)
    assert read_manifest(cfg.lake.root, JAN).amount_sum == "10.00"


def test_quarantine_sets_bad_rows_aside_and_counts_them(tmp_path) -> None:
    rows = [("g1", "c1", "2026-01-03T10:00:00Z", "5.00", "EUR")] + [r for r, _ in BAD_ROWS]
    source = write_payments(tmp_path / "p.csv", rows)
    cfg = csv_config(tmp_path, source, lake={"quarantine": True})
    manifest = extract(cfg, JAN)
    assert ids(cfg, JAN) == ["g1"]
    assert manifest.rows_written == 1
    undated_problems = ("unparseable paid_at", "missing paid_at")
    n_undated = sum(p in undated_problems for _, p in BAD_ROWS)
    assert n_undated == 3
    assert manifest.rows_quarantined == len(BAD_ROWS) - n_undated  # dated bad rows of January
    assert manifest.rows_undated == n_undated  # paid_at missing or unparseable
    assert manifest.rows_read == len(BAD_ROWS) + 1
    assert sum(manifest.problems.values()) == len(BAD_ROWS)
    quarantined = pq.read_table(cfg.lake.root / "quarantine" / "month=2026-01" / "bad-rows.parquet")
    assert sorted(quarantined.column("problem").to_pylist()) == sorted(
        p for (_, p) in BAD_ROWS if p not in undated_problems
    )
    undated = pq.read_table(cfg.lake.root / "quarantine" / "undated" / "bad-rows.parquet")
    assert undated.num_rows == 3
    assert "b8" in undated.column("payment_id").to_pylist()


def test_quarantine_flag_overrides_the_config(tmp_path) -> None:
    source = write_payments(tmp_path / "p.csv", [("b1", "c1", "2026-01-05", "x", "EUR")])
    cfg = csv_config(tmp_path, source)
    assert extract(cfg, JAN, quarantine=True).rows_quarantined == 1


# --- atomic, idempotent partitions ------------------------------------------------


def _partition_bytes(cfg, month) -> dict[str, bytes]:
    folder = partition_dir(cfg.lake.root, month)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_re_extract_is_byte_identical(tmp_path, golden) -> None:
    cfg = csv_config(tmp_path, golden / "basics" / "payments.csv")
    extract(cfg, FEB)
    first = _partition_bytes(cfg, FEB)
    time.sleep(1.1)  # a different extracted_at
    extract(cfg, FEB)
    second = _partition_bytes(cfg, FEB)
    assert first.keys() == second.keys()
    for name in first:
        if name == "manifest.json":
            a, b = json.loads(first[name]), json.loads(second[name])
            assert a.pop("extracted_at") != b.pop("extracted_at")
            assert a == b
        else:
            assert first[name] == second[name]


def test_re_extract_replaces_its_month_only(tmp_path) -> None:
    source = write_payments(
        tmp_path / "p.csv",
        [
            ("p1", "c1", "2026-01-05", "10.00", "EUR"),
            ("p2", "c1", "2026-02-05", "20.00", "EUR"),
        ],
    )
    cfg = csv_config(tmp_path, source)
    january = extract(cfg, JAN).fingerprint
    extract(cfg, FEB)
    february = _partition_bytes(cfg, FEB)
    write_payments(
        source,
        [("p1", "c1", "2026-01-05", "11.00", "EUR"), ("p3", "c1", "2026-01-06", "1.00", "EUR")],
    )
    restated = extract(cfg, JAN)
    assert restated.amount_sum == "12.00"
    assert restated.fingerprint != january  # the source data of January changed
    assert _partition_bytes(cfg, FEB) == february
    # payments, the customer_month and ranking derived from them, the manifest naming all,
    # and the three files the previous manifest named, kept for a run still reading them
    manifest = read_manifest(cfg.lake.root, JAN)
    named = {*manifest.data_files, manifest.customer_month_file, manifest.monthly_ranking_file}
    assert len(named) == 3 and len(manifest.superseded) == 3 and not named & {*manifest.superseded}
    names = {p.name for p in partition_dir(cfg.lake.root, JAN).iterdir()}
    assert names == {*named, *manifest.superseded, "manifest.json"}
    derived = pq.read_table(derived_file(cfg.lake.root, JAN, "customer_month")).to_pylist()
    assert [(r["customer_id"], r["revenue"], r["payments"]) for r in derived] == [
        ("c1", Decimal("12.00"), 2)
    ]
    ranking = pq.read_table(derived_file(cfg.lake.root, JAN, "monthly_ranking"))
    assert {(r["metric"], r["value"]) for r in ranking.to_pylist()} == {
        ("revenue", Decimal("12.00")),
        ("payments", Decimal("2.00")),
    }


KILLER = """
import os, signal, sys
import pipeline.lake.publish as publish
from pipeline.config import load_config
from pipeline.lake.extract import extract
from pipeline.months import parse_month

where = sys.argv[2]
if where == "manifest":  # data file written, manifest not yet swapped
    real = publish.atomic_write
    def die(path, data):
        os.kill(os.getpid(), signal.SIGKILL)
    publish.atomic_write = die
else:  # in the middle of writing the data file
    real = publish.pq.write_table
    def die(table, where_to, **kw):
        with open(where_to, "wb") as handle:
            handle.write(b"PAR1 truncated")
        os.kill(os.getpid(), signal.SIGKILL)
    publish.pq.write_table = die
extract(load_config(sys.argv[1]), parse_month("2026-01"))
"""


@pytest.mark.parametrize("where", ["data", "manifest"])
def test_extract_killed_midway_leaves_the_partition_intact(tmp_path, where) -> None:
    source = write_payments(
        tmp_path / "p.csv",
        [
            ("p1", "c1", "2026-01-05", "10.00", "EUR"),
            ("p2", "c1", "2026-02-05", "20.00", "EUR"),
        ],
    )
    cfg = csv_config(tmp_path, source)
    extract(cfg, JAN)
    extract(cfg, FEB)
    before = {m: _partition_bytes(cfg, m) for m in (JAN, FEB)}
    write_payments(
        source,
        [("p1", "c1", "2026-01-05", "99.00", "EUR"), ("p2", "c1", "2026-02-05", "20.00", "EUR")],
    )
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "tiers.toml"), where],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    # readers still see the previous January, February is untouched
    assert lake_rows(cfg, JAN)[0]["amount"] == Decimal("10.00")
    assert read_manifest(cfg.lake.root, JAN).amount_sum == "10.00"
    assert _partition_bytes(cfg, FEB) == before[FEB]
    # a rerun converges and cleans up the orphan
    assert extract(cfg, JAN).amount_sum == "99.00"
    assert lake_rows(cfg, JAN)[0]["amount"] == Decimal("99.00")
    assert not [p for p in partition_dir(cfg.lake.root, JAN).iterdir() if p.name.startswith(".tmp")]
    assert _partition_bytes(cfg, FEB) == before[FEB]


GOLDEN_SETUP = {"basics": ("UTC", "2026-01"), "full": ("Europe/Oslo", "2025-01")}


@pytest.mark.parametrize("case", sorted(GOLDEN_SETUP))
def test_golden_inputs_extract_with_the_counts_their_customer_month_implies(
    golden, tmp_path, case
) -> None:
    zone, start = GOLDEN_SETUP[case]
    source = golden / case / "payments.csv"
    lines = source.read_text().splitlines()[1:]
    expected_duplicates = len(lines) - len(set(lines))
    expected = {}  # month -> (sum of revenue, sum of payments) from expected/customer_month
    for row in csv.DictReader((golden / case / "expected" / "customer_month.csv").open()):
        revenue, payments = expected.get(row["month"], (Decimal(0), 0))
        expected[row["month"]] = (
            revenue + Decimal(row["revenue"]),
            payments + int(row["payments"]),
        )
    cfg = csv_config(tmp_path, source, timezone=zone, history_start=start)
    months = [date.fromisoformat(m) for m in sorted(expected)]
    manifests = dict(extract_months(cfg, months))
    duplicates = 0
    for month, manifest in manifests.items():
        revenue, payments = expected[month.isoformat()]
        rows = lake_rows(cfg, month)
        assert Decimal(manifest.amount_sum) == revenue, month
        assert sum(1 for r in rows if r["amount"] > 0) == payments, month
        assert manifest.rows_read == manifest.rows_written + manifest.rows_duplicate
        duplicates += manifest.rows_duplicate
    assert duplicates == expected_duplicates
    assert sum(m.rows_read for m in manifests.values()) == len(lines)


def _damage(path: Path) -> None:
    """Replace a file under its own name, as a tool or a disk fault would."""
    table = pq.read_table(path)
    pq.write_table(table.slice(0, max(table.num_rows - 1, 0)), path)


@pytest.mark.parametrize("which", ["payments", "customer_month", "monthly_ranking"])
def test_a_lake_file_replaced_under_its_name_is_refused_by_name(tmp_path, which) -> None:
    rows = [("p1", "c1", "2026-01-05", "10.00", "EUR"), ("p2", "c2", "2026-01-06", "5.00", "EUR")]
    cfg = csv_config(tmp_path, write_payments(tmp_path / "p.csv", rows))
    extract(cfg, JAN)
    if which == "payments":
        (path,) = month_files(cfg.lake.root, JAN)
        read = lambda: month_files(cfg.lake.root, JAN)  # noqa: E731
    else:
        path = derived_file(cfg.lake.root, JAN, which)
        read = lambda: derived_file(cfg.lake.root, JAN, which)  # noqa: E731
    _damage(Path(path))
    with pytest.raises(CorruptPartitionError) as error:
        read()
    message = str(error.value)
    assert "month 2026-01" in message and Path(path).name in message
    assert "changed after the extract" in message and "tiers extract --month 2026-01" in message
    extract(cfg, JAN)  # the repair the message names
    assert read_month(cfg.lake.root, JAN).num_rows == 2


@pytest.mark.parametrize(
    ("damage", "cause"),
    [
        (lambda p: p.write_text(p.read_text()[:40]), "cannot be read"),
        (lambda p: p.write_text(p.read_text().replace('"month"', '"mnth"', 1)), "cannot be read"),
        (lambda p: (p.parent / json.loads(p.read_text())["data_files"][0]).unlink(), "missing"),
    ],
    ids=["truncated", "unknown key", "names a missing file"],
)
def test_a_damaged_manifest_is_refused_by_name(tmp_path, damage, cause) -> None:
    cfg = csv_config(
        tmp_path, write_payments(tmp_path / "p.csv", [("p1", "c1", "2026-01-05", "1.00", "EUR")])
    )
    extract(cfg, JAN)
    damage(partition_dir(cfg.lake.root, JAN) / "manifest.json")
    with pytest.raises(CorruptPartitionError, match=cause) as error:
        month_files(cfg.lake.root, JAN)
    assert "month 2026-01" in str(error.value) and "tiers extract --month 2026-01" in str(
        error.value
    )


def test_a_payment_id_in_two_months_is_an_error_naming_both(tmp_path) -> None:
    source = write_payments(
        tmp_path / "p.csv",
        [("p1", "c1", "2026-01-05", "10.00", "EUR"), ("p2", "c1", "2026-02-05", "20.00", "EUR")],
    )
    cfg = csv_config(tmp_path, source)
    extract(cfg, JAN)
    write_payments(  # p1 is now in February: January in the lake still holds it
        source,
        [
            ("p2", "c1", "2026-02-05", "20.00", "EUR"),
            ("p1", "c9", "2026-02-07", "11.00", "EUR"),  # the same payment_id, another month
        ],
    )
    with pytest.raises(BadInputError) as error:
        extract(cfg, FEB)
    message = str(error.value)
    assert "month 2026-02" in message and "month(s) 2026-01" in message
    assert "p1: paid_at 2026-02-07" in message and "in 2026-01" in message
    assert "tiers backfill --from 2026-01 --to 2026-02" in message
    with pytest.raises(MissingMonthError):
        read_manifest(cfg.lake.root, FEB)


def test_a_payment_the_source_moved_to_another_month_extracts_oldest_first(tmp_path) -> None:
    """A corrected paid_at moves p1 from January to February: re-extracting both months in
    order (as a backfill does) succeeds, and p1 is in February only."""
    january = ("p0", "c1", "2026-01-20", "5.00", "EUR")
    source = write_payments(
        tmp_path / "p.csv",
        [
            january,
            ("p1", "c1", "2026-01-31", "10.00", "EUR"),
            ("p2", "c1", "2026-02-05", "20.00", "EUR"),
        ],
    )
    cfg = csv_config(tmp_path, source)
    extract(cfg, JAN), extract(cfg, FEB)
    write_payments(
        source,
        [
            january,
            ("p1", "c1", "2026-02-01", "10.00", "EUR"),
            ("p2", "c1", "2026-02-05", "20.00", "EUR"),
        ],
    )
    outcomes = dict(extract_months(cfg, [JAN, FEB]))
    assert not any(isinstance(o, Exception) for o in outcomes.values()), outcomes
    assert ids(cfg, JAN) == ["p0"] and ids(cfg, FEB) == ["p1", "p2"]


def test_months_whose_payment_ids_do_not_overlap_are_not_read(tmp_path, monkeypatch) -> None:
    source = write_payments(
        tmp_path / "p.csv",
        [("a1", "c1", "2026-01-05", "10.00", "EUR"), ("b1", "c1", "2026-02-05", "20.00", "EUR")],
    )
    cfg = csv_config(tmp_path, source)
    extract(cfg, JAN)
    read = []
    monkeypatch.setattr(delivery, "month_files", lambda root, m: read.append(m) or [])
    extract(cfg, FEB)
    assert read == []  # January's ids (a1..a1) cannot clash with February's (b1..b1)


def test_a_duckdb_source_is_attached_once_per_connection(tmp_path) -> None:
    """An extract opens its source for the range of months, then for each month, on one
    connection: the database is attached once (and another file replaces it)."""
    paths = []
    for name, amount in (("one", "1.00"), ("two", "2.00")):
        db = tmp_path / f"{name}.duckdb"
        con = duckdb.connect(str(db))
        con.execute(
            "create table payments as select 'p1' as payment_id, 'c1' as customer_id, "
            f"timestamptz '2026-01-05 10:00:00+00' as paid_at, {amount}::decimal(18, 2) as amount"
        )
        con.close()
        paths.append(db)
    con = duckdb.connect()
    for path, expected in ((paths[0], "1.00"), (paths[0], "1.00"), (paths[1], "2.00")):
        cfg = csv_config(tmp_path, path, source={"kind": "duckdb", "table": "payments"})
        open_months(con, cfg.source, JAN, FEB, "UTC")
        assert con.sql("select amount_value::varchar from source_rows").fetchall() == [(expected,)]
    assert con.sql(
        "select count(*) from duckdb_databases() where database_name = 'source_db'"
    ).fetchall() == [(1,)]


# --- amounts and costs as binary floating point ------------------------------------------

MONEY_TYPES = {"double": pa.float64(), "real": pa.float32(), "decimal": pa.decimal128(18, 2)}


def money_source(folder: Path, kind: str, rows, amounts, costs, money: str) -> Path:
    """Payments as a Parquet file or a DuckDB table (``kind``), amount and cost of the type
    ``money`` ("double", "real" or "decimal"); returns the file."""
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "payment_id": [r[0] for r in rows],
            "customer_id": [r[1] for r in rows],
            "paid_at": pa.array(
                [datetime.fromisoformat(r[2]) for r in rows], pa.timestamp("us", tz="UTC")
            ),
            "amount": pa.array(amounts, MONEY_TYPES[money]),
            "cost": pa.array(costs, MONEY_TYPES[money]),
        }
    )
    if kind == "parquet":
        pq.write_table(table, folder / "payments.parquet")
        return folder / "payments.parquet"
    con = duckdb.connect(str(folder / "payments.duckdb"))
    con.register("given", table)
    con.execute("create table payments as select * from given")
    con.close()
    return folder / "payments.duckdb"


def money_config(folder: Path, kind: str, path: Path, **sections):
    source = {"kind": kind} | ({"table": "payments"} if kind == "duckdb" else {})
    return csv_config(folder, path, source=source, **sections)


def decimal_case_months(folder: Path) -> dict:
    """The months of FLOAT_CASE_ROWS extracted from DECIMAL(18, 2) columns."""
    rows = FLOAT_CASE_ROWS
    amounts, costs = [Decimal(r[3]) for r in rows], [Decimal(r[4]) for r in rows]
    path = money_source(folder, "parquet", rows, amounts, costs, "decimal")
    return dict(extract_months(money_config(folder, "parquet", path), [JAN, FEB]))


MANIFEST_SAME = (
    "rows_read",
    "rows_duplicate",
    "rows_quarantined",
    "rows_written",
    "amount_sum",
    "fingerprint",
    "data_files",
    "customer_month_file",
    "monthly_ranking_file",
)


@pytest.mark.parametrize("money", ["double", "real"])
@pytest.mark.parametrize("kind", ["parquet", "duckdb"])
def test_float_amounts_and_costs_load_as_the_decimal_month(tmp_path, kind, money) -> None:
    """Floats with noise (4.440892e-16, 0.1 + 0.2, -19.990000000000002, a few units in the
    last place) are their nearest cents: the months equal, file for file, the months of
    the same payments in DECIMAL columns, and the manifest counts the rounded rows."""
    expected = decimal_case_months(tmp_path / "decimal")
    amounts, costs, rounded = float_case_values(money)
    path = money_source(tmp_path / kind, kind, FLOAT_CASE_ROWS, amounts, costs, money)
    cfg = money_config(tmp_path / kind, kind, path)
    found = dict(extract_months(cfg, [JAN, FEB]))
    for month in (JAN, FEB):
        got, want = found[month], expected[month]
        assert {k: getattr(got, k) for k in MANIFEST_SAME} == {
            k: getattr(want, k) for k in MANIFEST_SAME
        }
        assert (got.rows_rounded, want.rows_rounded) == (rounded[got.month], 0)
    assert found[JAN].rows_duplicate == 1  # f07: exact once rounded
    assert found[JAN].amount_sum == "101234.86"
    stored = {r["payment_id"]: r for r in lake_rows(cfg, JAN)}
    assert (stored["f02"]["amount"], stored["f02"]["cost"]) == (Decimal("0.00"), Decimal("0.00"))
    assert stored["f03"]["amount"] == Decimal("0.30")
    assert stored["f04"]["amount"] == Decimal("-19.99")


def judged(cfg, month: date) -> dict[str, tuple]:
    """How the staging SQL judges the source's rows of ``month``: payment_id -> (amount,
    cost, problem, rounded), below the checks of a whole month (its money limit)."""
    con = bounded_connection(cfg)
    try:
        source = open_months(con, cfg.source, month, month, cfg.business.timezone)
        _judge(con, cfg, source)
        found = con.execute(
            "select payment_id, amount, cost, problem, rounded from judged_payments"
        ).fetchall()
    finally:
        con.close()
    return {row[0]: row[1:] for row in found}


MORE = "amount with more than 2 decimals"
OUT = "amount out of range"
NAN = "unparseable amount"
# (float as the source holds it, the type, the amount it means, its problem, rounded):
# a float is the cent within 1e-6 of it, or within 4 units in the last place of its own
# type where that is coarser
FLOAT_AMOUNTS = [
    (0.0, "double", "0.00", None, False),
    (-0.0, "double", "0.00", None, False),
    (4.440892e-16, "double", "0.00", None, True),
    (0.1 + 0.2, "double", "0.30", None, True),
    (0.3, "double", "0.30", None, False),
    (19.99, "double", "19.99", None, False),
    (19.990000000000002, "double", "19.99", None, True),
    (-19.990000000000002, "double", "-19.99", None, True),
    (19.99 + 9e-7, "double", "19.99", None, True),  # within 1e-6
    (19.99 + 2e-6, "double", None, MORE, False),
    (1.234, "double", None, MORE, False),
    (-1.234, "double", None, MORE, False),
    (1.005, "double", None, MORE, False),
    (1e12 + 0.01, "double", "1000000000000.01", None, False),
    (1e12 + 0.0001, "double", "1000000000000.00", None, True),  # 1 ulp of 1e12 is 1.2e-4
    (1e12 + 0.001, "double", None, MORE, False),  # 8 ulps
    (-1e12 - 0.0001, "double", "-1000000000000.00", None, True),
    (123456789012345.67, "double", "123456789012345.67", None, False),  # ulp 1/64
    (9999999999999998.0, "double", "9999999999999998.00", None, False),  # below 1e16
    (-9999999999999998.0, "double", "-9999999999999998.00", None, False),
    (1e16, "double", None, OUT, False),
    (-1e17, "double", None, OUT, False),
    (float("nan"), "double", None, NAN, False),
    (float("inf"), "double", None, NAN, False),
    (float("-inf"), "double", None, NAN, False),
    (19.99, "real", "19.99", None, False),  # 19.9899997711..., the float nearest to 19.99
    (19.990001678466797, "real", "19.99", None, True),  # 1 ulp (1.9e-6) above it
    (19.990005493164062, "real", "19.99", None, True),  # 3 ulps
    (19.990007400512695, "real", "19.99", None, True),  # 4 ulps: 7.4e-6 off
    (19.990009307861328, "real", None, MORE, False),  # 5 ulps: 9.3e-6 off
    (1.234, "real", None, MORE, False),
    (-19.99, "real", "-19.99", None, False),
    (123456.78, "real", "123456.78", None, False),  # 123456.78125
    (1e12, "real", "999999995904.00", None, False),  # the float is 999999995904
    (1e16, "real", None, OUT, False),
    (float("nan"), "real", None, NAN, False),
]


@pytest.mark.parametrize("kind", ["parquet", "duckdb"])
def test_a_float_is_its_nearest_cent_within_its_resolution(tmp_path, kind) -> None:
    for money in ("double", "real"):
        cases = [c for c in FLOAT_AMOUNTS if c[1] == money]
        rows = [(f"x{i:02d}", "c1", "2026-01-05T10:00:00Z") for i in range(len(cases))]
        amounts = [c[0] for c in cases]
        costs = [abs(c[0]) if c[3] is None else 1.0 for c in cases]  # cost is judged alike
        path = money_source(tmp_path / money, kind, rows, amounts, costs, money)
        found = judged(money_config(tmp_path / money, kind, path), JAN)
        for (pid, *_), (value, _, amount, problem, rounded) in zip(rows, cases, strict=True):
            got_amount, got_cost, got_problem, got_rounded = found[pid]
            assert (got_problem, got_rounded) == (problem, rounded), (value, money)
            if amount is not None:
                assert (got_amount, got_cost) == (Decimal(amount), abs(Decimal(amount))), value


@pytest.mark.parametrize("money", ["double", "real"])
def test_a_float_that_is_its_cents_own_float_is_not_counted_as_rounded(tmp_path, money) -> None:
    """Every cent as its writer typed it (float("12.29"), what pandas writes for a price
    column): read as that cent and not counted as rounded, however its float's fraction
    times 100 happens to round. CDNOW's prices counted 12 to 17 rows a month as rounded."""
    cents = [*range(0, 100_000, 7), *range(99_000_000, 99_010_000, 3)]
    amounts = [float(f"{c // 100}.{c % 100:02d}") for c in cents]
    rows = [(f"x{i:05d}", "c1", "2026-01-05T10:00:00Z") for i in range(len(cents))]
    path = money_source(tmp_path, "parquet", rows, amounts, [0.0] * len(cents), money)
    found = judged(money_config(tmp_path, "parquet", path), JAN)
    if money == "real":  # a REAL holds 7 digits: the larger cents are not their own floats
        cents = [c for c in cents if c < 100_000]
    for (pid, *_), cent in zip(rows, cents, strict=False):
        amount, _, problem, rounded = found[pid]
        assert (amount, problem, rounded) == (Decimal(cent) / 100, None, False), cent


@pytest.mark.parametrize("money", ["double", "real"])
@pytest.mark.parametrize("kind", ["parquet", "duckdb"])
def test_a_float_far_from_every_cent_is_a_bad_row(tmp_path, kind, money) -> None:
    rows = [
        ("b1", "c1", "2026-01-05T10:00:00Z"),
        ("b2", "c1", "2026-01-06T10:00:00Z"),
        ("b3", "c2", "2026-01-07T10:00:00Z"),
        ("b4", "c2", "2026-01-08T10:00:00Z"),
    ]
    path = money_source(
        tmp_path, kind, rows, [1.234, 5.0, -1.234, 0.1 + 0.2], [1.0, 1.234, 2.0, -0.01], money
    )
    cfg = money_config(tmp_path, kind, path)
    with pytest.raises(BadInputError) as refused:
        extract(cfg, JAN)
    message = str(refused.value)
    assert "month 2026-01 has 4 bad row(s); nothing of this month was written" in message
    assert "amount with more than 2 decimals: 2 row(s)" in message
    assert "cost with more than 2 decimals: 1 row(s)" in message
    assert "negative cost: 1 row(s)" in message  # -0.01 is a cent, below zero
    assert "[amount with more than 2 decimals] payment_id='b1', customer_id='c1'" in message
    assert "amount='1.234'" in message and "amount='-1.234'" in message
    assert "cost='1.234'" in message
    assert extracted_months(cfg.lake.root) == []
    manifest = extract(cfg, JAN, quarantine=True)
    assert (manifest.rows_quarantined, manifest.rows_written) == (4, 0)
    bad = pq.read_table(cfg.lake.root / "quarantine" / "month=2026-01" / "bad-rows.parquet")
    assert sorted(zip(bad["payment_id"].to_pylist(), bad["amount"].to_pylist(), strict=True)) == [
        ("b1", "1.234"),
        ("b2", "5.0"),
        ("b3", "-1.234"),
        ("b4", "0.3" if money == "real" else "0.30000000000000004"),
    ]


def test_a_payment_id_dated_before_history_start_too_is_named_as_such(tmp_path) -> None:
    source = write_payments(
        tmp_path / "p.csv",
        [("p1", "c1", "2026-01-05", "10.00", "EUR"), ("p1", "c1", "1900-01-15", "10.00", "EUR")],
    )
    cfg = csv_config(tmp_path, source)
    with pytest.raises(BadInputError) as error:
        extract(cfg, JAN)
    assert "in month(s) 1900-01 (before [business] history_start);" in str(error.value)
    assert extracted_months(cfg.lake.root) == []


# --- what the history says: empty months, months before its start ------------------


def extracted_or_refused(cfg, month, **options) -> str:
    try:
        return f"{extract(cfg, month, **options).rows_written} written"
    except BadInputError as exc:
        return str(exc)


def test_an_empty_month_is_refused_once_the_history_has_payments(tmp_path) -> None:
    source = write_payments(tmp_path / "p.csv", [])
    accept = {"accept": ["2026-02"]}
    cfg = csv_config(tmp_path, source, history_start="2025-12", **{"checks.volume": accept})
    assert extracted_or_refused(cfg, date(2025, 12, 1)) == "0 written"  # the history's first
    assert extracted_or_refused(cfg, JAN) == "0 written"  # nothing before it had payments
    write_payments(source, [("p1", "c1", "2026-01-05", "10.00", "EUR")])
    assert extracted_or_refused(cfg, JAN) == "1 written"
    write_payments(source, [])
    assert "the lake holds 1 payment(s) of 2026-01" in extracted_or_refused(cfg, JAN)
    assert extracted_or_refused(cfg, FEB) == "0 written"  # accepted as empty
    # March follows an accepted empty February: January's payments make it active
    refused = extracted_or_refused(cfg, MAR)
    assert "month 2026-03 has no payments" in refused
    assert "2026-01 has 1 payment(s) in the lake" in refused
    assert 'add "2026-03" to [checks.volume] accept' in refused
    assert extracted_months(cfg.lake.root) == [date(2025, 12, 1), JAN, FEB]
    assert ids(cfg, JAN) == ["p1"]
    # quarantined bad rows are not payments: the month is still empty
    write_payments(source, [("p2", "c1", "2026-03-05", "ten", "EUR")])
    refused = extracted_or_refused(cfg, MAR, quarantine=True)
    assert "month 2026-03 has no good payments (1 bad row(s) set aside)" in refused
    assert not (tmp_path / "lake" / "quarantine" / "month=2026-03").exists()


def test_months_before_history_start_are_neither_extracted_nor_count(tmp_path) -> None:
    source = write_payments(tmp_path / "p.csv", [("p0", "c1", "2025-12-05", "10.00", "EUR")])
    cfg = csv_config(tmp_path, source, history_start="2025-12")
    extract(cfg, date(2025, 12, 1))  # a month of an earlier history_start
    cfg = csv_config(tmp_path, source, history_start="2026-01")
    refused = extracted_or_refused(cfg, date(2025, 12, 1))
    assert refused.startswith("month 2025-12 lies before the history's start, [business] ")
    assert 'history_start = "2026-01"' in refused
    write_payments(source, [])
    assert extracted_or_refused(cfg, JAN) == "0 written"  # December counts as empty
