"""Step 1: enqueue a task with `delay` and wait for its value with `get`.

Needs a worker:  cd examples && conveyor worker tasks -c 5
"""

from tasks import add

result = add.delay(2, 3)  # returns at once; the task waits in the backend for a worker
print(f"add.delay(2, 3) -> task {result.id}")
print(f"result.get(timeout=10) -> {result.get(timeout=10)}")
print(f"result.state -> {result.state}")
