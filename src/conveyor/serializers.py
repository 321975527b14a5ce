"""Turning values into bytes and back: JSON by default, msgpack or pickle when named, HMAC signing.

Every body starts with one marker byte naming its format, so a worker can refuse a format it was
not configured for (pickle above all) before it decodes anything. A signed body is
`b"S" + hmac_sha256(key, inner) + inner`; the signature is checked before decoding.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Protocol

from .errors import ConfigError, SerializationError

SIGNED = b"S"
_DIGEST_SIZE = 32


class Serializer(Protocol):
    marker: bytes
    name: str

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class JsonSerializer:
    """Strict JSON: values round-trip as `json.dumps`/`json.loads` do (tuples become lists,
    dict keys become strings); NaN, datetimes, sets and objects are refused."""

    marker = b"J"
    name = "json"

    def __init__(self) -> None:
        self._encoder = json.JSONEncoder(allow_nan=False, separators=(",", ":"),
                                         ensure_ascii=False)
    def dumps(self, value: Any) -> bytes:
        try:
            return self._encoder.encode(value).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            raise SerializationError(str(exc)) from None

    def loads(self, data: bytes) -> Any:
        # The standard library, not orjson: orjson turns integers wider than 64 bits into
        # floats, and values must round-trip exactly as JSON does.
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise SerializationError(f"invalid JSON: {exc}") from None


class MsgpackSerializer:
    marker = b"M"
    name = "msgpack"

    def __init__(self) -> None:
        try:
            import msgpack
        except ImportError:
            raise ConfigError("serializer='msgpack' needs msgpack: pip install 'conveyor[msgpack]'")
        self._msgpack = msgpack

    def dumps(self, value: Any) -> bytes:
        try:
            return bytes(self._msgpack.packb(value, use_bin_type=True))
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(str(exc)) from None

    def loads(self, data: bytes) -> Any:
        try:
            return self._msgpack.unpackb(data, raw=False, strict_map_key=False)
        except Exception as exc:
            raise SerializationError(f"invalid msgpack: {exc}") from None


class PickleSerializer:
    """Only ever used when named explicitly *and* a secret_key signs every message."""

    marker = b"P"
    name = "pickle"

    def dumps(self, value: Any) -> bytes:
        import pickle

        try:
            return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise SerializationError(str(exc)) from None

    def loads(self, data: bytes) -> Any:
        import pickle

        try:
            return pickle.loads(data)  # noqa: S301 - only reached for signed bodies
        except Exception as exc:
            raise SerializationError(f"invalid pickle: {exc}") from None


def make_serializer(name: str, secret_key: str | bytes | None) -> Serializer:
    if name == "json":
        return JsonSerializer()
    if name == "msgpack":
        return MsgpackSerializer()
    if name == "pickle":
        if not secret_key:
            raise ConfigError("serializer='pickle' requires secret_key: unsigned pickle lets "
                              "anyone who can write to the queue run code on your workers")
        return PickleSerializer()
    raise ConfigError(f"unknown serializer {name!r}: use 'json', 'msgpack' or 'pickle'")


class Codec:
    """Encodes with the configured serializer (and signs); decodes any allowed marker."""

    def __init__(self, serializer: Serializer, secret_key: str | bytes | None = None) -> None:
        self.serializer = serializer
        self._key = secret_key.encode() if isinstance(secret_key, str) else secret_key
        self._by_marker: dict[bytes, Serializer] = {serializer.marker: serializer}
        if serializer.marker != JsonSerializer.marker:
            self._by_marker[JsonSerializer.marker] = JsonSerializer()

    def encode(self, value: Any) -> bytes:
        inner = self.serializer.marker + self.serializer.dumps(value)
        if self._key is None:
            return inner
        return SIGNED + hmac.new(self._key, inner, hashlib.sha256).digest() + inner

    def decode(self, body: bytes) -> Any:
        body = bytes(body)
        if self._key is not None:
            if body[:1] != SIGNED or len(body) < 1 + _DIGEST_SIZE:
                raise SerializationError("bad signature: message is not signed")
            sig, inner = body[1:1 + _DIGEST_SIZE], body[1 + _DIGEST_SIZE:]
            good = hmac.new(self._key, inner, hashlib.sha256).digest()
            if not hmac.compare_digest(sig, good):
                raise SerializationError("bad signature: message was tampered with or signed "
                                         "with another key")
            body = inner
        elif body[:1] == SIGNED:
            raise SerializationError("message is signed but this app has no secret_key")
        marker, data = body[:1], body[1:]
        serializer = self._by_marker.get(marker)
        if serializer is None:
            if marker == PickleSerializer.marker:
                raise SerializationError("pickle message refused: this app does not use "
                                         "serializer='pickle'")
            raise SerializationError(f"unknown message format marker {marker!r}")
        return serializer.loads(data)
