"""Job snapshots in Redis: a versioned cache in front of PostgreSQL and a pub/sub channel per job.

Writers race (the API fills the cache on a miss while a worker moves the job on), so a snapshot is only
stored if its version is newer than the cached one: the compare-and-set runs atomically in Lua.
"""

from __future__ import annotations

from services.common.jobs import TERMINAL, JobPublic
from services.common.settings import Settings

# KEYS[1] = cache key; ARGV = version, snapshot json, ttl seconds. Value layout: "<version>|<json>".
SET_IF_NEWER_LUA = """
local current = redis.call('GET', KEYS[1])
if current then
  local cached_version = tonumber(string.match(current, '^(%d+)|'))
  if cached_version and cached_version >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
"""

ACTIVE_TTL_SECONDS = 60
TERMINAL_TTL_SECONDS = 3600


def cache_key(settings: Settings, job_id: str) -> str:
    return settings.redis_key("job", job_id)


def events_channel(settings: Settings, job_id: str) -> str:
    # Pub/sub channels are server-wide (not per Redis DB), so they carry the key prefix too.
    return settings.redis_key("job-events", job_id)


def cache_args(job: JobPublic) -> tuple[int, str, int]:
    ttl = TERMINAL_TTL_SECONDS if job.status in TERMINAL else ACTIVE_TTL_SECONDS
    return job.version, job.model_dump_json(), ttl


def decode_cached(raw: bytes | str) -> JobPublic:
    text = raw.decode() if isinstance(raw, bytes) else raw
    _, _, payload = text.partition("|")
    return JobPublic.model_validate_json(payload)
