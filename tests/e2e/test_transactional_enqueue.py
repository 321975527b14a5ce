"""Transactional enqueue on PostgreSQL, as a user writes it: the task is written in the user's
own transaction on their own psycopg connection. Rolled back, it never existed (no worker
ever sees it); committed, a real worker runs it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from servers import fresh_postgres_url

if TYPE_CHECKING:
    from conftest import Project

pytestmark = pytest.mark.timeout(90)

TASKS = '''
@app.task
def receipt(order):
    record("receipt", order)
    return f"sent {order}"
'''


@pytest.fixture
def backend_url() -> Iterator[str]:
    yield from fresh_postgres_url()


def test_tasks_live_and_die_with_the_callers_transaction(project: Project) -> None:
    import psycopg

    tasks = project.write_tasks(TASKS, lease=30)
    tasks.app.backend.migrate()  # the deploy step: `conveyor migrate tasks`
    dsn = project.url.split("?")[0]
    schema = project.url.split("schema=")[1]
    with psycopg.connect(dsn) as conn:
        conn.execute(f'CREATE TABLE "{schema}".orders (id int primary key)')
        conn.commit()

        with conn.transaction():
            conn.execute(f'INSERT INTO "{schema}".orders VALUES (1)')
            kept = tasks.receipt.apply_async((1,), connection=conn)
            with tasks.app.transaction(conn):
                kept_too = tasks.receipt.delay(2)
                kept_map = tasks.receipt.map([(3,), (4,)])

        rolled_back = []
        with pytest.raises(RuntimeError), conn.transaction():
            conn.execute(f'INSERT INTO "{schema}".orders VALUES (99)')
            rolled_back.append(tasks.receipt.apply_async((99,), connection=conn))
            with tasks.app.transaction(conn):
                rolled_back.append(tasks.receipt.delay(98))
            raise RuntimeError("the order failed: roll back")

        # Uncommitted work is invisible to everyone else, so no worker can run it early.
        conn.execute(f'INSERT INTO "{schema}".orders VALUES (5)')
        pending = tasks.receipt.apply_async((5,), connection=conn)
        assert tasks.app.backend.get_results([pending.id], 0) == {}
        conn.commit()

    project.worker("-c", "1")
    assert kept.get(timeout=30) == "sent 1"
    assert kept_too.get(timeout=30) == "sent 2"
    assert kept_map.get(timeout=30) == ["sent 3", "sent 4"]
    assert pending.get(timeout=30) == "sent 5"
    for r in rolled_back:
        assert tasks.app.backend.get_results([r.id], tasks.app.clock.now()) == {}
    ran = sorted(int(f[2]) for f in project.ledger() if f[1] == "receipt")
    assert ran == [1, 2, 3, 4, 5]
