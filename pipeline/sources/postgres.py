"""PostgreSQL: a payments source read one month at a time.

Source (``[source] kind = "postgres"``): the month's rows, and the rows without a
paid_at, are selected with the month's business-time-zone boundaries as bound
parameters, through a server-side cursor fetched in Arrow batches (ADBC), and handed
to DuckDB as a stream: memory holds a batch, never the month.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, date

import adbc_driver_postgresql
import adbc_driver_postgresql.dbapi as adbc
import duckdb
import pyarrow as pa

from pipeline.config.sections import CustomersConfig, SourceConfig
from pipeline.errors import SourceConnectionError, SourceError
from pipeline.months import month_bounds
from pipeline.pg import (
    first_line,
    qualified_table,
    quote_ident,
    redact_dsn,
    redact_message,
    session_lost,
    with_connect_timeout,
)

log = logging.getLogger(__name__)


# Rows per FETCH from the server-side cursor: the unit of memory of an extract.
_FETCH_ROWS = 50_000
_CURSOR = "month_rows"
_FETCH = f"FETCH FORWARD {_FETCH_ROWS} FROM {_CURSOR}"
_USE_COPY = adbc_driver_postgresql.StatementOptions.USE_COPY.value
# PostgreSQL types read as they come; any other type is read as its text form (exact).
_NATIVE_TYPES = {
    "text",
    "varchar",
    "bpchar",
    "char",
    "name",
    "int2",
    "int4",
    "int8",
    "numeric",
    "float4",
    "float8",
    "bool",
    "date",
    "timestamp",
    "timestamptz",
}
_FLOAT_TYPES = {"float4", "float8"}


def source_dsn(source: SourceConfig) -> str:
    if not source.dsn:
        name = source.section
        raise SourceError(
            f"{name}.dsn is not set: give the PostgreSQL connection string in [{name}] dsn "
            f"or in the environment variable TIERS__{name.upper()}__DSN"
        )
    return source.dsn


def source_label(source: SourceConfig | CustomersConfig) -> str:
    what = f"table {source.table}" if source.table else "query"
    return f"postgres {what} at {redact_dsn(source.dsn)}"


def source_relation_sql(source: SourceConfig | CustomersConfig) -> str:
    """The FROM item of the source (payments, activities or customers), aliased ``q``: the
    table, or the query as a subquery."""
    if source.table:
        try:
            return f"{qualified_table(source.table)} AS q"
        except ValueError as exc:
            raise SourceError(f"{source.section}.table: {exc}") from None
    query = (source.query or "").strip().rstrip(";").strip()
    if not query:
        raise SourceError(f"{source.section}.query is empty")
    # The newline ends a trailing line comment of the user's query.
    return f"(\n{query}\n) AS q"


def read_source_month(
    con: duckdb.DuckDBPyConnection, source: SourceConfig, first: date, last: date, timezone: str
) -> tuple[duckdb.DuckDBPyRelation, str]:
    """The source rows that may belong to months ``first``..``last``, as a DuckDB relation.

    Rows with paid_at in [start of ``first``, end of ``last``) in the business time zone,
    plus rows whose paid_at is NULL. A paid_at of type timestamptz is compared with the
    aware boundaries, a timestamp (naive, business wall clock) with naive ones, a date
    with dates; any other type (text) cannot be compared in PostgreSQL, so every row is
    read and the staging SQL places it. The relation streams: it can be scanned once.
    """
    dsn, label = source_dsn(source), source_label(source)
    relation = source_relation_sql(source)
    schema = probe_columns(dsn, relation, label, source.section)
    paid_at = source.source_column(source.time_column)  # occurred_at for [service]
    if paid_at not in schema.names:  # the caller names the missing column
        return con.from_arrow(schema.empty_table()), label

    columns = ", ".join(_select_expression(field) for field in schema)
    query = f"SELECT {columns} FROM {relation}"
    bounds = _typed_bounds(schema.field(paid_at).type, first, last, timezone)
    if bounds is None:
        log.warning(
            "%s: %s column %r is %s, not a date or timestamp: reading every row",
            label,
            source.time_column,
            paid_at,
            schema.field(paid_at).type,
        )
    else:
        column = f"q.{quote_ident(paid_at)}"
        query += f" WHERE ({column} >= $1 AND {column} < $2) OR {column} IS NULL"
    for canonical in ("amount", "cost", "hours"):
        name = source.source_column(canonical)
        if (
            canonical in source.known_columns
            and name in schema.names
            and _pg_type(schema.field(name)) in _FLOAT_TYPES
        ):
            log.info(
                "%s: %s column %r is floating point: each value is read as its nearest cent "
                "(counted as rounded in the manifest), or is a bad row if it lies farther",
                label,
                canonical,
                name,
            )
    read_schema = pa.schema([_read_field(field) for field in schema])
    log.info("%s: reading %s..%s", label, first, last)
    batches = _month_batches(dsn, query, bounds, read_schema, label, source.section)
    return con.from_arrow(pa.RecordBatchReader.from_batches(read_schema, batches)), label


# what became of a step that could not reach its source (the extract, by default)
EXTRACTED_NOTHING = "nothing was extracted"


def connect_source(
    dsn: str, label: str, section: str, *, autocommit: bool, outcome: str = EXTRACTED_NOTHING
) -> adbc.Connection:
    """A connection to the PostgreSQL source of ``[section]``; a server that cannot be
    reached is a SourceConnectionError (transient) naming the setting that gives its DSN and
    ``outcome``, what became of the step."""
    try:
        return adbc.connect(with_connect_timeout(dsn), autocommit=autocommit)
    except adbc.Error as exc:
        raise SourceConnectionError(
            f"{label}: cannot connect: {first_line(redact_message(str(exc), dsn))}. Check that "
            f"the PostgreSQL server is running and that {section}.dsn (or "
            f"TIERS__{section.upper()}__DSN) names its host, port, database and user; {outcome}."
        ) from None


def probe_columns(
    dsn: str, relation: str, label: str, section: str, *, outcome: str = EXTRACTED_NOTHING
) -> pa.Schema:
    """The source's columns and their Arrow types, from a query that returns no row."""
    connection = connect_source(dsn, label, section, autocommit=True, outcome=outcome)
    try:
        cursor = connection.cursor()
        cursor.execute(f"SELECT * FROM {relation} LIMIT 0")
        return cursor.fetch_arrow_table().schema
    except adbc.Error as exc:
        message = f"{label}: cannot read: {redact_message(str(exc), dsn)}"
        raise read_error(exc, message) from None
    finally:
        connection.close()


def read_error(exc: adbc.Error, message: str) -> SourceError:
    """A failed read of the source: a SourceConnectionError when the session is gone, else
    the query's fault (a SourceError)."""
    return (SourceConnectionError if session_lost(exc) else SourceError)(message)


def _pg_type(field: pa.Field) -> str | None:
    metadata = field.metadata or {}
    value = metadata.get(b"POSTGRESQL:type")
    return value.decode() if value else None


def _select_expression(field: pa.Field) -> str:
    name = quote_ident(field.name)
    pg_type = _pg_type(field)
    if pg_type == "money":  # ADBC reads money as integer cents; numeric keeps the value
        return f"q.{name}::numeric AS {name}"
    if pg_type is not None and pg_type not in _NATIVE_TYPES:
        return f"q.{name}::text AS {name}"
    return f"q.{name}"


def _read_field(field: pa.Field) -> pa.Field:
    """The Arrow field the extract hands to DuckDB for a probed source column."""
    pg_type = _pg_type(field)
    if pg_type in ("money", "numeric"):  # exact decimal text, never a float
        return pa.field(field.name, pa.string())
    if pg_type is not None and pg_type not in _NATIVE_TYPES:
        return pa.field(field.name, pa.string())
    kind = field.type
    if isinstance(kind, pa.BaseExtensionType):
        kind = kind.storage_type
    return pa.field(field.name, kind)


def _typed_bounds(kind: pa.DataType, first: date, last: date, timezone: str) -> tuple | None:
    start, end = month_bounds(first, timezone)[0], month_bounds(last, timezone)[1]
    if pa.types.is_timestamp(kind) and kind.tz is not None:
        return start.astimezone(UTC), end.astimezone(UTC)
    if pa.types.is_timestamp(kind):  # naive values are business-time-zone wall clock
        return start.replace(tzinfo=None), end.replace(tzinfo=None)
    if pa.types.is_date(kind):
        return start.date(), end.date()
    return None


def _month_batches(
    dsn: str, query: str, bounds: tuple | None, schema: pa.Schema, label: str, section: str
) -> Iterator[pa.RecordBatch]:
    """Batches of the query's rows, fetched from a server-side cursor as DuckDB pulls.

    The connection opens when the first batch is wanted and closes when the stream is
    exhausted, fails or is dropped.
    """
    connection = connect_source(dsn, label, section, autocommit=False)
    try:
        declare = connection.cursor()
        # A query with bound parameters is not streamed by ADBC (no COPY); a cursor is.
        declare.execute(f"DECLARE {_CURSOR} NO SCROLL CURSOR FOR {query}", parameters=bounds)
        fetch = connection.cursor()
        fetch.adbc_statement.set_options(**{_USE_COPY: "false"})  # FETCH cannot be COPYed
        while True:
            fetch.execute(_FETCH)
            chunk = fetch.fetch_arrow_table()
            if chunk.num_rows == 0:
                return
            yield from _as_read_schema(chunk, schema, label).to_batches()
    except adbc.Error as exc:
        message = f"{label}: read failed: {redact_message(str(exc), dsn)}"
        raise read_error(exc, message) from None
    finally:
        connection.close()


def _as_read_schema(chunk: pa.Table, schema: pa.Schema, label: str) -> pa.Table:
    columns = []
    for field, column in zip(schema, chunk.columns, strict=True):
        if isinstance(column.type, pa.BaseExtensionType):
            column = pa.chunked_array([c.storage for c in column.chunks], column.type.storage_type)
        if column.type != field.type:
            raise SourceError(
                f"{label}: column {field.name!r} changed type while reading "
                f"({field.type} -> {column.type})"
            )
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)
