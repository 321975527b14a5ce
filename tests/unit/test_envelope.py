"""envelope.py: the message format survives round trips, tolerates older and newer producers,
and turns every kind of garbage into SerializationError (so a worker can dead-letter it)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conveyor import SerializationError
from conveyor.envelope import FORMAT_VERSION, Envelope
from conveyor.serializers import Codec, make_serializer

# A literal body as a v1 producer writes it with only the fields v1 requires.
V1_MINIMAL_BODY = b'J{"v":1,"id":"0f3c9a","task":"shop.resize"}'
V1_BODY_WITH_EXTRAS = (b'J{"v":1,"id":"7d1","task":"tasks.add","args":[1,2],'
                       b'"kwargs":{"c":3},"queue":"math","priority":5,'
                       b'"created_at":1700000000.5,"expires_at":1700000060.0,"retries":2}')

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
names = st.text(min_size=1, max_size=30)  # hypothesis text never holds lone surrogates
finite = st.floats(allow_nan=False, allow_infinity=False)

envelopes = st.builds(
    Envelope,
    id=names,
    task=names,
    args=st.lists(json_values, max_size=5),
    kwargs=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
    queue=names,
    priority=st.integers(-(2**31), 2**31),
    created_at=finite,
    expires_at=st.none() | finite,
    retries=st.none() | st.integers(0, 1000),
)


@given(envelopes)
def test_dict_round_trip(env: Envelope) -> None:
    assert Envelope.from_dict(env.to_dict()) == env


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
@pytest.mark.parametrize("key", [None, "k"], ids=["unsigned", "signed"])
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=50)
@given(env=envelopes)
def test_codec_round_trip(serializer: str, key: str | None, env: Envelope) -> None:
    codec = Codec(make_serializer(serializer, key), key)
    assert Envelope.from_dict(codec.decode(codec.encode(env.to_dict()))) == env


def test_to_dict_carries_the_format_version() -> None:
    """Plain messages stay version 1 (older workers read them); only a workflow step, which
    an older worker would run without its links, is version 2."""
    assert Envelope("i", "t").to_dict()["v"] == 1
    assert Envelope("i", "t", flow={"then": []}).to_dict()["v"] == FORMAT_VERSION == 2


def test_flow_round_trip_and_validation() -> None:
    flow = {"then": [{"task": "t2", "id": "x", "args": [], "kwargs": {}, "queue": "q",
                      "priority": 0}], "chord": {"id": "c", "n": 2, "cb": []}}
    env = Envelope("i", "t", [1], flow=flow)
    assert Envelope.from_dict(env.to_dict()) == env
    with pytest.raises(SerializationError, match="'flow' is not an object"):
        Envelope.from_dict({"v": 2, "id": "i", "task": "t", "flow": [1]})


def test_unknown_fields_are_ignored() -> None:
    data = Envelope("i", "t", [1]).to_dict() | {"trace_id": "abc", "links": [{"x": 1}]}
    assert Envelope.from_dict(data) == Envelope("i", "t", [1])


def test_missing_optional_fields_are_defaulted() -> None:
    env = Envelope.from_dict({"v": 1, "id": "i", "task": "t"})
    assert env == Envelope(id="i", task="t", args=[], kwargs={}, queue="default", priority=0,
                           created_at=0.0, expires_at=None, retries=None)


def test_stored_v1_fixture_decodes() -> None:
    codec = Codec(make_serializer("json", None))
    assert Envelope.from_dict(codec.decode(V1_MINIMAL_BODY)) == Envelope("0f3c9a", "shop.resize")
    assert Envelope.from_dict(codec.decode(V1_BODY_WITH_EXTRAS)) == Envelope(
        "7d1", "tasks.add", [1, 2], {"c": 3}, "math", 5, 1700000000.5, 1700000060.0, 2)


def test_stored_v1_fixture_decodes_in_msgpack_app() -> None:
    """A worker switched to msgpack still reads the JSON messages already queued."""
    codec = Codec(make_serializer("msgpack", None))
    assert Envelope.from_dict(codec.decode(V1_MINIMAL_BODY)).task == "shop.resize"


def test_newer_version_refused_with_upgrade_hint() -> None:
    data = {"v": 3, "id": "i", "task": "t"}
    with pytest.raises(SerializationError, match=r"version 3 .*upgrade conveyor on the workers"):
        Envelope.from_dict(data)


@pytest.mark.parametrize("data, words", [
    ([1, 2], "list, not an object"),
    ("text", "str, not an object"),
    (None, "NoneType, not an object"),
    (7, "int, not an object"),
    ({"id": "i", "task": "t"}, "no format version"),
    ({"v": "1", "id": "i", "task": "t"}, "no format version"),
    ({"v": True, "id": "i", "task": "t"}, "no format version"),
    ({"v": 0, "id": "i", "task": "t"}, "unknown message format version 0"),
    ({"v": -1, "id": "i", "task": "t"}, "unknown message format version -1"),
    ({"v": 1, "task": "t"}, "'id' is missing"),
    ({"v": 1, "id": "", "task": "t"}, "'id' is missing or not a string"),
    ({"v": 1, "id": "i"}, "'task' is missing"),
    ({"v": 1, "id": "i", "task": 5}, "'task' is missing or not a string"),
    ({"v": 1, "id": "i", "task": "t", "args": {"a": 1}}, "'args' is not a list"),
    ({"v": 1, "id": "i", "task": "t", "kwargs": [1]}, "'kwargs' is not an object"),
    ({"v": 1, "id": "i", "task": "t", "priority": "high"}, "priority.*not an integer"),
    ({"v": 1, "id": "i", "task": "t", "created_at": [1]}, "malformed message"),
    ({"v": 1, "id": "i", "task": "t", "expires_at": "soon"}, "malformed message"),
    ({"v": 1, "id": "i", "task": "t", "retries": "x"}, "retries.*not an integer"),
])
def test_malformed_messages_name_the_problem(data: Any, words: str) -> None:
    with pytest.raises(SerializationError, match=words):
        Envelope.from_dict(data)


# --- decoding never raises anything but SerializationError ------------------------------------
def decode_message(codec: Codec, body: bytes) -> None:
    try:
        Envelope.from_dict(codec.decode(body))
    except SerializationError:
        pass


CODECS = {
    "json": Codec(make_serializer("json", None)),
    "msgpack": Codec(make_serializer("msgpack", None)),
    "signed-json": Codec(make_serializer("json", "k"), "k"),
}


@pytest.mark.parametrize("codec_name", list(CODECS))
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=200)
       | st.tuples(st.sampled_from([b"J", b"M", b"P", b"S", b"X"]), st.binary(max_size=200))
       .map(lambda t: t[0] + t[1]))
@example(body=b"")
@example(body=b"J")
@example(body=b"M")
@example(body=b"P\x80\x04K\x01.")  # a valid pickle of 1: refused, never loaded
def test_fuzz_arbitrary_bytes(codec_name: str, body: bytes) -> None:
    decode_message(CODECS[codec_name], body)


FIELDS = ["v", "id", "task", "args", "kwargs", "queue", "priority", "created_at", "expires_at",
          "retries"]


@settings(max_examples=200, deadline=None)
@given(fields=st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=10),
       v=st.sampled_from([1, 0, -1, 2, None]))
def test_fuzz_json_objects(fields: dict[str, Any], v: int | None) -> None:
    """Messages that are valid JSON objects with arbitrary (finite) values in known fields."""
    if v is not None:
        fields["v"] = v
    body = b"J" + json.dumps(fields).encode()
    decode_message(CODECS["json"], body)


@pytest.mark.parametrize("body", [
    b'J{"v":1,"id":"a","task":"t","priority":1e999}',
    b'J{"v":1,"id":"a","task":"t","retries":1e999}',
    b'J{"v":1,"id":"a","task":"t","priority":-Infinity}',
], ids=["priority-1e999", "retries-1e999", "priority-Infinity"])
def test_non_finite_numbers_are_serialization_errors(body: bytes) -> None:
    decode_message(CODECS["json"], body)


def test_deeply_nested_json_is_a_serialization_error() -> None:
    depth = 5000
    decode_message(CODECS["json"], b"J" + b"[" * depth + b"]" * depth)
