"""A backend for Django's tasks framework: `@django.tasks.task` functions run on conveyor
workers. Django 6's `django.tasks` when present, else the `django-tasks` backport (Django 5)::

    TASKS = {
        "default": {
            "BACKEND": "conveyor.contrib.django.backend.ConveyorTaskBackend",
            "QUEUES": [],                       # any queue name (default: only "default")
            "OPTIONS": {"app": "myproject.queue:app"},   # optional; default: settings.CONVEYOR
        }
    }

    # shop/tasks.py
    from django.tasks import task               # or: from django_tasks import task

    @task(priority=10, queue_name="mail")
    def send_receipt(order_id): ...

    result = send_receipt.enqueue(order.id)     # a django TaskResult
    result.refresh(); result.status, result.return_value

Each Django task is a conveyor task named by its module path (`shop.tasks.send_receipt`),
registered when the function is decorated, so the worker (`manage.py conveyor_worker`, which
imports every app's tasks.py) knows it. `priority` (-100..100, larger first), `queue_name`,
`run_after` and `takes_context` (the context's `attempt` is conveyor's) carry over; retries
are conveyor's business (`OPTIONS: {"task_options": {"retries": 3}}` applies `@app.task`
options to every task).

A result id is `<module path>:<hex>`, so `get_result(id)` knows its task from any process.
What conveyor does not keep is left empty on a fetched result: `args`, `kwargs`,
`enqueued_at`, `started_at`, `worker_ids`; `errors[0].exception_class_path` is the class name
(`builtins.ValueError` for built-in exceptions) with the worker's traceback.
"""

from __future__ import annotations

import builtins
import dataclasses
import inspect
import uuid
from datetime import UTC, datetime
from typing import Any

from ...app import Conveyor
from ...backends.base import FAILURE, PROGRESS, REVOKED, STARTED, SUCCESS
from ...errors import TaskFailed
from ...task import TaskContext

try:  # Django >= 6.0
    from django.tasks.backends.base import BaseTaskBackend  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from django.tasks.base import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        TaskContext as DjangoTaskContext,
    )
    from django.tasks.base import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        TaskError,
        TaskResult,
        TaskResultStatus,
    )
    from django.tasks.exceptions import TaskResultDoesNotExist  # type: ignore[import-untyped,import-not-found,unused-ignore]
except ImportError:  # the django-tasks backport
    from django_tasks.backends.base import BaseTaskBackend  # type: ignore[import-untyped,import-not-found,unused-ignore,no-redef]
    from django_tasks.base import (  # type: ignore[import-untyped,import-not-found,unused-ignore,no-redef]
        TaskContext as DjangoTaskContext,
    )
    from django_tasks.base import (  # type: ignore[import-untyped,import-not-found,unused-ignore,no-redef]
        TaskError,
        TaskResult,
        TaskResultStatus,
    )
    from django_tasks.exceptions import TaskResultDoesNotExist  # type: ignore[import-untyped,import-not-found,unused-ignore,no-redef]

__all__ = ["ConveyorTaskBackend"]

_STATUS = {SUCCESS: "SUCCESSFUL", FAILURE: "FAILED", REVOKED: "FAILED", STARTED: "RUNNING",
           PROGRESS: "RUNNING"}


class ConveyorTaskBackend(BaseTaskBackend):  # type: ignore[misc,unused-ignore]
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self._app_path: str | None = self.options.get("app")
        self._task_options: dict[str, Any] = dict(self.options.get("task_options") or {})
        self._app: Conveyor | None = None

    @property
    def app(self) -> Conveyor:
        if self._app is None:
            if self._app_path:
                from ...loader import load_app

                self._app = load_app(self._app_path)
            else:
                from . import get_app

                self._app = get_app()
        return self._app

    # --- registration: each Django task is a conveyor task ---------------------------------
    def validate_task(self, task: Any) -> None:
        super().validate_task(task)
        self._register(task)

    def _register(self, task: Any) -> Any:
        name = task.module_path
        existing = self.app.tasks.get(name)
        if existing is not None and getattr(existing.fn, "_django_func", None) is task.func:
            return existing
        django_task = task

        def run(ctx: TaskContext, *args: Any, **kwargs: Any) -> Any:
            if django_task.takes_context:
                result = self._result(django_task, ctx.id, TaskResultStatus.RUNNING,
                                      worker_ids=["conveyor"] * ctx.attempt,
                                      args=list(args), kwargs=dict(kwargs))
                return django_task.call(DjangoTaskContext(task_result=result), *args, **kwargs)
            return django_task.call(*args, **kwargs)

        run._django_func = task.func  # type: ignore[attr-defined]
        run.__module__ = task.func.__module__
        run.__qualname__ = run.__name__ = task.func.__name__
        run.__doc__ = task.func.__doc__
        sig = inspect.signature(task.func)
        if not task.takes_context:  # conveyor's bind=True drops the first parameter
            ctx_param = inspect.Parameter("_conveyor_ctx", inspect.Parameter.POSITIONAL_ONLY)
            sig = sig.replace(parameters=[ctx_param, *sig.parameters.values()])
        run.__signature__ = sig  # type: ignore[attr-defined]
        return self.app.task(name=name, bind=True, **self._task_options)(run)

    # --- producing ----------------------------------------------------------------------
    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        self.validate_task(task)
        conveyor_task = self._register(task)
        task_id = f"{task.module_path}:{uuid.uuid4().hex}"
        options: dict[str, Any] = {"priority": task.priority, "queue": task.queue_name,
                                   "task_id": task_id}
        if task.run_after is not None:
            options["eta"] = task.run_after
        r = conveyor_task.apply_async(tuple(args), dict(kwargs), **options)
        result = self._result(task, r.id, TaskResultStatus.READY, args=list(args),
                              kwargs=dict(kwargs), enqueued_at=datetime.now(UTC))
        if self.app.eager:  # ran already: show its outcome
            return self._fill(result, r)
        return result

    # --- results ------------------------------------------------------------------------
    def get_result(self, result_id: str) -> Any:
        from django.utils.module_loading import import_string  # type: ignore[import-untyped,import-not-found,unused-ignore]

        module_path, sep, _ = result_id.rpartition(":")
        try:
            task = import_string(module_path) if sep else None
        except ImportError:
            task = None
        if task is None or not hasattr(task, "func") or not hasattr(task, "module_path"):
            raise TaskResultDoesNotExist(result_id)
        self._register(task)
        result = self._result(task, result_id, TaskResultStatus.READY)
        return self._fill(result, self.app.result(result_id))

    def _fill(self, result: Any, r: Any) -> Any:
        stored = r._stored()
        if stored is None:
            return result
        status = getattr(TaskResultStatus, _STATUS.get(stored.state, "READY"))
        object.__setattr__(result, "status", status)
        finished = datetime.fromtimestamp(stored.updated_at, UTC) if stored.updated_at else None
        if stored.state in (SUCCESS, FAILURE, REVOKED):
            object.__setattr__(result, "finished_at", finished)
            object.__setattr__(result, "last_attempted_at", finished)
        if stored.state == SUCCESS:
            object.__setattr__(result, "_return_value", r.get(timeout=0))
        elif stored.state in (FAILURE, REVOKED):
            failure = r.get(timeout=0, propagate=False)
            if isinstance(failure, TaskFailed):
                result.errors.append(TaskError(
                    exception_class_path=_class_path(failure.exc_type),
                    traceback=failure.traceback or f"{failure.exc_type}: {failure.exc_message}"))
        return result

    def _result(self, task: Any, result_id: str, status: Any, **fields: Any) -> Any:
        values: dict[str, Any] = {
            "task": task, "id": result_id, "status": status, "enqueued_at": None,
            "started_at": None, "finished_at": None, "last_attempted_at": None, "args": [],
            "kwargs": {}, "backend": self.alias, "errors": [], "worker_ids": [],
        }
        values.update(fields)
        known = {f.name for f in dataclasses.fields(TaskResult) if f.init}
        return TaskResult(**{k: v for k, v in values.items() if k in known})


def _class_path(exc_type: str) -> str:
    if "." not in exc_type and isinstance(getattr(builtins, exc_type, None), type):
        return f"builtins.{exc_type}"
    return exc_type

