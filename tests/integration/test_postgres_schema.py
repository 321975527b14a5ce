"""The PostgreSQL schema: `schema.sql` from scratch and the migration chain give the same
catalog (tables, columns, types, defaults, indexes, constraints, sequences, functions); the
version is recorded, upgrades are refused from a newer conveyor, and concurrent first users
do not race."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from conveyor import ConfigError
from conveyor.backends.base import Message, WorkerInfo
from conveyor.backends.postgres import schema as schema_mod
from conveyor.backends.postgres.backend import PostgresBackend
from conveyor.backends.postgres.connections import parse_postgres_url
from servers import POSTGRES_URL, fresh_postgres_url, require, with_query

NOW = 1_700_000_000.0


@pytest.fixture
def two_schemas() -> Iterator[tuple[str, str]]:
    require("postgresql", POSTGRES_URL)
    names = (f"ctest_a{uuid.uuid4().hex[:10]}", f"ctest_b{uuid.uuid4().hex[:10]}")
    yield names
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def catalog(conn: psycopg.Connection[Any], schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Everything about a schema that a migration could get wrong, with its name taken out."""

    def rows(sql: str) -> list[tuple[Any, ...]]:
        got = conn.execute(sql, {"s": schema}).fetchall()
        return sorted(tuple(str(v).replace(schema, "<S>") if v is not None else None
                            for v in row) for row in got)

    return {
        "columns": rows("SELECT table_name, column_name, ordinal_position, data_type, "
                        "is_nullable, column_default, character_maximum_length, "
                        "numeric_precision FROM information_schema.columns "
                        "WHERE table_schema = %(s)s"),
        "tables": rows("SELECT c.relname, c.relkind, c.relpersistence, c.reloptions "
                       "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE n.nspname = %(s)s"),
        "indexes": rows("SELECT tablename, indexname, indexdef FROM pg_indexes "
                        "WHERE schemaname = %(s)s"),
        "constraints": rows("SELECT conrelid::regclass::text, conname, contype, "
                            "pg_get_constraintdef(c.oid) FROM pg_constraint c "
                            "JOIN pg_namespace n ON n.oid = c.connamespace "
                            "WHERE n.nspname = %(s)s"),
        "sequences": rows("SELECT sequence_name, data_type, start_value, increment "
                          "FROM information_schema.sequences WHERE sequence_schema = %(s)s"),
        "sequence_owners": rows("SELECT s.relname, t.relname, a.attname FROM pg_depend d "
                                "JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' "
                                "JOIN pg_class t ON t.oid = d.refobjid "
                                "JOIN pg_attribute a ON a.attrelid = t.oid "
                                "AND a.attnum = d.refobjsubid "
                                "JOIN pg_namespace n ON n.oid = s.relnamespace "
                                "WHERE n.nspname = %(s)s AND d.deptype = 'a'"),
        "functions": rows("SELECT p.proname, pg_get_function_arguments(p.oid), "
                          "pg_get_function_result(p.oid), p.prosrc, p.proconfig, "
                          "p.provolatile, l.lanname FROM pg_proc p "
                          "JOIN pg_namespace n ON n.oid = p.pronamespace "
                          "JOIN pg_language l ON l.oid = p.prolang WHERE n.nspname = %(s)s"),
        "migrations": [tuple(r) for r in conn.execute(
            f'SELECT name FROM "{schema}".conveyor_migrations ORDER BY name').fetchall()],
    }


def test_schema_sql_equals_the_migration_chain(two_schemas: tuple[str, str]) -> None:
    chain, scratch = two_schemas
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        applied = schema_mod.migrate(conn, parse_postgres_url(with_query(POSTGRES_URL,
                                                                         schema=chain)),
                                     from_scratch=False)
        assert applied == [name for name, _ in schema_mod.migrations()]
        assert schema_mod.migrate(conn, parse_postgres_url(with_query(POSTGRES_URL,
                                                                      schema=scratch))) == applied
        a, b = catalog(conn, chain), catalog(conn, scratch)
    assert a["columns"] and a["indexes"] and a["functions"] and a["constraints"]
    for part in a:
        assert a[part] == b[part], part


def test_migrations_are_numbered_in_order() -> None:
    names = [name for name, _ in schema_mod.migrations()]
    assert names[0] == "0001_initial"
    assert [schema_mod.version_of(n) for n in names] == list(range(1, len(names) + 1))
    assert schema_mod.latest() == names[-1]


@pytest.fixture
def url() -> Iterator[str]:
    yield from fresh_postgres_url()


def test_migrate_and_schema_version(url: str) -> None:
    b = PostgresBackend(url)
    try:
        assert b.schema_version() == 0  # nothing there yet, and nothing made by asking
        assert b.migrate() == [name for name, _ in schema_mod.migrations()]
        assert b.schema_version() == len(schema_mod.migrations())
        assert b.migrate() == []
        assert b.enqueue([], NOW) == []
    finally:
        b.close()


def test_first_use_creates_the_schema(url: str) -> None:
    b = PostgresBackend(url)
    try:
        assert b.queue_stats(NOW) == {}
        assert b.schema_version() == len(schema_mod.migrations())
    finally:
        b.close()


def test_concurrent_first_users_do_not_race(url: str) -> None:
    backends = [PostgresBackend(url) for _ in range(6)]
    barrier = threading.Barrier(len(backends))
    errors: list[BaseException] = []

    def first_use(b: PostgresBackend) -> None:
        try:
            barrier.wait()
            b.put_worker(WorkerInfo("w"), NOW, 10)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_use, args=(b,)) for b in backends]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for b in backends:
        b.close()
    assert not errors, errors


def test_a_schema_from_a_newer_conveyor_is_refused(url: str) -> None:
    b = PostgresBackend(url)
    b.migrate()
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'INSERT INTO "{b.settings.schema}".conveyor_migrations (name) '
                     "VALUES ('9999_from_the_future')")
    b.close()
    newer = PostgresBackend(url)
    try:
        with pytest.raises(ConfigError, match="9999_from_the_future"):
            newer.queue_stats(NOW)
        with pytest.raises(ConfigError, match="newer conveyor"):
            newer.migrate()
    finally:
        newer.close()


def test_a_dropped_schema_is_made_again(url: str) -> None:
    b = PostgresBackend(url)
    try:
        b.enqueue([Message("m", "q", b"")], NOW)
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{b.settings.schema}" CASCADE')
        assert b.queue_stats(NOW) == {}
    finally:
        b.close()
