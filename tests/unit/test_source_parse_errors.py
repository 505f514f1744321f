"""A CSV source that the parser cannot read is bad input: the error names the file and line.

Such a file fails the same way on every try, so it must not look like a passing I/O
problem (the DAG fails BadInputError at once) and must say where to look.
"""

from __future__ import annotations

import pytest

from pipeline.errors import BadInputError
from pipeline.lake.extract import extract
from pipeline.lake.partition import read_month
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
        extract(cfg, parse_month("2026-01"))
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
    from pipeline.sources.files import _scan_csv

    path = tmp_path / "x.csv"
    path.write_text(HEADER + good_rows(3) + "p9,c9,2026-01-02\n")
    assert _scan_csv(str(path), ",") == (5, "3 field(s) where the header has 5")
    path.write_text(HEADER + good_rows(3))
    assert _scan_csv(str(path), ",") is None
    never_closed = (2, "a quoted field opened on this line is never closed")
    path.write_text(HEADER + 'p1,"c1,2026-01-02,1.00,EUR\n')
    assert _scan_csv(str(path), ",") == never_closed
    path.write_text(HEADER + 'p1,"c1,2026-01-02,1.00,EUR\n' + good_rows(3))  # the line it opens
    assert _scan_csv(str(path), ",") == never_closed
    path.write_bytes((HEADER + good_rows(3)).replace("\n", "\r\n").encode() + b"p9,c9,x,1,EUR\n")
    assert _scan_csv(str(path), ",") == (5, "the line ends in '\\n' where line 1 ends in '\\r\\n'")


# --- a malformed CSV is refused by file and line, wherever the fault lies --------------------

SAMPLE = 30_000  # rows before the fault: beyond DuckDB's sniffing sample (20,480 lines)


@pytest.mark.parametrize(
    ("before", "bad_line", "line", "reason"),
    [
        # the case: a sample without quotes made DuckDB read the quote as text
        (SAMPLE, 'p90,"c05,2026-01-03,10.00,EUR\n', SAMPLE + 2, "unterminated quote"),
        (5, 'p90,"c05,2026-01-03,10.00,EUR\n', 7, "never closed"),
        (5, 'p92,"c05"x,2026-01-03,10.00,EUR\n', 7, "followed by text"),
        (SAMPLE, 'p92,"c05"x,2026-01-03,10.00,EUR\n', SAMPLE + 2, "unterminated quote"),
        # a row wider than the header was taken for the header, the rows above it skipped
        (5, "p93,c05,2026-01-03,10.00,EUR,x\n", 7, "6 field(s) where the header has 5"),
        (5, "# a comment\n", 7, "1 field(s) where the header has 5"),  # not skipped
    ],
)
@pytest.mark.parametrize("after", [0, 3])
def test_a_malformed_row_is_refused_by_file_and_line(
    tmp_path, before, bad_line, line, reason, after
):
    text = HEADER + good_rows(before) + bad_line + good_rows(after)
    message, source = extract_january(tmp_path, text)
    assert f"{source}: line {line}: the CSV parser cannot read the source" in message
    assert reason in message
    assert "Nothing of the month was written" in message and "Traceback" not in message


def test_mixed_line_endings_are_refused_by_file_and_line(tmp_path):
    text = (HEADER + good_rows(5)).replace("\n", "\r\n") + good_rows(2)
    message, source = extract_january(tmp_path, text)
    assert f"{source}: line 7: the CSV parser cannot read the source (the line ends in" in message


# --- well-formed odd CSVs load as written --------------------------------------------------


def extracted_rows(tmp_path, text: str, **source) -> dict[str, tuple]:
    path = tmp_path / "payments.csv"
    path.write_bytes(text.encode("utf-8"))
    cfg = csv_config(tmp_path, path, source=source)
    extract(cfg, parse_month("2026-01"))
    return {
        row["payment_id"]: (row["customer_id"], str(row["amount"]))
        for row in read_month(cfg.lake.root, parse_month("2026-01")).to_pylist()
    }


ODD_BUT_WELL_FORMED = [
    ("a BOM", "\ufeff" + HEADER + good_rows(3)),
    ("CRLF line endings", (HEADER + good_rows(3)).replace("\n", "\r\n")),
    ("no newline at the end", HEADER + good_rows(3).rstrip("\n")),
    ("a blank line", HEADER + good_rows(2) + "\n" + good_rows(3)[len(good_rows(2)) :]),
]


@pytest.mark.parametrize(
    ("case", "text"), ODD_BUT_WELL_FORMED, ids=[c for c, _ in ODD_BUT_WELL_FORMED]
)
def test_odd_but_well_formed_files_load(tmp_path, case, text):
    assert extracted_rows(tmp_path, text) == {f"p{i}": (f"c{i}", "10.00") for i in range(3)}


def test_quoting_after_a_sample_without_quotes_is_read_as_written(tmp_path):
    """RFC 4180 quoting, whatever the sniffing sample showed: a delimiter inside quotes, a
    doubled quote; a quote inside an unquoted field is a character of it (as every reader
    takes it)."""
    text = (
        HEADER
        + good_rows(SAMPLE)
        + (
            'q1,"c, with a comma",2026-01-03,1.00,EUR\n'
            'q2,"c ""quoted""",2026-01-03,2.00,EUR\n'
            'q3,c0"5,2026-01-03,3.00,EUR\n'
        )
    )
    rows = extracted_rows(tmp_path, text)
    assert len(rows) == SAMPLE + 3
    assert [rows[q] for q in ("q1", "q2", "q3")] == [
        ("c, with a comma", "1.00"),
        ('c "quoted"', "2.00"),
        ('c0"5', "3.00"),
    ]


def test_semicolons_and_decimal_commas_load(tmp_path):
    text = 'payment_id;customer_id;paid_at;amount;currency\np1;"c;1";2026-01-03;"1234,50";EUR\n'
    text += "p2;c2;2026-01-04;10,05;EUR\n"
    rows = extracted_rows(tmp_path, text, delimiter=";", decimal_separator=",")
    assert rows == {"p1": ("c;1", "1234.50"), "p2": ("c2", "10.05")}
