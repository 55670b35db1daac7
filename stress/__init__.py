"""The final challenge's six stress tests against the local job platform: `./platform stress` (docs/stress.md).

Every scenario runs real processes (the API, the workers, fauxqs, PostgreSQL and Redis servers of its own where
it breaks them) with throwaway databases, key prefixes, storage and proxies, so nothing shared is harmed."""
