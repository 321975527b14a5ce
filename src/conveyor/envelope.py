"""The message that travels from producer to worker.

Decoders ignore fields they do not know and default the ones that are missing, so an older
worker reads a newer producer's message as long as the format version is one it understands.

Version 2 adds `flow`, the workflow a task belongs to (links, the rest of a chain, chord
membership; see worker/flow.py). Only messages that carry a flow are written as version 2, so
plain messages stay readable by version-1 workers, while a version-1 worker dead-letters a
workflow step with "upgrade conveyor on the workers" instead of silently dropping its links.

`trace` (the producer's W3C trace context, see tracing.py) needs no new version: a worker that
does not know it ignores it and loses nothing but the link between two traces. A malformed one
is dropped rather than failing the task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import SerializationError

FORMAT_VERSION = 2  # the newest format this code reads and writes


@dataclass(frozen=True, slots=True)
class Envelope:
    id: str
    task: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str = "default"
    priority: int = 0
    created_at: float = 0.0
    expires_at: float | None = None
    retries: int | None = None  # per-call override of the task's `retries`
    flow: dict[str, Any] | None = None  # workflow links, plain data (worker/flow.py); v2
    trace: dict[str, str] | None = None  # {"traceparent": ..., "tracestate": ...} (tracing.py)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "v": 1 if self.flow is None else 2,
            "id": self.id,
            "task": self.task,
            "args": self.args,
            "kwargs": self.kwargs,
            "queue": self.queue,
            "priority": self.priority,
            "created_at": self.created_at,
        }
        if self.expires_at is not None:
            data["expires_at"] = self.expires_at
        if self.retries is not None:
            data["retries"] = self.retries
        if self.flow is not None:
            data["flow"] = self.flow
        if self.trace:
            data["trace"] = self.trace
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Envelope:
        """Validate a decoded body; raises SerializationError naming what is wrong."""
        if not isinstance(data, dict):
            raise SerializationError(f"message is a {type(data).__name__}, not an object")
        version = data.get("v")
        if isinstance(version, bool) or not isinstance(version, int):
            raise SerializationError("message has no format version")
        if version < 1:
            raise SerializationError(f"unknown message format version {version}")
        if version > FORMAT_VERSION:
            raise SerializationError(
                f"message format version {version} is newer than this worker understands "
                f"(up to {FORMAT_VERSION}): upgrade conveyor on the workers")
        try:
            args = data.get("args", [])
            kwargs = data.get("kwargs", {})
            if not isinstance(args, list):
                raise SerializationError("message 'args' is not a list")
            if not isinstance(kwargs, dict):
                raise SerializationError("message 'kwargs' is not an object")
            expires = data.get("expires_at")
            retries = data.get("retries")
            flow = data.get("flow")
            if flow is not None and not isinstance(flow, dict):
                raise SerializationError("message 'flow' is not an object")
            env = cls(
                id=_str(data, "id"),
                task=_str(data, "task"),
                args=args,
                kwargs=kwargs,
                queue=_str(data, "queue") if "queue" in data else "default",
                priority=_int(data.get("priority", 0), "priority"),
                created_at=float(data.get("created_at", 0.0)),
                expires_at=None if expires is None else float(expires),
                retries=None if retries is None else _int(retries, "retries"),
                flow=flow,
                trace=_trace(data.get("trace")),
            )
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(f"malformed message: {exc}") from None
        return env


def _trace(value: Any) -> dict[str, str] | None:
    if not isinstance(value, dict):
        return None
    found = {k: v for k, v in value.items()
             if k in ("traceparent", "tracestate") and isinstance(v, str)}
    return found or None


def _str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise SerializationError(f"message field {key!r} is missing or not a string")
    return value


def _int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SerializationError(f"message field {key!r} is not an integer")
    return value
