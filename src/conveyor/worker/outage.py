"""Backend outages as a worker lives through them: back off, log once, say when it is over.

A Redis or PostgreSQL restart makes every backend call fail for a while. The worker keeps
going (claims stop, leases may lapse, nothing is lost: unfinished tasks run again after their
lease), but a line per failed call would bury the log, so each loop that talks to the backend
keeps one `Outage`: the first failure is logged with its cause, then a reminder every
`remind_every` seconds, then one line when the backend answers again.
"""

from __future__ import annotations

import logging
import time

BACKOFF_FIRST = 0.05
BACKOFF_MAX = 2.0


class Outage:
    """Failure bookkeeping of one loop: `failed(exc)` returns how long to wait before the next
    try (exponential, capped); `ok()` ends the outage."""

    def __init__(self, what: str, log: logging.Logger, remind_every: float = 30.0) -> None:
        self.what = what
        self.log = log
        self.remind_every = remind_every
        self.since: float | None = None
        self.failures = 0
        self._next_reminder = 0.0
        self._delay = BACKOFF_FIRST

    @property
    def active(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException) -> float:
        now = time.monotonic()
        self.failures += 1
        if self.since is None:
            self.since = now
            self._next_reminder = now + self.remind_every
            self.log.error("%s failed: %s; retrying with backoff", self.what, exc)
        elif now >= self._next_reminder:
            self._next_reminder = now + self.remind_every
            self.log.error("%s still failing after %.0fs (%d tries): %s", self.what,
                           now - self.since, self.failures, exc)
        delay = self._delay
        self._delay = min(self._delay * 2, BACKOFF_MAX)
        return delay

    def ok(self) -> None:
        if self.since is not None:
            self.log.warning("%s works again after %.1fs (%d failed tries)", self.what,
                             time.monotonic() - self.since, self.failures)
        self.since = None
        self.failures = 0
        self._delay = BACKOFF_FIRST
