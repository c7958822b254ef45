"""A benchmark's own PostgreSQL database on a loopback server: created for one run and dropped after it."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import psycopg2
from psycopg2 import sql

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"


def database_urls(server_url: str, name: str) -> tuple[str, str]:
    """The maintenance database's URL (the one given) and that of the database `name` on the same server."""
    parts = urlsplit(server_url)
    if parts.scheme not in ("postgres", "postgresql") or parts.hostname not in LOOPBACK_HOSTS:
        raise SystemExit(f"--postgres must be a postgres:// URL on a loopback address, not {server_url!r}")
    return server_url, urlunsplit(parts._replace(path=f"/{name}"))


def _execute(admin_url: str, *statements: sql.Composable) -> None:
    conn = psycopg2.connect(admin_url)
    try:
        conn.autocommit = True  # CREATE and DROP DATABASE refuse to run inside a transaction
        with conn.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    finally:
        conn.close()


def create_database(admin_url: str, name: str) -> None:
    # A database of the same name can only be left over by a killed earlier run with the same pid.
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    _execute(admin_url, drop, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(admin_url: str, name: str) -> None:
    _execute(admin_url, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
