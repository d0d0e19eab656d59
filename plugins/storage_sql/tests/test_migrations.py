"""The schema carries a version and migrates forward; a newer schema is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from kmsframe_storage_sql import SqlStorage, build
from kmsframe_storage_sql.schema import SCHEMA_VERSION, migrate, schema_meta

from kmsframe.errors import ConfigurationError
from kmsframe.secrets import Secret


def test_version_one_database_migrates_forward_keeping_its_documents(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        assert migrate(conn, target=1) == 0  # a database as version 1 left it
        conn.exec_driver_sql(
            "INSERT INTO kms_documents (kind, id, revision, data) VALUES ('key', 'k', 1, '{\"v\": 1}')")
        assert not sa.inspect(conn).has_table("kms_logs")
    engine.dispose()
    store = SqlStorage(url)
    store.open()
    assert store.schema_version() == SCHEMA_VERSION == 2
    assert store.get("key", "k").data == {"v": 1}  # type: ignore[union-attr]
    assert store.append("audit", {"first": True}) == 1
    store.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    store = SqlStorage(url)
    store.open()
    store.close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(schema_meta.update().values(value=str(SCHEMA_VERSION + 1)))
    engine.dispose()
    with pytest.raises(ConfigurationError, match="newer than this kmsframe"):
        SqlStorage(url).open()


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="password"):
        build({"url": "postgresql+psycopg://u:inline@127.0.0.1/db"})
    with pytest.raises(ConfigurationError, match="unknown settings"):
        build({"url": "sqlite://", "poolsize": 3})
    store = build({"url": "postgresql+psycopg://u@127.0.0.1/db", "password": Secret(b"pw")})
    assert "pw" not in repr(store)


def test_unreachable_database_is_storage_unavailable() -> None:
    from kmsframe.errors import StorageUnavailable

    store = SqlStorage("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(StorageUnavailable):
        store.open()
