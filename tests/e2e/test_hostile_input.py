"""Hostile and broken input against a real worker, on SQLite, Redis and PostgreSQL (issue 6,
items 4 to 6): poison messages, forged and tampered messages, oversized messages and results.

Every bad message ends in the dead letters with a reason that names the problem, nothing in
it runs (the ledger and a canary file prove it), and the worker keeps serving good tasks.
"""

from __future__ import annotations

import pickle
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from conveyor import Conveyor, SerializationError, TaskFailed
from conveyor.backends.base import Message
from servers import ON_EVERY_SERVER_BACKEND

if TYPE_CHECKING:
    from conftest import Project

pytestmark = [ON_EVERY_SERVER_BACKEND, pytest.mark.timeout(90)]

TASKS = '''
@app.task(retries=3)
def add(a, b):
    record("add", a, b)
    return a + b


@app.task
def big_result(n):
    record("big_result")
    return "x" * n
'''

# The same tasks on an app that signs its messages (the worker loads `tasks:app`).
SIGNED_TASKS = '''
app = Conveyor(app.url, lease=2, secret_key="the-real-key")
''' + TASKS


def enqueue_raw(app: Conveyor, bodies: dict[str, bytes]) -> None:
    """Put bodies in the queue as they are, past every check a producer makes."""
    now = app.clock.now()
    app.backend.enqueue([Message(i, "default", b, 0, now) for i, b in bodies.items()], now)


def body_of(app: Conveyor, **fields: Any) -> bytes:
    return app.codec.encode(fields)


class Canary:
    """A pickle that, if ever unpickled, creates a file: proof that pickle never ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def test_poison_messages_are_dead_lettered_with_precise_reasons(project: Project) -> None:
    tasks = project.write_tasks(TASKS)
    app = tasks.app
    add = tasks.add.name
    ids = {k: uuid.uuid4().hex for k in ("bytes", "unknown", "args", "kwargs", "v0", "newer",
                                          "not-object", "no-id-type", "pickle")}
    canary = project.root / "pickle-ran"
    enqueue_raw(app, {
        ids["bytes"]: b"\x00\xff\xfe not a message at all",
        ids["unknown"]: body_of(app, v=1, id=ids["unknown"], task="tasks.nobody", args=[]),
        ids["args"]: body_of(app, v=1, id=ids["args"], task=add, args=[1, 2, 3]),
        ids["kwargs"]: body_of(app, v=1, id=ids["kwargs"], task=add, args=[1],
                               kwargs={"c": 2}),
        ids["v0"]: body_of(app, v=0, id=ids["v0"], task=add, args=[1, 2]),
        ids["newer"]: body_of(app, v=99, id=ids["newer"], task=add, args=[1, 2],
                              shiny_new_field={"x": 1}),
        ids["not-object"]: b'J["v", 1]',
        ids["no-id-type"]: b'J{"v":1,"id":5,"task":"tasks.add"}',
        ids["pickle"]: b"P" + pickle.dumps(Canary(canary)),
    })
    good = tasks.add.delay(20, 22)
    w = project.worker("-c", "1")
    assert good.get(timeout=20) == 42
    project.wait_until(lambda: app.backend.count_dead() >= len(ids), "every poison dead")
    dead = {d.id: d.reason for d in app.backend.dead_letters(limit=50)}
    assert set(dead) == set(ids.values()), dead
    expect = {
        "bytes": "undecodable message: unknown message format marker",
        "unknown": "unknown task 'tasks.nobody'",
        "args": f"arguments do not fit {add}",
        "kwargs": f"arguments do not fit {add}",
        "v0": "unknown message format version 0",
        "newer": "version 99 is newer than this worker understands",
        "not-object": "message is a list, not an object",
        "no-id-type": "message field 'id' is missing or not a string",
        "pickle": "pickle message refused",
    }
    for key, words in expect.items():
        assert words in dead[ids[key]], (key, dead[ids[key]])
    # Dead at once: none was retried, none ran (only the good call is in the ledger).
    assert [line[1:] for line in project.ledger()] == [["add", "20", "22"]]
    assert not canary.exists()
    # Each caller learns why, as a failure, instead of waiting forever.
    with pytest.raises(TaskFailed) as info:
        app.result(ids["unknown"]).get(timeout=5)
    assert info.value.exc_type == "UnknownTask"
    assert tasks.add.delay(1, 1).get(timeout=20) == 2  # still serving
    assert w.proc.poll() is None
    assert w.stop() == 0


def test_signed_app_never_runs_forged_or_tampered_messages(project: Project) -> None:
    tasks = project.write_tasks(SIGNED_TASKS)
    app = tasks.app
    add = tasks.add.name
    forger = Conveyor("memory://", secret_key="a-guessed-key")  # signs with the wrong key
    unsigned = Conveyor("memory://")
    genuine = app.codec.encode({"v": 1, "id": "x", "task": add, "args": [3, 4]})
    tampered = bytearray(genuine)
    tampered[-3] ^= 0x01  # one bit of the arguments flipped after signing
    canary = project.root / "pickle-ran"
    inner_pickle = b"P" + pickle.dumps(Canary(canary))
    ids = {k: uuid.uuid4().hex for k in ("unsigned", "wrong-key", "tampered", "truncated",
                                          "pickle")}
    enqueue_raw(app, {
        ids["unsigned"]: unsigned.codec.encode({"v": 1, "id": ids["unsigned"], "task": add,
                                                "args": [1, 1]}),
        ids["wrong-key"]: forger.codec.encode({"v": 1, "id": ids["wrong-key"], "task": add,
                                               "args": [2, 2]}),
        ids["tampered"]: bytes(tampered),
        ids["truncated"]: genuine[:20],
        ids["pickle"]: inner_pickle,
    })
    good = tasks.add.delay(5, 6)
    w = project.worker("-c", "1")
    assert good.get(timeout=20) == 11
    project.wait_until(lambda: app.backend.count_dead() >= len(ids), "every forgery dead")
    dead = {d.id: d.reason for d in app.backend.dead_letters(limit=50)}
    assert set(dead) == set(ids.values()), dead
    for key in ids:
        assert dead[ids[key]].startswith("bad signature"), (key, dead[ids[key]])
    assert "not signed" in dead[ids["unsigned"]]
    assert "tampered" in dead[ids["wrong-key"]] and "tampered" in dead[ids["tampered"]]
    assert [line[1:] for line in project.ledger()] == [["add", "5", "6"]]
    assert not canary.exists()
    assert w.stop() == 0


def test_oversized_messages_are_refused_at_the_call_site(project: Project) -> None:
    tasks = project.write_tasks(TASKS)
    app = tasks.app
    assert app.max_message_size == 1024 * 1024
    with pytest.raises(SerializationError) as info:
        tasks.add.delay("x" * (2 * 1024 * 1024), 1)
    message = str(info.value)
    assert "tasks.add" in message and "2,097," in message and "1,048,576 bytes" in message
    with pytest.raises(SerializationError):
        tasks.add.map([(1, 2), ("y" * 1_100_000, 3)])  # one too big: none of the map is sent
    assert sum(q.ready for q in app.backend.queue_stats(app.clock.now()).values()) == 0

    # A result over the limit fails the task, naming the size, instead of storing it.
    w = project.worker("-c", "1")
    r = tasks.big_result.delay(1_200_000)
    with pytest.raises(TaskFailed) as failed:
        r.get(timeout=20)
    assert failed.value.exc_type == "SerializationError"
    assert "1,200,0" in failed.value.exc_message and "over the limit" in failed.value.exc_message
    assert tasks.big_result.delay(10).get(timeout=20) == "x" * 10
    assert w.stop() == 0


def test_a_raised_limit_carries_big_messages_through_the_backend(project: Project) -> None:
    tasks = project.write_tasks('''
app = Conveyor(app.url, lease=2, max_message_size=8 * 1024 * 1024)
''' + TASKS)
    w = project.worker("-c", "1")
    payload = "z" * (3 * 1024 * 1024)
    assert tasks.add.delay(payload, "!").get(timeout=30) == payload + "!"
    assert len(tasks.big_result.delay(2_000_000).get(timeout=30)) == 2_000_000
    assert w.stop() == 0
