"""conveyor: a background task queue for Python. Embedded SQLite by default; Redis or
PostgreSQL when you grow. See API.md for the contract these names keep."""

from .app import Conveyor
from .backends.base import (
    FAILURE,
    PENDING,
    PROGRESS,
    RETRY,
    REVOKED,
    SCHEDULED,
    STARTED,
    SUCCESS,
)
from .canvas import Signature, chain, chord, group
from .clock import Clock, FakeClock, SystemClock
from .errors import (
    BackendUnavailable,
    ConfigError,
    ConveyorError,
    Reject,
    Retry,
    SerializationError,
    TaskFailed,
    TaskRevoked,
    TaskTimeout,
    TimeoutError,
    WorkerLost,
)
from .middleware import EnqueueCall, ExecuteCall, Middleware
from .periodic import crontab
from .result import Result, ResultGroup
from .task import Task, TaskContext

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailable",
    "Clock",
    "ConfigError",
    "Conveyor",
    "ConveyorError",
    "EnqueueCall",
    "ExecuteCall",
    "FAILURE",
    "FakeClock",
    "Middleware",
    "PENDING",
    "PROGRESS",
    "REVOKED",
    "RETRY",
    "Reject",
    "Result",
    "ResultGroup",
    "Retry",
    "SCHEDULED",
    "STARTED",
    "SUCCESS",
    "Signature",
    "SerializationError",
    "SystemClock",
    "Task",
    "TaskContext",
    "TaskFailed",
    "TaskRevoked",
    "TaskTimeout",
    "TimeoutError",
    "WorkerLost",
    "__version__",
    "chain",
    "chord",
    "crontab",
    "group",
]
