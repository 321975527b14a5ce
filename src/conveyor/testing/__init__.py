"""Helpers for testing code that uses conveyor, and for testing a backend.

`FakeClock` is re-exported here. `BackendConformance` (the one suite every backend passes) is
loaded only when asked for, so importing `conveyor.testing` never imports pytest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..clock import FakeClock

if TYPE_CHECKING:
    from .conformance import BackendConformance

__all__ = ["BackendConformance", "FakeClock"]


def __getattr__(name: str) -> object:
    if name == "BackendConformance":
        from .conformance import BackendConformance

        return BackendConformance
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
