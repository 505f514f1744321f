"""Customer attributes: name, account owner and any extra columns a team keeps.

The optional ``[customers]`` section names a CSV, Parquet, DuckDB or PostgreSQL source,
read like the payments source (same kinds, same ``columns`` mapping from canonical names
to the source's own). Every value is read as text; ``customer_id`` is required and unique,
``name`` and ``owner_email`` are optional (NULL when the source lacks them).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import duckdb
import pyarrow as pa

from pipeline.config import Config
from pipeline.config.sections import CustomersConfig
from pipeline.errors import CustomersError, SourceConnectionError, SourceError
from pipeline.pg import quote_ident, redact_message
from pipeline.schema.inputs import CUSTOMER_COLUMNS
from pipeline.sources.files import read_csv_text

_EXAMPLES = 3


def read_customers(cfg: Config) -> pa.Table | None:
    """Every customer's attributes (canonical columns first, then the source's others, as
    text), or None when no ``[customers]`` section is configured."""
    if cfg.customers is None:
        return None
    source = cfg.customers
    raw, label = _read_raw(source)
    return _canonical(raw, source, label)


def customer_rows(customers: pa.Table) -> pa.Table:
    """The warehouse's ``customer`` rows: id, name, owner and the other columns as JSON."""
    extras = [c for c in customers.column_names if c not in CUSTOMER_COLUMNS]
    attributes = (
        [
            json.dumps({k: row[k] for k in extras}, sort_keys=True, default=str) if extras else None
            for row in customers.select(extras).to_pylist()
        ]
        if extras
        else [None] * customers.num_rows
    )
    return pa.table(
        {
            "customer_id": customers.column("customer_id").cast(pa.string()),
            "name": customers.column("name").cast(pa.string()),
            "owner_email": customers.column("owner_email").cast(pa.string()),
            "attributes": pa.array(attributes, pa.string()),
        }
    )


def attributes_by_customer(customers: pa.Table | None, ids: Iterable[str]) -> dict[str, dict]:
    """{customer_id: attributes} for the given customers (those the source knows)."""
    if customers is None:
        return {}
    wanted = set(ids)
    return {r["customer_id"]: r for r in customers.to_pylist() if r["customer_id"] in wanted}


def _read_raw(source: CustomersConfig) -> tuple[pa.Table, str]:
    if source.kind == "postgres":
        return _read_postgres(source)
    con = duckdb.connect()
    try:
        if source.kind == "csv":
            path = _existing(source.path)
            relation = read_csv_text(con, [str(path)], source.delimiter)
            label = str(path)
        elif source.kind == "parquet":
            path = _existing(source.path)
            relation = con.read_parquet(str(path))
            label = str(path)
        else:  # duckdb
            path = _existing(source.path)
            con.execute("ATTACH ? AS customers_db (READ_ONLY)", [str(path)])
            try:
                relation = con.table(f"customers_db.{source.table}")
            except duckdb.CatalogException as exc:
                raise CustomersError(f"{path}: table {source.table!r} not found") from exc
            label = f"{path}:{source.table}"
        columns = [
            duckdb.ColumnExpression(c).cast(duckdb.sqltype("VARCHAR")).alias(c)
            for c in relation.columns
        ]
        return relation.select(*columns).to_arrow_table(), label
    except duckdb.Error as exc:
        raise CustomersError(f"customer attributes: {exc}") from exc
    finally:
        con.close()


def _existing(path: str | None) -> Path:
    if path is None or not Path(path).exists():
        raise CustomersError(f"customer attributes file not found: {path}")
    return Path(path)


def _read_postgres(source: CustomersConfig) -> tuple[pa.Table, str]:
    """The source's rows through ADBC, as the payments are read (the same relation, probe
    and connection), every column as PostgreSQL's own text of its values (as the file kinds
    read them as text)."""
    import adbc_driver_postgresql.dbapi as adbc  # only for this kind of source

    from pipeline.sources import postgres

    label = postgres.source_label(source)
    dsn = source.dsn or ""  # required for this kind (CustomersConfig)
    try:  # the table checked and quoted, or the query as the payments source takes it
        relation = postgres.source_relation_sql(source)
    except SourceError as exc:
        raise CustomersError(f"{label}: {exc}") from None
    try:
        schema = postgres.probe_columns(dsn, relation, label, source.section, outcome=_UNREAD)
    except SourceConnectionError:
        raise  # transient: a server that restarts
    except SourceError as exc:  # labelled already
        raise CustomersError(str(exc)) from None
    if not schema.names:
        return pa.table({}), label
    as_text = ", ".join(f"{quote_ident(n)}::text AS {quote_ident(n)}" for n in schema.names)
    connection = postgres.connect_source(
        dsn, label, source.section, autocommit=True, outcome=_UNREAD
    )
    try:
        cursor = connection.cursor()
        cursor.execute(f"SELECT {as_text} FROM {relation}")
        return cursor.fetch_arrow_table(), label
    except adbc.Error as exc:
        error = postgres.read_error(exc, f"{label}: cannot read: {redact_message(str(exc), dsn)}")
        if isinstance(error, SourceConnectionError):
            raise error from None
        raise CustomersError(str(error)) from None
    finally:
        connection.close()


_UNREAD = "no customer attributes were read"


def _canonical(raw: pa.Table, source: CustomersConfig, label: str) -> pa.Table:
    have = set(raw.column_names)
    mapped_missing = sorted(c for c, name in source.columns.items() if name not in have)
    if mapped_missing:
        raise CustomersError(
            f"{label}: [customers.columns] maps {mapped_missing} to missing columns"
        )
    id_column = source.source_column("customer_id")
    if id_column not in have:
        raise CustomersError(
            f"{label}: no customer id column {id_column!r}; it has {sorted(have)}. "
            "Map it under [customers.columns]."
        )
    canonical = {}
    for name in CUSTOMER_COLUMNS:
        column = source.source_column(name)
        canonical[name] = (
            raw.column(column) if column in have else pa.nulls(raw.num_rows, pa.string())
        )
    used = {source.source_column(c) for c in CUSTOMER_COLUMNS}
    extras = {name: raw.column(name) for name in raw.column_names if name not in used}
    table = pa.table(canonical | {k: v for k, v in extras.items() if k not in canonical})
    ids = table.column("customer_id").to_pylist()
    missing = [i + 1 for i, value in enumerate(ids) if value is None or not value.strip()]
    if missing:
        raise CustomersError(
            f"{label}: {len(missing)} row(s) without a customer id (e.g. data row(s) "
            f"{missing[:_EXAMPLES]}, counting from 1 after the header)"
        )
    seen: set[str] = set()
    repeated = sorted({i for i in ids if i in seen or seen.add(i)})
    if repeated:
        raise CustomersError(
            f"{label}: {len(repeated)} customer id(s) appear more than once, e.g. "
            f"{repeated[:_EXAMPLES]}: keep one row per customer"
        )
    return table.sort_by("customer_id")
