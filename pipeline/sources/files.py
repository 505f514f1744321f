"""Sources of files: CSV files, Parquet files and a table of a DuckDB database, read as a
DuckDB relation; and a CSV parse error told by file and line.

A CSV file is read in one pinned dialect (``read_csv_text``), every value as text; when
DuckDB cannot parse it, ``csv_parse_error`` names the file, the line and the reason.
"""

from __future__ import annotations

import csv
import glob
import io
import re
from pathlib import Path

import duckdb

from pipeline.config.sections import SourceConfig
from pipeline.errors import SourceError


def read_file_source(
    con: duckdb.DuckDBPyConnection, source: SourceConfig
) -> tuple[duckdb.DuckDBPyRelation, str]:
    """The rows of a csv, parquet or duckdb source as a relation (every month's), and the
    file(s) or table that name it in messages and the manifest."""
    if source.kind == "csv":
        files = _expand(source.path)
        relation = read_csv_text(con, files, source.delimiter, filename=True, union_by_name=True)
        label = ", ".join(files)
    elif source.kind == "parquet":
        files = _expand(source.path)
        relation = con.read_parquet(list(files), filename=True, union_by_name=True)
        label = ", ".join(files)
    elif source.kind == "duckdb":
        db = Path(source.path)
        if not db.exists():
            raise SourceError(f"source database not found: {db}")
        _attach(con, db)
        try:
            relation = con.table(f"source_db.{source.table}")
        except duckdb.CatalogException as exc:
            raise SourceError(f"{db}: table {source.table!r} not found") from exc
        label = f"{db}:{source.table}"
    else:  # pragma: no cover - the config model rejects other kinds
        raise SourceError(f"unknown source kind {source.kind!r}")
    return relation, label


def _attach(con: duckdb.DuckDBPyConnection, db: Path) -> None:
    """Attach the source database as ``source_db``, once per connection: an extract opens
    the source for its range of months and again for each month."""
    attached = con.execute(
        "select path from duckdb_databases() where database_name = 'source_db'"
    ).fetchall()
    if attached and Path(attached[0][0]).resolve() == db.resolve():
        return
    if attached:
        con.execute("DETACH source_db")
    con.execute("ATTACH ? AS source_db (READ_ONLY)", [str(db)])


def read_csv_text(
    con: duckdb.DuckDBPyConnection, files: tuple[str, ...] | list[str], delimiter: str, **options
) -> duckdb.DuckDBPyRelation:
    """CSV files as text columns, read in the one dialect the pipeline accepts: RFC 4180
    with the configured delimiter (a field in double quotes, a quote inside it doubled),
    the first line the header, no comment lines, every row as wide as the header; lines
    may end in "\\n" or "\\r\\n" (one of them per file), a UTF-8 BOM is skipped.

    DuckDB's sniffer would otherwise guess the dialect from a sample: a sample without
    quotes makes it read ``"c05`` (a quote never closed) as a value and keep the quotes of
    a correctly quoted field further down, a wider row can be taken for the header with
    every row above it skipped, and lines starting with ``#`` can be dropped as comments.
    Pinned, each of those is an error that ``csv_parse_error`` tells by file and line.
    """
    return con.read_csv(
        list(files),
        header=True,
        sep=delimiter,
        quotechar='"',
        escapechar='"',
        comment="",
        skiprows=0,
        strict_mode=True,
        null_padding=False,
        all_varchar=True,
        **options,
    )


_CSV_LINE = re.compile(r"CSV Error on Line: (\d+)")
_CSV_FILE = re.compile(r"^\s*file = (.+)$", re.MULTILINE)
_CSV_SNIFF_FILE = re.compile(r'Error when sniffing file "([^"]+)"')
_CSV_PARSE_MARKERS = ("CSV Error on Line", "sniffing file", "CSV Parser", "CSV file")


def csv_parse_error(
    source: SourceConfig, error: Exception, error_type: type[Exception]
) -> Exception:
    """A DuckDB error that says a CSV file cannot be parsed, as ``error_type`` (bad input)
    naming the file and line; any other error is returned as it is.

    DuckDB names the line for most faults; when it does not (its parser's "invalid state",
    a file whose dialect breaks within the sniffer's sample), the files are scanned with
    Python's csv module for the first row that breaks the header's field count, the
    quoting, the line endings or the encoding.
    """
    text = str(error)
    if source.kind != "csv" or not any(marker in text for marker in _CSV_PARSE_MARKERS):
        return error
    files = _expand(source.path)
    named = _CSV_FILE.search(text) or _CSV_SNIFF_FILE.search(text)
    line_match = _CSV_LINE.search(text)
    if named and line_match:
        where, reason = f"{named.group(1).strip()}: line {line_match.group(1)}", _csv_reason(text)
    else:
        where, reason = _first_unreadable_line(
            named.group(1).strip() if named else None, files, source
        )
        reason = reason or _csv_reason(text)
    return error_type(
        f"{where}: the CSV parser cannot read the source ({reason}). Nothing of the month was "
        f"written; fix the file (quoting, number of fields, UTF-8 encoding, delimiter "
        f"{source.delimiter!r}) and run the month again."
    )


def _csv_reason(text: str) -> str:
    """DuckDB's reason and the line it names: the original line (a quote never closed runs
    on over the lines after it: the first is the line the record starts on) and the
    reason, the last line before "Possible fixes"."""
    head = text.split("Possible fixes:", 1)[0]
    if "Original Line:" in head:
        original, _, rest = head.split("Original Line:", 1)[1].partition("\n")
        reasons = [line.strip() for line in rest.splitlines() if line.strip()]
        reason = reasons[-1] if reasons else "unreadable line"
        return f"{reason}; the line reads {original.strip()!r}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0].removeprefix("Invalid Input Error: ") if lines else "unknown error"


def _first_unreadable_line(
    named: str | None, files: tuple[str, ...], source: SourceConfig
) -> tuple[str, str | None]:
    """Where the first unreadable row is (``file: line N``) and why, found by a scan;
    the file(s) and None when the scan finds nothing."""
    candidates = [named] if named in files else list(files)
    for path in candidates:
        found = _scan_csv(path, source.delimiter)
        if found is not None:
            return f"{path}: line {found[0]}", found[1]
    return (candidates[0] if len(candidates) == 1 else ", ".join(candidates)), None


# Python's csv errors, as the reason a message gives
_CSV_ERRORS = {
    "unexpected end of data": "a quoted field opened on this line is never closed",
    "expected after": "a quoted field is followed by text before the next delimiter",
    "new-line character seen in unquoted field": "a carriage return inside a line",
}


def _scan_csv(path: str, delimiter: str) -> tuple[int, str] | None:
    """The 1-based line of the first row Python's strict csv reader rejects (for a quoted
    field never closed, the line its row starts on), and why; None if it reads every row.
    Rows must be as wide as the header and end as the header's line does."""
    with open(path, "rb") as raw:
        data = raw.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return data.count(b"\n", 0, exc.start) + 1, f"not UTF-8: {exc.reason} at byte {exc.start}"
    # lines end at "\n" only, as line numbers count them: a stray "\r" is an error
    lines = io.StringIO(text, newline="\n")
    endings: list[str] = []

    def ending_kept(line: str) -> str:  # "" for a last line without an end
        endings.append(line[-2:] if line.endswith("\r\n") else line[-1:])
        return line

    reader = csv.reader(map(ending_kept, lines), delimiter=delimiter, strict=True)
    width, start = None, 1
    try:
        for row in reader:
            if width is None:
                width = len(row)
            elif row and len(row) != width:
                return start, f"{len(row)} field(s) where the header has {width}"
            if endings[-1] not in (endings[0], ""):
                return reader.line_num, (
                    f"the line ends in {endings[-1]!r} where line 1 ends in {endings[0]!r}"
                )
            start = reader.line_num + 1
    except csv.Error as exc:
        reason = next((told for key, told in _CSV_ERRORS.items() if key in str(exc)), str(exc))
        return start, reason
    return None


def _expand(pattern: str) -> tuple[str, ...]:
    files = tuple(sorted(glob.glob(pattern))) if glob.has_magic(pattern) else (pattern,)
    missing = [f for f in files if not Path(f).exists()]
    if not files or missing:
        raise SourceError(f"source file not found: {missing[0] if missing else pattern}")
    return files
