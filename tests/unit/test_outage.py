"""A backend outage is logged once when it starts and once when it ends, with backoff."""

from __future__ import annotations

import logging

import pytest

from conveyor.worker.outage import BACKOFF_FIRST, BACKOFF_MAX, Outage


def test_an_outage_is_logged_once_then_its_end(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.outage")
    outage = Outage("claiming", log, remind_every=3600)
    with caplog.at_level(logging.INFO, logger="test.outage"):
        delays = [outage.failed(ConnectionError("refused")) for _ in range(10)]
        assert outage.active
        outage.ok()
        outage.ok()  # nothing more to say
    assert delays[0] == BACKOFF_FIRST
    assert delays == sorted(delays) and delays[-1] == BACKOFF_MAX
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "claiming failed: refused" in lines[0]
    assert "works again" in lines[1] and "10 failed tries" in lines[1]
    assert not outage.active
    assert outage.failed(ConnectionError("again")) == BACKOFF_FIRST  # backoff starts over


def test_a_long_outage_is_reminded(caplog: pytest.LogCaptureFixture) -> None:
    outage = Outage("extending leases", logging.getLogger("test.outage"), remind_every=0)
    with caplog.at_level(logging.INFO, logger="test.outage"):
        outage.failed(OSError("down"))
        outage.failed(OSError("down"))
    assert "still failing" in caplog.records[-1].getMessage()
