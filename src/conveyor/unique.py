"""Unique tasks: the dedup key of a call, built on `Message.dedup_key`/`dedup_retention`.

While a message holding a key is queued or running, enqueueing another with the same key
writes nothing and returns the holder's id (every backend does this atomically), so the
producer gets the existing `Result`. `unique_for` keeps the key that many seconds after the
task finished (debounce).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from .task import Task

PREFIX = "unique:"


def dedup_key(task: Task[Any, Any], args: Sequence[Any], kwargs: dict[str, Any],
              unique_key: str | None = None, unique_for: float | timedelta | None = None,
              ) -> tuple[str | None, float]:
    """(dedup key, retention seconds) of one call; (None, 0.0) when it is not unique.

    `unique_key` names the key itself (shared by every task that uses it); otherwise a task
    declared `unique=True` (or a call given `unique_for`) is keyed by its name and a canonical
    encoding of its arguments."""
    from .task import seconds

    retention = seconds(unique_for, f"{task.name}: unique_for")
    if retention is None:
        retention = task.options.unique_for
    if retention is not None and retention < 0:
        raise ConfigError(f"{task.name}: unique_for must be >= 0 seconds")
    if unique_key is not None:
        if not isinstance(unique_key, str) or not unique_key:
            raise ConfigError(f"{task.name}: unique_key must be a non-empty string, "
                              f"not {unique_key!r}")
        return PREFIX + unique_key, retention or 0.0
    if task.options.unique or unique_for is not None:
        return f"{PREFIX}{task.name}:{arguments_digest(args, kwargs)}", retention or 0.0
    return None, 0.0


def arguments_digest(args: Sequence[Any], kwargs: dict[str, Any]) -> str:
    """A digest of the arguments that does not depend on dict order, and that sees a tuple
    and a list alike (as they arrive in the worker)."""
    text = json.dumps([list(args), kwargs], sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, default=_fallback)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def _fallback(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return {"__bytes__": bytes(value).hex()}
    if isinstance(value, set | frozenset):
        return sorted(repr(v) for v in value)
    return {"__repr__": repr(value)}
