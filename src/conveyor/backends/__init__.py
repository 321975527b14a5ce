"""Backends: URL scheme -> implementation, imported only when used."""

from __future__ import annotations

import importlib
import os
from urllib.parse import urlsplit

from ..errors import ConfigError
from .base import Backend, redact

__all__ = ["DEFAULT_URL", "SCHEMES", "Backend", "backend_class", "create_backend", "known_schemes",
           "redact", "resolve_url"]

SCHEMES: dict[str, str] = {
    "memory": "conveyor.backends.memory:MemoryBackend",
    "sqlite": "conveyor.backends.sqlite:SqliteBackend",
    "redis": "conveyor.backends.redis.backend:RedisBackend",
    "rediss": "conveyor.backends.redis.backend:RedisBackend",
    "unix": "conveyor.backends.redis.backend:RedisBackend",
    "postgresql": "conveyor.backends.postgres.backend:PostgresBackend",
    "postgres": "conveyor.backends.postgres.backend:PostgresBackend",
}
DEFAULT_URL = "sqlite:///conveyor.db"


def resolve_url(url: str | None) -> str:
    """The URL to use: the one given, else CONVEYOR_URL, else the embedded SQLite default."""
    return url or os.environ.get("CONVEYOR_URL") or DEFAULT_URL


def known_schemes() -> str:
    return ", ".join(f"{s}://" for s in sorted(SCHEMES))


def backend_class(url: str) -> type[Backend]:
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    target = SCHEMES.get(scheme)
    if target is None:
        raise ConfigError(f"unknown backend URL {redact(url)!r}: the schemes that exist are "
                          f"{known_schemes()}")
    module_name, class_name = target.split(":")
    cls: type[Backend] = getattr(importlib.import_module(module_name), class_name)
    return cls


def create_backend(url: str) -> Backend:
    """A backend for `url`. Validates the URL; connects lazily, on first use."""
    cls = backend_class(url)
    try:
        return cls(url)  # type: ignore[call-arg]
    except ConfigError as exc:
        raise ConfigError(f"{exc} (the schemes that exist are {known_schemes()})") from None
