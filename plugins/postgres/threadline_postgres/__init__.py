"""threadline-postgres: the threadline store contract on PostgreSQL (asyncpg, pooled).

``threadline.connect("postgresql://user@host/db?max_size=20")`` opens it; see the
README for the URL options, the schema and how NUL characters are stored.
"""

from threadline_postgres.config import OPTIONS, PostgresConfig, parse_config
from threadline_postgres.store import PostgresStore

__all__ = ["OPTIONS", "PostgresConfig", "PostgresStore", "parse_config"]
