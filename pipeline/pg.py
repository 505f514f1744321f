"""Shared PostgreSQL helpers of the payments source and the warehouse: identifiers quoted
and checked, connection strings and driver messages without their passwords, libpq's
connect timeout, and whether a driver's error says the session is gone.

Standard library only at import: the drivers (psycopg, ADBC) cost a noticeable part of a
task's start-up, and only PostgreSQL sources and warehouses need them.
"""

from __future__ import annotations

import re

_PLAIN_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


# Seconds to wait for a server that does not answer (libpq waits forever by default).
_CONNECT_TIMEOUT = 10


# --- names and connection strings ------------------------------------------------------


def quote_ident(name: str) -> str:
    """``name`` as a PostgreSQL quoted identifier (any text a column can be named)."""
    if not name or "\x00" in name or len(name.encode()) > 63:
        raise ValueError(f"{name!r} cannot be a PostgreSQL identifier")
    return '"' + name.replace('"', '""') + '"'


def plain_identifier(name: str, what: str) -> str:
    """``name`` if it is a plain identifier (letters, digits, underscores), else an error."""
    if not isinstance(name, str) or not _PLAIN_IDENTIFIER.match(name):
        raise ValueError(f"{what} {name!r} is not a plain identifier (letters, digits, _)")
    return name


def qualified_table(name: str) -> str:
    """``table`` or ``schema.table`` from the configuration, each part checked and quoted."""
    parts = name.split(".")
    if len(parts) > 2:
        raise ValueError(f"table {name!r} is not a name like schema.table")
    return ".".join(quote_ident(plain_identifier(p, "table name part")) for p in parts)


_URL_PASSWORD = re.compile(
    r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:@/?#]*:)(?P<password>[^@/?#]*)@"
)
_QUERY_PASSWORD = re.compile(r"(?i)(?P<head>[?&]password=)(?P<password>[^&#]*)")
_KEYWORD_PASSWORD = re.compile(
    r"(?i)\b(?P<head>password\s*=\s*)(?P<password>'(?:[^'\\]|\\.)*'|[^\s]*)"
)


def _password_patterns(dsn: str) -> tuple[re.Pattern[str], ...]:
    return (_URL_PASSWORD, _QUERY_PASSWORD) if "://" in dsn else (_KEYWORD_PASSWORD,)


def redact_dsn(dsn: str | None) -> str:
    """The connection string with any password replaced by ``***``, safe for logs."""
    if not dsn:
        return ""
    for pattern in _password_patterns(dsn):
        tail = "@" if pattern is _URL_PASSWORD else ""
        dsn = pattern.sub(rf"\g<head>***{tail}", dsn)
    return dsn


_URL_PASSWORD_ANYWHERE = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:@/?#\s]*:)(?P<password>[^@/?#\s]*)@"
)


def redact_text(text: str) -> str:
    """Any text (an error message) without the passwords of connection strings in it."""
    text = _URL_PASSWORD_ANYWHERE.sub(r"\g<head>***@", text)
    for pattern in (_QUERY_PASSWORD, _KEYWORD_PASSWORD):
        text = pattern.sub(r"\g<head>***", text)
    return text


def redact_message(message: str, dsn: str) -> str:
    """An error message from a driver, without the DSN's password if it echoes it."""
    message = message.replace(dsn, redact_dsn(dsn))
    for pattern in _password_patterns(dsn):
        for match in pattern.finditer(dsn):
            password = match.group("password").strip("'")
            if password:
                message = message.replace(password, "***")
    return message


# --- connections and their errors -----------------------------------------------------


def with_connect_timeout(dsn: str) -> str:
    """The connection string with libpq's connect_timeout set, unless it sets one."""
    if "connect_timeout" in dsn:
        return dsn
    if "://" not in dsn:
        return f"{dsn} connect_timeout={_CONNECT_TIMEOUT}"
    base, _, fragment = dsn.partition("#")
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}connect_timeout={_CONNECT_TIMEOUT}" + (
        f"#{fragment}" if fragment else ""
    )


def first_line(text: str) -> str:
    """A driver's message without its decorations (ADBC's "IO: " and the query echoed)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    first = lines[0] if lines else text
    for prefix in ("IO: ", "[libpq] "):
        first = first.removeprefix(prefix)
    return first.rstrip(".")


def session_lost(exc: BaseException) -> bool:
    """Whether a driver's error (ADBC's or psycopg's) says the server cannot be reached or
    ended the session, which a retry can outlive, rather than that the query is at fault.
    Such errors carry no SQLSTATE from the server, or one of class 08 (connection) or
    57P (the server shutting down, or an administrator ending the session). The error was
    raised by one of the drivers, so importing them here costs nothing."""
    import adbc_driver_postgresql.dbapi as adbc
    import psycopg

    if not isinstance(exc, adbc.OperationalError | psycopg.OperationalError):
        return False
    state = getattr(exc, "sqlstate", None)
    return state is None or state.startswith(("08", "57P"))
