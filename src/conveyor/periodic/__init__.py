"""Periodic tasks: `@app.periodic(cron | crontab(...) | every=...)`, run exactly once per tick
however many workers run the scheduler. See docs/periodic.md."""

from .entry import PeriodicEntry, parse_tick_id, periodic_decorator, tick_id
from .schedule import Cron, Every, Schedule, crontab
from .scheduler import Scheduler
from .status import PeriodicInfo, periodic_status

__all__ = ["Cron", "Every", "PeriodicEntry", "PeriodicInfo", "Schedule", "Scheduler", "crontab",
           "parse_tick_id", "periodic_decorator", "periodic_status", "tick_id"]
