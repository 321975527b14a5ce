"""Middleware: the one extension mechanism, around enqueue and around execution."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from conveyor import (
    ConfigError,
    Conveyor,
    EnqueueCall,
    ExecuteCall,
    FakeClock,
    Middleware,
    Result,
    TaskFailed,
)


class Recorder(Middleware):
    options = frozenset({"audit"})

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def enqueue(self, call: EnqueueCall, call_next: Callable[[EnqueueCall], Result]) -> Result:
        self.log.append(f"{self.name}:enqueue:{call.task.name}")
        return call_next(call)

    def execute(self, call: ExecuteCall, call_next: Callable[[ExecuteCall], Any]) -> Any:
        self.log.append(f"{self.name}:before:{call.ctx.attempt}")
        try:
            return call_next(call)
        finally:
            self.log.append(f"{self.name}:after")


def make(*middleware: Middleware, eager: bool = False) -> Conveyor:
    return Conveyor("memory://", middleware=list(middleware), clock=FakeClock(), eager=eager)


def test_the_first_middleware_is_the_outermost() -> None:
    log: list[str] = []
    app = make(Recorder("a", log), Recorder("b", log))

    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        log.append("task")
        return x + y

    r = add.delay(1, 2)
    assert log == ["a:enqueue:t.add", "b:enqueue:t.add"]
    log.clear()
    app.drain()
    assert r.get(timeout=1) == 3
    assert log == ["a:before:1", "b:before:1", "task", "b:after", "a:after"]


def test_an_option_owned_by_middleware_is_accepted_and_kept() -> None:
    app = make(Recorder("a", []))
    t = app.task(name="t.audited", audit="yes")(lambda: None)
    assert t.options.extra == {"audit": "yes"}
    with pytest.raises(ConfigError, match="unknown option.*audti"):
        app.task(name="t.typo", audti="yes")(lambda: None)
    with pytest.raises(ConfigError, match="unknown option.*audit"):
        make().task(name="t.nobody", audit="yes")(lambda: None)


def test_enqueue_middleware_may_change_arguments_or_refuse() -> None:
    class Double(Middleware):
        def enqueue(self, call: EnqueueCall,
                    call_next: Callable[[EnqueueCall], Result]) -> Result:
            if call.args and call.args[0] < 0:
                raise ConfigError("negative numbers are refused")
            call.args = tuple(2 * a for a in call.args)
            return call_next(call)

    app = make(Double())

    @app.task(name="t.ident")
    def ident(x: int) -> int:
        return x

    r = ident.delay(4)
    group = ident.map([(1,), (2,)])
    with pytest.raises(ConfigError, match="negative"):
        ident.delay(-1)
    assert app.drain() == 3, "the refused call enqueued nothing"
    assert r.get(timeout=1) == 8
    assert group.get(timeout=1) == [2, 4]


def test_an_error_raised_by_execute_middleware_is_the_tasks_failure() -> None:
    class Refuse(Middleware):
        def execute(self, call: ExecuteCall, call_next: Callable[[ExecuteCall], Any]) -> Any:
            raise PermissionError("not today")

    app = make(Refuse())
    r = app.task(name="t.x", retries=1, retry_delay=5)(lambda: 1).delay()
    app.drain()  # both attempts, the retry's delay passing on the fake clock
    with pytest.raises(TaskFailed) as info:
        r.get(timeout=1)
    assert info.value.exc_type == "PermissionError"


def test_eager_mode_runs_through_the_middleware() -> None:
    log: list[str] = []
    app = make(Recorder("a", log), eager=True)
    assert app.task(name="t.one")(lambda: 1).delay().get() == 1
    assert log == ["a:enqueue:t.one", "a:before:1", "a:after"]


def test_middleware_must_be_middleware() -> None:
    with pytest.raises(ConfigError, match="Middleware"):
        Conveyor("memory://", middleware=[object()])  # type: ignore[list-item]
