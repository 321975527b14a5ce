"""The Redis backend (redis://, rediss://, unix://): see backend.py and scripts/common.lua."""

from .backend import RedisBackend

__all__ = ["RedisBackend"]
