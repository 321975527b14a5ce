"""Revocation on PostgreSQL (docs/control.md): one transaction per call. Waiting messages are
deleted and get their REVOKED result (waiting `get()`s are notified); running ones are marked
for their workers (`revoked` column: 1 revoked, 2 to be stopped; a mark never weakens)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..base import REVOKED
from .queries import RELEASE_GONE_KEYS

_LOCK = """
SELECT id, token IS NOT NULL AND lease_until > %s FROM {s}.conveyor_messages
WHERE id = ANY(%s::text[]) AND state <> 3 ORDER BY id FOR UPDATE
"""
_MARK = """
UPDATE {s}.conveyor_messages SET revoked = greatest(revoked, %s) WHERE id = ANY(%s::text[])
"""
_DROP = """
WITH gone AS (
    DELETE FROM {s}.conveyor_messages WHERE id = ANY(%s::text[])
    RETURNING id, dedup_key, dedup_retention),
""" + RELEASE_GONE_KEYS + """INSERT INTO {s}.conveyor_results (id, state, data, updated_at, expires_at)
SELECT id, %s, %s, %s, %s FROM gone
ON CONFLICT (id) DO UPDATE SET state = excluded.state, data = excluded.data,
    updated_at = excluded.updated_at, expires_at = excluded.expires_at
"""
NOTIFY_MAX = 7000  # bytes of ids in one notification; more wakes every waiter ("*")


def revoke_in(conn: Any, schema: str, ids: Sequence[str], now: float, terminate: bool,
              data: bytes, result_ttl: float, done_channel: str) -> dict[str, bool]:
    """Revoke `ids` on `conn` (autocommit); returns id -> True (marked: it was running) or
    False (dropped) for each message found."""
    with conn.transaction():
        # Locked in id order, as settles lock: the two never deadlock.
        found: dict[str, bool] = dict(conn.execute(_LOCK.format(s=schema),
                                                   (now, list(ids))).fetchall())
        running = [i for i, leased in found.items() if leased]
        waiting = [i for i, leased in found.items() if not leased]
        if running:
            conn.execute(_MARK.format(s=schema), (2 if terminate else 1, running))
        if waiting:
            conn.execute(_DROP.format(s=schema),
                         (waiting, now, REVOKED, data, now, now + result_ttl))
            payload = "\n".join(waiting)
            conn.execute("SELECT pg_notify(%s, %s)",
                         (done_channel, payload if len(payload) <= NOTIFY_MAX else "*"))
    return found


def outcomes(ids: Sequence[str], found: dict[str, bool]) -> list[bool]:
    """`revoke`'s answer per id; an id named twice is not there the second time if dropped."""
    out: list[bool] = []
    dropped: set[str] = set()
    for i in ids:
        out.append(i in found and i not in dropped)
        if i in found and not found[i]:
            dropped.add(i)
    return out
