"""What a dropped database connection costs: nothing, where the work is safe to repeat."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connection

# A database that is restarting, unreachable, or that ended this process's connection.
TRANSIENT_DATABASE_ERRORS = (OperationalError, InterfaceError)

T = TypeVar("T")


def once_more_on_a_fresh_connection(action: Callable[[], T]) -> T:
    """Run `action`, and once more on a fresh connection if the database dropped the one it used (a restart,
    a terminated backend). Only for work that is safe to repeat; inside a transaction the fault propagates,
    since the transaction is lost with the connection."""
    try:
        return action()
    except TRANSIENT_DATABASE_ERRORS:
        if connection.in_atomic_block:
            raise
        connection.close()
        return action()
