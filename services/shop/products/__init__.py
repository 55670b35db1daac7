"""The products service: the catalog (with a Redis cache that degrades to stale data) and stock reservations."""
