"""Every error conveyor raises, under one root, plus the two control-flow exceptions.

`Retry` and `Reject` are raised *inside* tasks to steer the worker; they are not failures of
the library, so they do not derive from `ConveyorError`.
"""

from __future__ import annotations


class ConveyorError(Exception):
    """Root of every error raised by conveyor itself."""


class ConfigError(ConveyorError):
    """A setting, URL, task option or APP path is wrong."""


class SerializationError(ConveyorError):
    """A value cannot be encoded (at the call site) or a message cannot be decoded."""


class TimeoutError(ConveyorError):  # noqa: A001 - the public name of API.md
    """Waiting for a result ran out of time."""


class BackendUnavailable(ConveyorError):
    """The backend cannot be reached; the message names the URL with its password hidden."""


class TaskTimeout(ConveyorError):
    """A task ran past its `timeout` and was stopped."""


class WorkerLost(ConveyorError):
    """The process running a task died before the task finished."""


class TaskFailed(ConveyorError):
    """Raised by `Result.get()` when the task failed; carries the worker's error."""

    def __init__(self, task_id: str, exc_type: str, exc_message: str, traceback: str = "",
                 task_name: str = "") -> None:
        self.task_id = task_id
        self.exc_type = exc_type
        self.exc_message = exc_message
        self.traceback = traceback
        self.task_name = task_name
        super().__init__(task_id, exc_type, exc_message)

    def __str__(self) -> str:
        where = f"task {self.task_name} [{self.task_id}]" if self.task_name else f"task {self.task_id}"
        text = f"{where} failed: {self.exc_type}: {self.exc_message}"
        if self.traceback:
            text += "\n\nRemote traceback:\n" + self.traceback.rstrip()
        return text

    def __reduce__(self) -> tuple[object, ...]:
        return (TaskFailed, (self.task_id, self.exc_type, self.exc_message, self.traceback,
                             self.task_name))


class TaskRevoked(TaskFailed):
    """Raised by `Result.get()` when the task was revoked (`Result.revoke()`) or expired before
    it started (`expires`): its state is REVOKED. A `TaskFailed`, so code that catches that
    catches this too; `exc_type` is "TaskRevoked" or "TaskExpired"."""

    def __str__(self) -> str:
        where = f"task {self.task_name} [{self.task_id}]" if self.task_name else f"task {self.task_id}"
        return f"{where} was revoked: {self.exc_type}: {self.exc_message}"

    def __reduce__(self) -> tuple[object, ...]:
        return (TaskRevoked, (self.task_id, self.exc_type, self.exc_message, self.traceback,
                              self.task_name))


class Retry(Exception):  # noqa: N818 - public name of API.md
    """Raise inside a task to run it again after `delay` seconds (or the task's retry policy)."""

    def __init__(self, delay: float | None = None, exc: BaseException | None = None) -> None:
        self.delay = delay
        self.exc = exc
        super().__init__(delay, exc)

    def __str__(self) -> str:
        text = "the task asked to be retried"
        if self.delay is not None:
            text += f" in {self.delay:g}s"
        if self.exc is not None:
            text += f" ({type(self.exc).__name__}: {self.exc})"
        return text


class Reject(Exception):  # noqa: N818 - public name of API.md
    """Raise inside a task to send it to the dead letters at once, with `reason`."""

    def __init__(self, reason: str = "rejected") -> None:
        self.reason = reason
        super().__init__(reason)
