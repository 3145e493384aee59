"""`make bench-cache`: PersistentLRU against diskcache's LRU, cachetools and an in-memory ceiling."""
