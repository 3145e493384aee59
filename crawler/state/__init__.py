"""The crawl state: one protocol, two backends (DESIGN.md, "Scale path"); nothing else in the
crawler speaks SQL.

- `CrawlState` (sqlite.py): one process owns a SQLite file; URLs are leased one by one.
- `SharedState` (shared.py) with `SqliteShared` (shared_sqlite.py) and `PgShared` (shared_pg.py):
  any number of workers share one crawl; they lease hosts, not URLs.
"""

from crawler.state.shared import HostLease, HostUpdate, SharedState, is_postgres_url, open_shared
from crawler.state.sqlite import MIGRATIONS, CrawlState, Final, Lease

__all__ = ["MIGRATIONS", "CrawlState", "Final", "HostLease", "HostUpdate", "Lease", "SharedState",
           "is_postgres_url", "open_shared"]
