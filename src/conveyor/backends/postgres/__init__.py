"""postgresql:// (and postgres://): the PostgreSQL backend.

`backend.PostgresBackend` is the Backend; `schema.sql` is the schema from scratch and
`migrations/` the versioned upgrades to it; `connections` holds the URL parsing and the
per-process pool; `notify` the LISTEN/NOTIFY wake-ups. Importing this package needs nothing
beyond the standard library; psycopg is needed once a backend is made.
"""

__all__ = ["PostgresBackend"]


def __getattr__(name: str) -> object:
    if name == "PostgresBackend":
        from .backend import PostgresBackend

        return PostgresBackend
    raise AttributeError(name)
