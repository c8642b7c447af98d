"""TEMPORARY shim: the old public names of ``smartmeter.server.storage``, re-exported while callers move over.

The readings database was split (issue 11): the connection, transactions and migrations are in
``smartmeter.server.database``; each table's SQL is in one repository module (``readings_repo``: meters, readings,
corrections; ``photos_repo``: photos and the worker's store cursor; ``review_repo``: the review queue). Import from
those. This module holds no code of its own and is removed once nothing imports it.

``CURRENT`` is gone: the current reading statuses are ``smartmeter.domain.CURRENT_STATUSES``.
"""

from __future__ import annotations

from smartmeter.server.database import (
    MIGRATION_NAME,
    MIGRATIONS,
    Database,
    from_ms,
    migration_files,
    now_ms,
    open_database,
    split_statements,
    to_ms,
)
from smartmeter.server.readings_repo import READING_COLUMNS, reading_row, row_reading

__all__ = ["MIGRATIONS", "MIGRATION_NAME", "READING_COLUMNS", "Database", "from_ms", "migration_files", "now_ms",
           "open_database", "reading_row", "row_reading", "split_statements", "to_ms"]
