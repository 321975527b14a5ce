"""The SQL of the hot paths, formatted once per backend with the quoted schema name ({s}),
and the settlements as the parallel arrays `conveyor_settle_and_claim` takes.

Arrays go as binary parameters (`%b`): psycopg dumps a list of 16 strings in binary about
twice as fast as in text, which quotes each one. ENQUEUE_KEYED keeps `%s`, because
`enqueue_in` also runs it on other DB-API connections (psycopg2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..base import Ack, Bury, Release, Settlement

ENQUEUE_ONE = """
WITH ins AS (
    INSERT INTO {s}.conveyor_messages (id, queue, priority, state, ready_at, body, enqueued_at)
    VALUES (%s, %s, %s, CASE WHEN %s::float8 > %s::float8 THEN 2 ELSE 0 END, %s, %s, %s)
    ON CONFLICT (id) DO NOTHING
    RETURNING id, queue),
old AS (DELETE FROM {s}.conveyor_results r USING ins WHERE r.id = ins.id)
SELECT pg_notify(%s, queue) FROM ins
"""
ENQUEUE_MANY = """
WITH ins AS (
    INSERT INTO {s}.conveyor_messages (id, queue, priority, state, ready_at, body, enqueued_at)
    SELECT id, queue, priority, CASE WHEN ready_at > %b::float8 THEN 2 ELSE 0 END, ready_at,
           body, %b::float8
    FROM unnest(%b::text[], %b::text[], %b::integer[], %b::float8[], %b::bytea[])
         WITH ORDINALITY AS u(id, queue, priority, ready_at, body, n)
    ORDER BY n
    ON CONFLICT (id) DO NOTHING
    RETURNING id, queue),
old AS (DELETE FROM {s}.conveyor_results r USING ins WHERE r.id = ins.id)
SELECT pg_notify(%b, q.queue) FROM (SELECT DISTINCT queue FROM ins) q
"""
ENQUEUE_KEYED = """
SELECT {s}.conveyor_enqueue(%s::text[], %s::text[], %s::integer[], %s::float8[], %s::bytea[],
                            %s::text[], %s::float8[], %s::float8, %s::text)
"""
SETTLE_AND_CLAIM = """
SELECT * FROM {s}.conveyor_settle_and_claim(
    %b::text[], %b::text[], %b::text[], %b::text[], %b::bytea[], %b::float8[], %b::boolean[],
    %b::text[], %b::text, %b::float8, %b::float8, %b::integer, %b::text, %b::text, %b::text)
"""
EXTEND = """
WITH held AS (  -- locked in id order, as settles lock: the two never deadlock
    SELECT m.id FROM {s}.conveyor_messages m
    JOIN unnest(%b::text[], %b::text[]) AS l(id, token) ON m.id = l.id AND m.token = l.token
    ORDER BY m.id FOR UPDATE OF m)
UPDATE {s}.conveyor_messages m SET lease_until = %b, state = 1 FROM held
WHERE m.id = held.id
RETURNING m.token
"""
RESULTS = """
SELECT i.id, m.state, m.ready_at, m.delivery_count, m.token IS NOT NULL AND m.lease_until > %b,
       m.died_at, r.state, r.data, r.updated_at,
       CASE WHEN m.progress_token = m.token THEN m.progress END, m.progress_at
FROM unnest(%b::text[]) AS i(id)
LEFT JOIN {s}.conveyor_messages m ON m.id = i.id
LEFT JOIN {s}.conveyor_results r
       ON r.id = i.id AND r.expires_at > %b AND (m.id IS NULL OR m.state = 3)
WHERE m.id IS NOT NULL OR r.id IS NOT NULL
"""
NEXT_DUE = """
SELECT EXISTS (SELECT 1 FROM {s}.conveyor_messages WHERE state = 0 AND queue = ANY(%s::text[])),
       (SELECT min(ready_at) FROM {s}.conveyor_messages WHERE state = 2),
       (SELECT min(lease_until) FROM {s}.conveyor_messages WHERE state = 1)
"""
# After a CTE `gone` that deleted messages (id, dedup_key, dedup_retention): their dedup keys
# are kept for their retention (from the `%s` now) or freed at once. Used by purge and revoke.
RELEASE_GONE_KEYS = """kept AS (
    UPDATE {s}.conveyor_dedup d SET expires_at = %s + g.dedup_retention FROM gone g
    WHERE d.key = g.dedup_key AND d.message_id = g.id AND g.dedup_retention > 0),
freed AS (
    DELETE FROM {s}.conveyor_dedup d USING gone g
    WHERE d.key = g.dedup_key AND d.message_id = g.id AND g.dedup_retention <= 0)
"""

PURGE = """
WITH gone AS (
    DELETE FROM {s}.conveyor_messages
    WHERE state <> 3 AND (token IS NULL OR lease_until <= %s) AND (%s::text IS NULL OR queue = %s)
    RETURNING id, dedup_key, dedup_retention),
""" + RELEASE_GONE_KEYS + """SELECT count(*) FROM gone
"""


# Read-only listings for the Inspector (Backend.list_messages, list_results, task_record).
# `{queue}` is "" or "AND queue = %(queue)s". Each part walks the partial index of its state:
# a ready message is a row in state 0, or a due scheduled one or an expired lease that no
# claim has moved yet (states 2 and 1).
MESSAGE_COLUMNS = ("id, queue, body, priority, ready_at, delivery_count, enqueued_at, token, "
                   "lease_until, worker")
LIST_READY = """
SELECT * FROM (
    (SELECT {cols}, seq FROM {s}.conveyor_messages WHERE state = 0 {queue}
     ORDER BY priority DESC, seq LIMIT %(n)s)
    UNION ALL
    (SELECT {cols}, seq FROM {s}.conveyor_messages
     WHERE state = 2 AND ready_at <= %(now)s {queue})
    UNION ALL
    (SELECT {cols}, seq FROM {s}.conveyor_messages
     WHERE state = 1 AND lease_until <= %(now)s {queue})) ready
ORDER BY priority DESC, seq LIMIT %(limit)s OFFSET %(offset)s
"""
LIST_SCHEDULED = """
SELECT {cols} FROM {s}.conveyor_messages WHERE state = 2 AND ready_at > %(now)s {queue}
ORDER BY ready_at, seq LIMIT %(limit)s OFFSET %(offset)s
"""
LIST_RUNNING = """
SELECT {cols} FROM {s}.conveyor_messages WHERE state = 1 AND lease_until > %(now)s {queue}
ORDER BY lease_until, seq LIMIT %(limit)s OFFSET %(offset)s
"""
LIST_RESULTS = """
SELECT r.id, r.state, r.data, r.updated_at, r.expires_at FROM {s}.conveyor_results r
WHERE r.expires_at > %(now)s AND r.state = ANY(%(states)s::text[])
  AND NOT EXISTS (SELECT 1 FROM {s}.conveyor_messages m WHERE m.id = r.id)
ORDER BY r.expires_at DESC, r.id DESC LIMIT %(limit)s OFFSET %(offset)s
"""
TASK_RECORD = """
SELECT {cols}, m.state, m.reason, m.died_at, r.state, r.data, r.updated_at, r.expires_at
FROM (SELECT %(id)s::text AS id) i
LEFT JOIN {s}.conveyor_messages m ON m.id = i.id
LEFT JOIN {s}.conveyor_results r ON r.id = i.id AND r.expires_at > %(now)s
"""


def settlement_columns(settlements: Sequence[Settlement]) -> tuple[list[Any], ...]:
    """The settlements as the parallel arrays conveyor_settle_and_claim takes."""
    kinds: list[str] = []
    ids: list[str] = []
    tokens: list[str] = []
    texts: list[str | None] = []
    datas: list[bytes | None] = []
    nums: list[float] = []
    flags: list[bool] = []
    for s in settlements:
        ids.append(s.id)
        tokens.append(s.token)
        if isinstance(s, Ack):
            kinds.append("ack")
            texts.append(s.state)
            datas.append(s.data)
            nums.append(float(s.result_ttl))
            flags.append(True)
        elif isinstance(s, Release):
            kinds.append("release")
            texts.append(None)
            datas.append(s.body)
            nums.append(float(s.ready_at))
            flags.append(s.attempted)
        elif isinstance(s, Bury):
            kinds.append("bury")
            texts.append(s.reason)
            datas.append(s.data)
            nums.append(float(s.result_ttl))
            flags.append(True)
        else:
            raise TypeError(f"not a settlement: {s!r}")
    return kinds, ids, tokens, texts, datas, nums, flags
