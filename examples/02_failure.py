"""Step 2: a failing task re-raises here, with the worker's traceback.

`get()` raises TaskFailed carrying the remote error's type, message and traceback text.

Needs a worker:  cd examples && conveyor worker tasks -c 5
"""

from tasks import divide

from conveyor import TaskFailed

result = divide.delay(1, 0)
try:
    result.get(timeout=10)
except TaskFailed as exc:
    print(f"divide.delay(1, 0).get() raised TaskFailed: {exc.exc_type}: {exc.exc_message}")
    print("remote traceback (from the worker):")
    print("    " + exc.traceback.rstrip().replace("\n", "\n    "))
print(f"result.state -> {result.state}")
