"""Step 4: the results of `map` come back in the order they were enqueued.

`map` enqueues one task per argument in one backend call; `get()` returns the values in that
order, whichever task finished first.

Needs a worker:  cd examples && conveyor worker tasks -c 5
"""

from tasks import add, square

print(f"square.map(range(10)).get() -> {square.map(range(10)).get(timeout=30)}")
print(f"add.map([(1, 2), (3, 4)]).get() -> {add.map([(1, 2), (3, 4)]).get(timeout=30)}")
