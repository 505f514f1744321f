"""A CSV source that the parser cannot read is bad input: the error names the file and line.

Such a file fails the same way on every try, so it must not look like a passing I/O
problem (the DAG fails BadInputError at once) and must say where to look.
"""

from __future__ import annotations

import pytest

from pipeline import lake
from pipeline.lake import BadInputError
from pipeline.months import parse_month

from support import csv_config

HEADER = "payment_id,customer_id,paid_at,amount,currency\n"


def good_rows(count: int, quoted: bool = False) -> str:
    customer = '"c{}"' if quoted else "c{}"
    return "".join(
        f"p{i},{customer.format(i % 7)},2026-01-{1 + i % 28:02d}T10:00:00Z,10.00,EUR\n"
        for i in range(count)
    )


def extract_january(tmp_path, text: str):
    source = tmp_path / "payments.csv"
    source.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    cfg = csv_config(tmp_path, source)
    with pytest.raises(BadInputError) as caught:
        lake.extract(cfg, parse_month("2026-01"))
    assert not (tmp_path / "lake" / "payments" / "month=2026-01").exists()
    return str(caught.value), source


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ("px,c1,2026-01-02T00:00:00Z,12.00,EUR,x\n", "Expected Number of Columns: 5 Found: 6"),
        ("px,c1\n", "Expected Number of Columns: 5 Found: 2"),
        ('px,"c1"x,2026-01-02T00:00:00Z,12.00,EUR\n', "unterminated quote"),
    ],
)
def test_a_row_the_parser_rejects_names_file_and_line(tmp_path, bad_line, reason):
    # the bad row comes after DuckDB's sniffing sample: it fails while the month is read
    text = HEADER + good_rows(30_000, quoted=True) + bad_line + good_rows(10, quoted=True)
    message, source = extract_january(tmp_path, text)
    assert f"{source}: line 30002: the CSV parser cannot read the source" in message
    assert reason in message
    assert "Traceback" not in message


def test_a_file_whose_dialect_cannot_be_sniffed_is_scanned_for_the_line(tmp_path):
    # a stray carriage return inside a short file: DuckDB names no line, the scan does
    text = HEADER + good_rows(5) + "px,c1\r2026-01-02T00:00:00Z,12.00,EUR\n" + good_rows(3)
    message, source = extract_january(tmp_path, text)
    assert f"{source}: line 7: the CSV parser cannot read the source" in message


def test_a_file_that_is_not_utf8_names_the_line(tmp_path):
    text = (HEADER + good_rows(20)).encode() + b"px,c\xff\xfe1,2026-01-02,1.00,EUR\n"
    message, source = extract_january(tmp_path, text)
    assert f"{source}: line 22" in message
    assert "utf-8" in message.lower()


def test_the_scan_finds_the_first_row_with_another_field_count(tmp_path):
    from pipeline.sources import _scan_csv

    path = tmp_path / "x.csv"
    path.write_text(HEADER + good_rows(3) + "p9,c9,2026-01-02\n")
    assert _scan_csv(str(path), ",") == 5
    path.write_text(HEADER + good_rows(3))
    assert _scan_csv(str(path), ",") is None
    path.write_text(HEADER + 'p1,"c1,2026-01-02,1.00,EUR\n')  # a quote never closed
    assert _scan_csv(str(path), ",") == 2
