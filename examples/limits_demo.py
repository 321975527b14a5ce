"""Task limits, start to finish: start a worker (`-c 4`) on a fresh SQLite file, show a rate
limit, a concurrency limit per customer and a soft timeout at work, then stop the worker.

    python examples/limits_demo.py

Exit code 0 when everything behaved as docs/limits.md says.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent


def overlap(spans: list[list[float]]) -> int:
    """The most spans running at one moment."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="conveyor-limits-"))
    os.environ["CONVEYOR_URL"] = f"sqlite:///{tmp / 'limits.db'}"
    sys.path.insert(0, str(EXAMPLES))
    from limits_tasks import app, call_partner_api, export, rebuild_report, transcode

    from conveyor.inspect import Inspector

    log = (tmp / "worker.log").open("wb")
    worker = subprocess.Popen([sys.executable, "-m", "conveyor", "worker", "limits_tasks",
                               "-c", "4"], cwd=EXAMPLES, stdout=log, stderr=subprocess.STDOUT)
    ok = True
    try:
        deadline = time.monotonic() + 30
        while not Inspector(app).workers():
            if worker.poll() is not None or time.monotonic() > deadline:
                print(f"the worker did not start; see {log.name}")
                return 1
            time.sleep(0.05)

        print("15 x call_partner_api (rate_limit='5/s'):")
        time.sleep(1.1 - time.time() % 1)  # start early in a second: the count below is
        t0 = time.time()                   # per clock second, as the windows are
        ran = call_partner_api.map([(i,) for i in range(15)]).get(timeout=30)
        per_second = collections.Counter(int(t) for t in ran)
        print(f"  took {max(ran) - t0:.1f}s; starts per second: {sorted(per_second.values())}")
        ok &= max(per_second.values()) <= 5

        print("4 x transcode (concurrency=2):")
        spans = transcode.map([(i,) for i in range(4)]).get(timeout=30)
        print(f"  at most {overlap(spans)} at once")
        ok &= overlap(spans) <= 2

        print("3 reports each for acme and globex (concurrency=1 per customer):")
        calls = [(c, p) for p in range(3) for c in ("acme", "globex")]
        spans = rebuild_report.map(calls).get(timeout=30)
        by = {c: [s for (cc, _), s in zip(calls, spans, strict=True) if cc == c]
              for c in ("acme", "globex")}
        print(f"  at once per customer: acme {overlap(by['acme'])}, globex "
              f"{overlap(by['globex'])}; both customers together: {overlap(spans)}")
        ok &= overlap(by["acme"]) == 1 and overlap(by["globex"]) == 1

        print("export(100000) with soft_timeout=1.0:")
        message = export.delay(100_000).get(timeout=30)
        print(f"  {message}")
        ok &= message.startswith("partial export")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        log.close()
    print("OK" if ok else "NOT OK")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
