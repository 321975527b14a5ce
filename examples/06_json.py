"""Step 6: arguments and results travel as JSON.

Tuples come back as lists and dict keys as strings; values JSON cannot hold are refused where
you call `delay`, and nothing is enqueued.

Needs a worker:  cd examples && conveyor worker tasks -c 5
"""

from datetime import datetime

from tasks import echo

from conveyor import SerializationError

print(f"echo.delay((1, 2)).get() -> {echo.delay((1, 2)).get(timeout=10)!r}")
print(f"echo.delay({{1: 'a'}}).get() -> {echo.delay({1: 'a'}).get(timeout=10)!r}")
try:
    echo.delay(datetime(2024, 1, 1))
except SerializationError as exc:
    print(f"echo.delay(datetime(...)) raised SerializationError: {exc}")
