"""BI access to the PostgreSQL warehouse: a login role that can read its schema and
nothing more (``tiers warehouse grant-reader``).
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from pipeline.pg import plain_identifier
from pipeline.warehouse.postgres import PostgresWarehouse


def create_readonly_role(url: str, schema: str, role: str, password: str | None = None) -> None:
    """A login role for BI tools that can read the warehouse schema and nothing more.

    USAGE on the schema, SELECT on its tables and views, SELECT on the tables and views
    the pipeline creates there later (default privileges of the connecting user), and
    read-only transactions by default. No CREATE, no writes. Re-running it re-applies
    the grants and, when ``password`` is given, sets the password (sent to the server
    only as a SCRAM verifier). Creates the warehouse schema first if needed.
    """
    plain_identifier(schema, "warehouse.schema")
    plain_identifier(role, "role")
    warehouse = PostgresWarehouse(url, schema)
    try:
        warehouse.ensure_schema()
    finally:
        warehouse.close()
    role_id, schema_id = sql.Identifier(role), sql.Identifier(schema)
    with warehouse.psycopg_connection() as conn, conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls OR rolreplication "
            "FROM pg_roles WHERE rolname = %s",
            [role],
        )
        found = cur.fetchone()
        if found is None:
            cur.execute(
                sql.SQL(
                    "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                    "NOREPLICATION NOBYPASSRLS"
                ).format(role_id)
            )
        else:
            extra = ["role attributes"] if found[0] else _rights_beyond_reading(cur, schema, role)
            if extra:
                raise ValueError(
                    f"role {role!r} exists with more than read rights ({', '.join(extra)}); "
                    "not changed"
                )
        cur.execute("SELECT has_database_privilege(%s, current_database(), 'CONNECT')", [role])
        if not cur.fetchone()[0]:
            cur.execute("SELECT current_database()")
            database = sql.Identifier(cur.fetchone()[0])
            cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, role_id))
        for statement in (
            "GRANT USAGE ON SCHEMA {schema} TO {role}",
            "GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}",
            "ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {role}",
            "ALTER ROLE {role} SET default_transaction_read_only = on",
        ):
            cur.execute(sql.SQL(statement).format(schema=schema_id, role=role_id))
        if password is not None:
            # libpq hashes the password (SCRAM) and sends only the verifier.
            conn.pgconn.change_password(role.encode(), password.encode())


def _rights_beyond_reading(cur: psycopg.Cursor, schema: str, role: str) -> list[str]:
    """What an existing role may do in the schema besides reading."""
    cur.execute("SELECT has_schema_privilege(%s, %s, 'CREATE')", [role, schema])
    extra = ["CREATE on the schema"] if cur.fetchone()[0] else []
    cur.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm') "
        "AND has_table_privilege(%s, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE') "
        "ORDER BY c.relname",
        [schema, role],
    )
    extra += [f"writes to {row[0]}" for row in cur.fetchall()]
    return extra
