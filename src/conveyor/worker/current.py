"""The task a process-pool child is running, in a small block of shared memory.

The supervisor needs it only when the child dies (to settle the task as `worker lost`), so a
child writes it at every task start without waking the supervisor: a pipe message per task
costs more than many no-op tasks. A record is `length, crc32, JSON`; a record torn by a child
killed mid-write fails its checksum and reads as unknown (the lease then brings the task back).
The last byte says whether the recorded task still runs, so the supervisor's revocation watch
(control.py) asks the backend only about tasks that run.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

SIZE = 4096
_HEADER = struct.Struct("<II")
_RUNNING = SIZE - 1  # a flag byte: 1 from a task's start to its end (the revocation watch)


class CurrentTask:
    """One child's record; `buffer` is a `multiprocessing.RawArray("B", SIZE)`."""

    def __init__(self, buffer: Any) -> None:
        self.buffer = buffer
        self.view = memoryview(buffer).cast("B")

    def write(self, record: tuple[str, str, str, int, int]) -> bool:
        """Store (id, token, task name, attempt, retries); False when it does not fit."""
        data = json.dumps(record, separators=(",", ":")).encode()
        if len(data) > _RUNNING - _HEADER.size:
            self.clear()
            return False
        self.view[_HEADER.size:_HEADER.size + len(data)] = data
        self.view[:_HEADER.size] = _HEADER.pack(len(data), zlib.crc32(data))
        self.view[_RUNNING] = 1
        return True

    def clear(self) -> None:
        self.view[_RUNNING] = 0
        self.view[:_HEADER.size] = _HEADER.pack(0, 0)

    def done(self) -> None:
        """The task of the record finished (the record stays: see `read`)."""
        self.view[_RUNNING] = 0

    def running(self) -> tuple[str, str, str, int, int] | None:
        """The record while its task runs, else None."""
        return self.read() if self.view[_RUNNING] == 1 else None

    def read(self) -> tuple[str, str, str, int, int] | None:
        length, crc = _HEADER.unpack(self.view[:_HEADER.size])
        if not 0 < length <= SIZE - _HEADER.size:
            return None
        data = bytes(self.view[_HEADER.size:_HEADER.size + length])
        if zlib.crc32(data) != crc:
            return None
        try:
            mid, token, task, attempt, retries = json.loads(data)
        except (ValueError, TypeError):
            return None
        return str(mid), str(token), str(task), int(attempt), int(retries)
