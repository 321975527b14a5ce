"""serializers.py: what each format accepts, and why a signed codec never decodes a bad body."""

from __future__ import annotations

import datetime as dt
import math
import pickle
from pathlib import Path
from typing import Any

import pytest

from conveyor import ConfigError, Conveyor, SerializationError
from conveyor.serializers import (
    SIGNED,
    Codec,
    JsonSerializer,
    MsgpackSerializer,
    PickleSerializer,
    make_serializer,
)

KEY = "s3cret"


def json_codec(key: str | bytes | None = None) -> Codec:
    return Codec(make_serializer("json", key), key)


def _touch(path: str) -> None:
    """Runs only if an evil pickle is actually unpickled."""
    Path(path).write_text("unpickled")


class Evil:
    """Unpickling this writes a file: the proof that a body was (or was not) unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_touch, (self.path,))


# --- JSON -----------------------------------------------------------------------------------
def test_json_round_trip_plain_values() -> None:
    codec = json_codec()
    value = {"a": [1, 2.5, "x", None, True], "nested": {"b": []}, "s": "héllo ✓"}
    assert codec.decode(codec.encode(value)) == value


def test_json_tuples_become_lists_and_int_keys_strings() -> None:
    codec = json_codec()
    assert codec.decode(codec.encode({"t": (1, (2, 3))})) == {"t": [1, [2, 3]]}
    assert codec.decode(codec.encode({1: "a", 2: {3: "b"}})) == {"1": "a", "2": {"3": "b"}}


def test_json_64_bit_integers_survive() -> None:
    codec = json_codec()
    edges = [2**63 - 1, 2**63, 2**64 - 1, -(2**63)]
    assert codec.decode(codec.encode(edges)) == edges


@pytest.mark.parametrize("big", [2**64, 2**80 + 1, -(2**63) - 1])
def test_json_wider_integers_survive(big: int) -> None:
    codec = json_codec()
    decoded = codec.decode(codec.encode([big]))
    assert decoded == [big] and type(decoded[0]) is int


@pytest.mark.parametrize("value", [
    math.nan,
    math.inf,
    -math.inf,
    dt.datetime(2024, 1, 1),
    dt.date(2024, 1, 1),
    object(),
    {1, 2},
    b"bytes",
    "\ud800",  # a lone surrogate cannot be UTF-8 encoded
], ids=["nan", "inf", "-inf", "datetime", "date", "object", "set", "bytes", "surrogate"])
def test_json_refuses_what_it_cannot_round_trip(value: Any) -> None:
    with pytest.raises(SerializationError):
        json_codec().encode({"x": [value]})


def test_json_refuses_circular_values() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(SerializationError):
        JsonSerializer().dumps(loop)


def test_json_invalid_body_is_a_serialization_error() -> None:
    with pytest.raises(SerializationError, match="invalid JSON"):
        json_codec().decode(b"J{not json")


# --- msgpack --------------------------------------------------------------------------------
def test_msgpack_round_trip() -> None:
    codec = Codec(make_serializer("msgpack", None))
    value = {"a": [1, 2.5, "x", None, True], "b": b"\x00\xff", "n": {"k": -3}}
    body = codec.encode(value)
    assert body[:1] == MsgpackSerializer.marker
    assert codec.decode(body) == value


def test_msgpack_keeps_int_keys_and_turns_tuples_into_lists() -> None:
    codec = Codec(make_serializer("msgpack", None))
    assert codec.decode(codec.encode({1: (2, 3)})) == {1: [2, 3]}


@pytest.mark.parametrize("value", [object(), 2**70, dt.datetime(2024, 1, 1)],
                         ids=["object", "int-too-wide", "datetime"])
def test_msgpack_refuses_unencodable(value: Any) -> None:
    with pytest.raises(SerializationError):
        MsgpackSerializer().dumps(value)


def test_msgpack_invalid_body_is_a_serialization_error() -> None:
    codec = Codec(make_serializer("msgpack", None))
    with pytest.raises(SerializationError, match="invalid msgpack"):
        codec.decode(b"M\xc1")  # 0xc1 is never used in msgpack


def test_msgpack_app_still_reads_json_bodies() -> None:
    codec = Codec(make_serializer("msgpack", None))
    assert codec.decode(json_codec().encode([1, 2])) == [1, 2]


# --- pickle ---------------------------------------------------------------------------------
def test_pickle_refused_without_secret_key() -> None:
    with pytest.raises(ConfigError, match="secret_key"):
        make_serializer("pickle", None)
    with pytest.raises(ConfigError, match="secret_key"):
        Conveyor("memory://", serializer="pickle")


def test_pickle_accepted_with_secret_key() -> None:
    app = Conveyor("memory://", serializer="pickle", secret_key=KEY)
    value = {"when": dt.datetime(2024, 1, 1), "set": {1, 2}, "t": (1, 2)}
    body = app.codec.encode(value)
    assert body[:1] == SIGNED
    assert app.codec.decode(body) == value  # types survive: that is what pickle is for


def test_unknown_serializer_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="yaml"):
        make_serializer("yaml", None)
    with pytest.raises(ConfigError, match="yaml"):
        Conveyor("memory://", serializer="yaml")


# --- signing --------------------------------------------------------------------------------
@pytest.mark.parametrize("key", [KEY, KEY.encode()], ids=["str", "bytes"])
def test_signed_round_trip(key: str | bytes) -> None:
    codec = json_codec(key)
    body = codec.encode({"a": 1})
    assert body[:1] == SIGNED
    assert codec.decode(body) == {"a": 1}
    # A str key and its UTF-8 bytes are the same key.
    assert json_codec(KEY).decode(body) == {"a": 1}


def test_tampered_body_refused() -> None:
    codec = json_codec(KEY)
    body = bytearray(codec.encode({"amount": 1}))
    body[-2:-1] = b"9"  # {"amount":1} -> {"amount":9}
    with pytest.raises(SerializationError, match="bad signature"):
        codec.decode(bytes(body))


def test_other_key_refused() -> None:
    body = json_codec("another key").encode({"a": 1})
    with pytest.raises(SerializationError, match="bad signature"):
        json_codec(KEY).decode(body)


@pytest.mark.parametrize("body", [b'J{"a":1}', b"", b"S", b"S" + b"\x00" * 10])
def test_unsigned_or_truncated_body_refused_when_key_set(body: bytes) -> None:
    with pytest.raises(SerializationError, match="bad signature"):
        json_codec(KEY).decode(body)


def test_signed_body_refused_by_app_without_key() -> None:
    body = json_codec(KEY).encode({"a": 1})
    with pytest.raises(SerializationError, match="secret_key"):
        json_codec().decode(body)


def test_evil_pickle_really_runs_when_unpickled(tmp_path: Path) -> None:
    """Control for the tests below: the payload does have a side effect."""
    flag = tmp_path / "flag"
    PickleSerializer().loads(pickle.dumps(Evil(flag)))
    assert flag.read_text() == "unpickled"


def test_tampered_pickle_is_never_unpickled(tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    codec = Codec(make_serializer("pickle", KEY), KEY)
    good = codec.encode("harmless")
    # Keep the genuine signature, swap in an evil payload.
    forged = good[:1 + 32] + PickleSerializer.marker + pickle.dumps(Evil(flag))
    with pytest.raises(SerializationError, match="bad signature"):
        codec.decode(forged)
    assert not flag.exists()


def test_unsigned_pickle_is_never_unpickled_by_signed_app(tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    codec = Codec(make_serializer("pickle", KEY), KEY)
    with pytest.raises(SerializationError, match="bad signature"):
        codec.decode(PickleSerializer.marker + pickle.dumps(Evil(flag)))
    assert not flag.exists()


@pytest.mark.parametrize("key", [None, KEY], ids=["unsigned-app", "signed-app"])
def test_pickle_body_refused_by_json_app(tmp_path: Path, key: str | None) -> None:
    """Even correctly signed, a pickle body never reaches pickle in an app that did not choose
    pickle."""
    flag = tmp_path / "flag"
    evil = Codec(PickleSerializer(), key).encode(Evil(flag))
    with pytest.raises(SerializationError, match="pickle"):
        json_codec(key).decode(evil)
    assert not flag.exists()


def test_unknown_marker_refused() -> None:
    with pytest.raises(SerializationError, match="marker"):
        json_codec().decode(b"Xwhatever")
