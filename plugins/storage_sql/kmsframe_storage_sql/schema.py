"""Tables and forward-only migrations of the ``sql`` key store.

``schema_meta.schema_version`` records the version; ``migrate`` applies each
missing step in order inside the opening transaction, so a half-migrated
database cannot exist. A database newer than this code is refused.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from kmsframe.errors import ConfigurationError

metadata = sa.MetaData()
CHANGES = "changes"

schema_meta = sa.Table(
    "kms_schema_meta", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
)
documents = sa.Table(
    "kms_documents", metadata,
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("id", sa.String(256), primary_key=True),
    sa.Column("revision", sa.BigInteger, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
)
counters = sa.Table(
    "kms_counters", metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)
logs = sa.Table(
    "kms_logs", metadata,
    sa.Column("log", sa.String(64), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("data", sa.Text, nullable=False),
)


def _v1(conn: Connection) -> None:
    """Documents, counters and the version marker."""
    for table in (schema_meta, documents, counters):
        table.create(conn, checkfirst=True)


def _v2(conn: Connection) -> None:
    """Append-only logs (audit)."""
    logs.create(conn, checkfirst=True)


MIGRATIONS: list[Callable[[Connection], None]] = [_v1, _v2]
SCHEMA_VERSION = len(MIGRATIONS)


def current_version(conn: Connection) -> int:
    if not sa.inspect(conn).has_table(schema_meta.name):
        return 0
    value = conn.execute(
        sa.select(schema_meta.c.value).where(schema_meta.c.name == "schema_version")).scalar()
    return int(value or 0)


def migrate(conn: Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring the schema to ``target``; returns the version it was at."""
    found = current_version(conn)
    if found > SCHEMA_VERSION:
        raise ConfigurationError(
            f"storage: the database schema is version {found}, newer than this kmsframe "
            f"({SCHEMA_VERSION}); upgrade kmsframe")
    for step in range(found, target):
        MIGRATIONS[step](conn)
        if step == 0:
            conn.execute(schema_meta.insert().values(name="schema_version", value="1"))
        else:
            conn.execute(schema_meta.update().where(schema_meta.c.name == "schema_version")
                         .values(value=str(step + 1)))
    return found
