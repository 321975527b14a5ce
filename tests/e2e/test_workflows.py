"""Workflows and unique tasks with real worker processes, on SQLite, Redis and PostgreSQL:
chains, groups, chords (also one whose member fails, and 50 members finishing at once on
four processes: the callback runs exactly once, by the ledger), link / link_error, and unique
tasks while queued, while running and debounced with unique_for."""

from __future__ import annotations

import collections
import time
from typing import TYPE_CHECKING

import pytest

from conveyor import TaskFailed, chain, chord, group
from servers import ON_EVERY_SERVER_BACKEND

if TYPE_CHECKING:
    from conftest import Project

pytestmark = [ON_EVERY_SERVER_BACKEND, pytest.mark.timeout(120)]

TASKS = '''
from pathlib import Path


@app.task
def add(a, b):
    record("add", a, b)
    return a + b


@app.task
def total(values):
    record("total", len(values), sum(values))
    return sum(values)


@app.task
def tiny(i):
    return i


@app.task
def slow(i):
    record("slow", i)
    time.sleep(0.05)
    return i


@app.task(retries=1, retry_delay=0.05)
def boom(x):
    record("boom", x)
    raise ValueError(f"boom {x}")


@app.task(timeout=1)
def stuck(x):
    record("stuck", x)
    time.sleep(30)


@app.task
def alert(task_id, exc_type, exc_message):
    record("alert", task_id, exc_type)


@app.task
def gate(flag):
    record("gate", flag)
    while not Path(flag).exists():
        time.sleep(0.01)
    return flag


@app.task(unique=True)
def sync(account):
    record("sync", account)
    return account


@app.task(unique_for=1.5)
def rebuild(site):
    record("rebuild", site)
    return site
'''


def tagged(project: Project, tag: str) -> list[list[str]]:
    return [f[2:] for f in project.ledger() if f[1] == tag]


def test_chain_group_chord_and_links(project: Project) -> None:
    t = project.write_tasks(TASKS, lease=10)
    project.worker("-c", "2")

    r = chain(t.add.s(1, 2), t.add.s(10), t.add.s(100)).delay()
    assert r.get(timeout=30) == 113
    assert (t.add.s(1, 1) | t.add.si(5, 5)).delay().get(timeout=30) == 10

    g = group(t.add.s(i, i) for i in range(10)).delay()
    assert g.get(timeout=30) == [2 * i for i in range(10)]

    c = chord(group(t.add.s(i, i) for i in range(10)), t.total.s()).delay()
    assert c.get(timeout=30) == 90

    linked = t.add.apply_async((2, 3), link=t.add.s(1000))
    assert linked.get(timeout=30) == 5
    project.wait_until(lambda: ["5", "1000"] in tagged(project, "add"), "the link to run")

    failing = t.boom.apply_async((7,), link=t.add.s(1), link_error=t.alert.s())
    with pytest.raises(TaskFailed, match="boom 7"):
        failing.get(timeout=30)
    project.wait_until(lambda: [failing.id, "ValueError"] in tagged(project, "alert"),
                       "the errback to run")

    broken = (t.add.s(1, 1) | t.boom.s() | t.add.s(5)).delay()
    with pytest.raises(TaskFailed) as info:
        broken.get(timeout=30)
    assert (info.value.exc_type, info.value.exc_message) == ("ValueError", "boom 2")
    assert info.value.task_name == "tasks.boom"
    assert sorted(f[0] for f in tagged(project, "boom")) == ["2", "2", "7", "7"]  # + retry
    assert ["2", "5"] not in tagged(project, "add")  # the chain stopped at the failure


@pytest.mark.parametrize("pool", ["process", "thread", "async"])
def test_a_step_killed_at_its_time_limit_fails_the_rest_of_the_chain(project: Project,
                                                                     pool: str) -> None:
    """The pool settles a step stopped at its time limit itself (the process pool's
    supervisor never sees the body): the steps after it still fail and its errback runs."""
    t = project.write_tasks(TASKS, lease=10)
    project.worker("-c", "2", "--pool", pool)
    r = (t.add.s(1, 1) | t.stuck.s().set(link_error=t.alert.s()) | t.add.s(5)).delay()
    with pytest.raises(TaskFailed) as info:
        r.get(timeout=30)
    assert info.value.exc_type == "TaskTimeout", info.value
    assert info.value.task_name == "tasks.stuck"
    project.wait_until(lambda: any(f[1] == "TaskTimeout" for f in tagged(project, "alert")),
                       "the errback to run")
    assert ["2", "5"] not in tagged(project, "add")


def test_a_failing_member_fails_the_chord(project: Project) -> None:
    t = project.write_tasks(TASKS, lease=10)
    project.worker("-c", "2")
    r = (chord([t.add.s(1, 1), t.boom.s(3), t.add.s(2, 2)], t.total.s()) | t.add.s(1)).delay()
    with pytest.raises(TaskFailed) as info:
        r.get(timeout=30)
    assert (info.value.exc_type, info.value.exc_message) == ("ValueError", "boom 3")
    assert len(tagged(project, "boom")) == 2  # its retry ran first: it failed for good
    assert tagged(project, "total") == []


def test_fifty_members_finishing_at_once_run_the_callback_once(project: Project) -> None:
    t = project.write_tasks(TASKS, lease=10)
    project.worker("-c", "4")
    project.worker("-c", "2", "--pool", "thread")
    results = [chord([t.tiny.s(i) for i in range(50)], t.total.s()).delay() for _ in range(3)]
    for r in results:
        assert r.get(timeout=60) == sum(range(50))
    time.sleep(0.5)  # a second callback, if there were one, would have run by now
    runs = tagged(project, "total")
    assert runs == [["50", str(sum(range(50)))]] * 3, runs


def test_a_worker_killed_mid_chord_loses_nothing_and_calls_back_once(
        project: Project) -> None:
    t = project.write_tasks(TASKS, lease=2)
    first = project.worker("-c", "4")
    r = chord([t.slow.s(i) for i in range(40)], t.total.s()).delay()
    project.wait_until(lambda: len(tagged(project, "slow")) >= 12, "members to start")
    first.kill_group()  # SIGKILL: running members and unsent settles are lost
    first.wait(10)
    project.worker("-c", "4")
    assert r.get(timeout=60) == sum(range(40))
    time.sleep(0.5)
    assert tagged(project, "total") == [["40", str(sum(range(40)))]]
    assert {int(f[0]) for f in tagged(project, "slow")} == set(range(40))


def test_unique_while_queued_running_and_debounced(project: Project) -> None:
    t = project.write_tasks(TASKS, lease=10)
    flag = project.root / "open"

    queued = t.sync.delay(1)  # no worker yet: it waits in the queue
    assert t.sync.delay(1).id == queued.id
    other = t.sync.delay(2)
    assert other.id != queued.id
    held = t.gate.apply_async((str(flag),), unique_key="gate")
    assert t.gate.apply_async((str(flag),), unique_key="gate").id == held.id

    project.worker("-c", "2")
    project.wait_until(lambda: tagged(project, "gate"), "the gate task to start")
    assert held.state == "STARTED"
    assert t.gate.apply_async((str(flag),), unique_key="gate").id == held.id  # running
    flag.touch()  # (results of a batch claimed with the gate show when the gate is done)
    assert held.get(timeout=30) == str(flag)
    assert queued.get(timeout=30) == 1 and other.get(timeout=30) == 2
    again = t.gate.apply_async((str(flag),), unique_key="gate")  # finished: a new one
    assert again.id != held.id and again.get(timeout=30) == str(flag)

    first = t.rebuild.delay("shop")
    assert first.get(timeout=30) == "shop"
    assert t.rebuild.delay("shop").id == first.id  # finished, but within unique_for
    time.sleep(1.6)
    later = t.rebuild.delay("shop")
    assert later.id != first.id and later.get(timeout=30) == "shop"
    counts = collections.Counter(f[0] for f in tagged(project, "sync"))
    assert counts == {"1": 1, "2": 1}
    assert len(tagged(project, "rebuild")) == 2
    assert len(tagged(project, "gate")) == 2
