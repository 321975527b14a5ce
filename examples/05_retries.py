"""Step 5: a task that fails twice succeeds on its third attempt: retries.

`flaky` raises ConnectionError twice; it is declared with retries=3 and
retry_on=(ConnectionError,), so the worker runs it again (after retry_delay) until it succeeds.
A task that runs out of retries goes to the dead letters; list them from this directory
with `conveyor dead tasks list`.

Needs a worker:  cd examples && conveyor worker tasks -c 5
"""

from tasks import flaky

print(f"flaky.delay('https://example.com').get() -> "
      f"{flaky.delay('https://example.com').get(timeout=30)!r}")
