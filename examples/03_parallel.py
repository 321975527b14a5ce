"""Step 3: ten one-second tasks on a worker with five processes finish in about two seconds.

Needs a worker:  cd examples && conveyor worker tasks -c 5
"""

import time

from tasks import nap

started = time.monotonic()
group = nap.map(range(10))  # ten tasks, enqueued in one backend call
values = group.get(timeout=30)
elapsed = time.monotonic() - started
pids = {v["pid"] for v in values}
print(f"10 one-second tasks finished in {elapsed:.1f}s on {len(pids)} worker processes")
