"""The conveyor app the benchmark runs: one no-op task whose result is stored.

The backend URL comes from CONVEYOR_URL, which bench/cases.py sets to a fresh file per run.
"""

from conveyor import Conveyor

app = Conveyor()


@app.task(name="bench.noop")
def noop() -> None:
    """Does nothing; its (None) result is still stored, as for any task."""
