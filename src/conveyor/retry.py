"""How long to wait before the next attempt: fixed, exponential backoff, jitter, a cap."""

from __future__ import annotations

import random
from dataclasses import dataclass

# Raising `Retry` in a task whose `retries` is 0 still gets this many retries (Celery's
# default max_retries), so an explicit retry is never silently a failure.
EXPLICIT_RETRY_BUDGET = 3
# Deliveries lost without anyone seeing the worker die (the whole worker SIGKILLed) are run
# again; past this many such losses beyond the task's retries the message is dead-lettered.
LOST_DELIVERY_GRACE = 3


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int = 0
    delay: float = 1.0
    backoff: bool | float = False
    backoff_max: float = 600.0
    jitter: bool = False

    def delay_for(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1 = the first run)."""
        delay = self.delay
        if self.backoff:
            factor = 2.0 if self.backoff is True else float(self.backoff)
            try:
                delay = min(self.delay * factor ** max(0, attempt - 1), self.backoff_max)
            except OverflowError:
                delay = self.backoff_max
        if self.jitter:
            # "Equal jitter": keeps at least half the delay, spreads the rest.
            delay = delay / 2 + (rng or random).uniform(0, delay / 2)
        return max(0.0, delay)
