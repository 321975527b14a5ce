"""The conformance suite on postgresql://, a schema of its own per test (dropped afterwards).

Skipped locally when PostgreSQL is not reachable, a failure under CI (see tests/servers.py).
PostgreSQL-only behaviour is in tests/integration/test_postgres_backend.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conveyor.backends.base import Backend
from conveyor.testing.conformance import BackendConformance
from servers import fresh_postgres_url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from fresh_postgres_url()


class TestPostgresBackend(BackendConformance):
    @pytest.fixture
    def backend(self, postgres_url: str) -> Iterator[Backend]:
        from conveyor.backends.postgres.backend import PostgresBackend

        b = PostgresBackend(postgres_url)
        try:
            yield b
        finally:
            b.close()
