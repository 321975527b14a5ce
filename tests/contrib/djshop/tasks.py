"""The tasks of the test Django app: conveyor tasks and Django tasks-framework functions."""

from __future__ import annotations

from typing import Any

from conveyor.contrib.django import app

try:
    from django.tasks import task  # Django >= 6
except ImportError:
    from django_tasks import task  # type: ignore[no-redef]

RAN: list[Any] = []


@app.task
def add(a: int, b: int) -> int:
    return a + b


@app.task
def record(value: Any) -> None:
    RAN.append(value)


@task()
def multiply(a: int, b: int) -> int:
    return a * b


@task(takes_context=True)
def attempt(context: Any, x: int) -> list[int]:
    return [context.attempt, x]


@task()
def fail() -> None:
    raise ValueError("bad input")
