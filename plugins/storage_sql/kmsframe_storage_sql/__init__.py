"""The ``sql`` key store on SQLAlchemy 2: SQLite (embedded default) and PostgreSQL.

Settings (``[storage]`` with ``backend = "sql"``): ``url`` — a SQLAlchemy URL
(``sqlite:///path/kms.db`` or ``postgresql+psycopg://user@host/db``; a password
belongs in ``$env:``/``$file:`` as ``password``), ``pool_size``.

Concurrency: every write is one transaction. A document update is a
compare-and-swap on its revision (``UPDATE ... WHERE revision = :expected``);
log appends and the change counter take a row lock on their counter row, so
sequence numbers have no gaps and no writer loses an update. SQLite runs in WAL
mode with ``BEGIN IMMEDIATE`` so writers from several processes queue instead
of failing.
"""

from __future__ import annotations

import json
from pathlib import Path
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError as SqlIntegrityError
from sqlalchemy.exc import OperationalError, SQLAlchemyError

import kmsframe
from kmsframe.errors import (
    AlreadyExists,
    ConcurrentModification,
    ConfigurationError,
    NotFound,
    StorageUnavailable,
)
from kmsframe.providers import StoredDocument
from kmsframe.secrets import Secret

from .schema import CHANGES, counters, documents, logs, migrate

BACKEND_ID = "sql"


def _dumps(data: Mapping[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


class SqlStorage:
    id = BACKEND_ID

    def __init__(self, url: URL | str, *, pool_size: int = 5) -> None:
        self.url = make_url(url)
        self._pool_size = pool_size
        self._engine: Engine | None = None

    def __repr__(self) -> str:
        return f"SqlStorage({self.url.render_as_string(hide_password=True)!r})"

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    # -- lifecycle -----------------------------------------------------------

    def open(self) -> None:
        if self.is_sqlite:
            engine = sa.create_engine(self.url, connect_args={"timeout": 30})
            _sqlite_immediate_transactions(engine)
        else:
            engine = sa.create_engine(self.url, pool_size=self._pool_size, pool_pre_ping=True)
        self._engine = engine
        with self._write() as conn:
            migrate(conn)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def ping(self) -> None:
        with self._read() as conn:
            conn.execute(sa.text("SELECT 1"))

    def schema_version(self) -> int:
        from .schema import current_version

        with self._read() as conn:
            return current_version(conn)

    # -- documents -------------------------------------------------------------

    def get(self, kind: str, id: str) -> StoredDocument | None:
        with self._read() as conn:
            row = conn.execute(
                sa.select(documents.c.revision, documents.c.data).where(
                    documents.c.kind == kind, documents.c.id == id)
            ).first()
        if row is None:
            return None
        return StoredDocument(kind=kind, id=id, revision=row.revision, data=json.loads(row.data))

    def list(self, kind: str) -> list[StoredDocument]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(documents.c.id, documents.c.revision, documents.c.data)
                .where(documents.c.kind == kind).order_by(documents.c.id)
            ).all()
        return [StoredDocument(kind=kind, id=r.id, revision=r.revision, data=json.loads(r.data))
                for r in rows]

    def put(self, kind: str, id: str, data: Mapping[str, Any], expected_revision: int) -> int:
        body = _dumps(data)
        try:
            with self._write() as conn:
                if expected_revision == 0:
                    conn.execute(documents.insert().values(kind=kind, id=id, revision=1, data=body))
                    revision = 1
                else:
                    result = conn.execute(
                        documents.update()
                        .where(documents.c.kind == kind, documents.c.id == id,
                               documents.c.revision == expected_revision)
                        .values(revision=expected_revision + 1, data=body))
                    if result.rowcount != 1:
                        raise self._lost(conn, kind, id)
                    revision = expected_revision + 1
                _bump(conn, CHANGES)
                return revision
        except SqlIntegrityError:
            raise AlreadyExists(f"{kind} {id!r} already exists") from None

    def delete(self, kind: str, id: str, expected_revision: int) -> None:
        with self._write() as conn:
            result = conn.execute(
                documents.delete().where(documents.c.kind == kind, documents.c.id == id,
                                         documents.c.revision == expected_revision))
            if result.rowcount != 1:
                raise self._lost(conn, kind, id)
            _bump(conn, CHANGES)

    @staticmethod
    def _lost(conn: Connection, kind: str, id: str) -> Exception:
        exists = conn.execute(
            sa.select(documents.c.revision).where(documents.c.kind == kind, documents.c.id == id)
        ).first()
        if exists is None:
            return NotFound(f"{kind} {id!r} does not exist")
        return ConcurrentModification(f"{kind} {id!r} was changed concurrently")

    # -- logs ------------------------------------------------------------------

    def append(self, log: str, entry: Mapping[str, Any]) -> int:
        with self._write() as conn:
            seq = _bump(conn, f"log:{log}")
            conn.execute(logs.insert().values(log=log, seq=seq, data=_dumps(entry)))
            return seq

    def read_log(self, log: str, after: int = 0, limit: int = 1000) -> list[tuple[int, Mapping[str, Any]]]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(logs.c.seq, logs.c.data)
                .where(logs.c.log == log, logs.c.seq > after)
                .order_by(logs.c.seq).limit(limit)
            ).all()
        return [(r.seq, json.loads(r.data)) for r in rows]

    def change_counter(self) -> int:
        with self._read() as conn:
            value = conn.execute(
                sa.select(counters.c.value).where(counters.c.name == CHANGES)).scalar()
        return int(value or 0)

    # -- connections -------------------------------------------------------------

    def _engine_or_fail(self) -> Engine:
        if self._engine is None:
            raise StorageUnavailable(log_detail="storage used before open()")
        return self._engine

    def _read(self) -> "_Guard":
        return _Guard(self._engine_or_fail())

    def _write(self) -> "_Guard":
        return _Guard(self._engine_or_fail(), transaction=True)


class _Guard:
    """A connection (and transaction) that turns driver failures into kmsframe errors."""

    def __init__(self, engine: Engine, transaction: bool = False) -> None:
        self.engine = engine
        self.transaction = transaction

    def __enter__(self) -> Connection:
        try:
            self.conn = self.engine.connect()
        except SQLAlchemyError as exc:
            raise StorageUnavailable(log_detail=type(exc).__name__) from None
        if self.transaction:
            self.conn.begin()
        return self.conn

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            if self.transaction:
                if exc is None:
                    self.conn.commit()
                else:
                    self.conn.rollback()
        finally:
            self.conn.close()
        if isinstance(exc, OperationalError):
            raise StorageUnavailable(log_detail=str(exc.orig)) from None
        if isinstance(exc, SQLAlchemyError) and not isinstance(exc, SqlIntegrityError):
            raise StorageUnavailable(log_detail=type(exc).__name__) from None


def _bump(conn: Connection, name: str) -> int:
    """Increment a counter row (creating it at 1) and return the new value.

    One upsert statement, so two transactions creating the same counter
    cannot both insert: the loser waits on the row lock and increments.
    """
    insert = sqlite_insert if conn.dialect.name == "sqlite" else postgresql_insert
    statement = insert(counters).values(name=name, value=1)
    statement = statement.on_conflict_do_update(
        index_elements=[counters.c.name], set_={"value": counters.c.value + 1}
    ).returning(counters.c.value)
    return int(conn.execute(statement).scalar_one())


def _sqlite_immediate_transactions(engine: Engine) -> None:
    """SQLAlchemy's documented recipe: let SQLAlchemy emit BEGIN, as IMMEDIATE.

    pysqlite's own deferred BEGIN would let two writers both read, then one
    fail to upgrade its lock; IMMEDIATE queues writers on the busy timeout.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def build(settings: Mapping[str, Any]) -> SqlStorage:
    """Factory for ``[storage] backend = "sql"``."""
    known = {"backend", "data_dir", "url", "password", "pool_size"}
    unknown = set(settings) - known
    if unknown:
        raise ConfigurationError(f"storage: unknown settings {', '.join(sorted(unknown))}")
    raw = settings.get("url")
    if isinstance(raw, Secret):
        raw = raw.reveal_text()
    if not raw:
        raise ConfigurationError("storage: 'url' is required (sqlite:///... or postgresql+psycopg://...)")
    try:
        url = make_url(raw)
    except Exception:
        raise ConfigurationError("storage: 'url' is not a database URL") from None
    if url.password is not None and not isinstance(settings.get("url"), Secret):
        raise ConfigurationError("storage: put the database password in 'password' as $env:/$file:")
    password = settings.get("password")
    if password is not None:
        if not isinstance(password, Secret):
            raise ConfigurationError("storage: 'password' must be a $env: or $file: reference")
        url = url.set(password=password.reveal_text())
    database = url.database
    if url.get_backend_name() == "sqlite" and database and database != ":memory:" \
            and not Path(database).is_absolute() and "data_dir" in settings:
        # Relative paths are relative to the deployment's data directory.
        url = url.set(database=str(Path(settings["data_dir"]) / database))
    if url.get_backend_name() not in {"sqlite", "postgresql"}:
        raise ConfigurationError("storage: only sqlite and postgresql URLs are supported")
    return SqlStorage(url, pool_size=int(settings.get("pool_size", 5)))


@kmsframe.hookimpl
def kms_register_storage_backends(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register(BACKEND_ID, build)
