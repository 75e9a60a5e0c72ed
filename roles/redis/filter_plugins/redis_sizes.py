"""Jinja filters for Redis memory sizes and the default memory plan.

Redis reads sizes with decimal and binary units: 1k = 1000, 1kb = 1024,
1m = 1000000, 1mb = 1048576, 1g = 10**9, 1gb = 2**30 (units case-insensitive).
Comparing with a running server is only sound in bytes, hence redis_bytes.
"""
import re

from ansible.errors import AnsibleFilterError

_SIZE = re.compile(r"^\s*(\d+)\s*(k|kb|m|mb|g|gb)?\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "k": 1000, "kb": 1024,
    "m": 1000 ** 2, "mb": 1024 ** 2,
    "g": 1000 ** 3, "gb": 1024 ** 3,
}
_NO_DEFAULT = object()

# The memory plan (docs in roles/redis/defaults/main.yml and README):
# the cache gets a quarter of the RAM, the queue an eighth; the queue's fork
# for BGSAVE / AOF rewrite may copy up to its whole dataset, so the worst case
# is 1/4 + 2 * 1/8 = half of the RAM, and the other half stays for the OS,
# PHP-FPM and the application.
PLAN_CACHE_PERCENT = 25
PLAN_QUEUE_PERCENT = 12.5
# Largest share of RAM that user-chosen sizes may take, counting the queue twice.
PLAN_LIMIT_PERCENT = 75


def redis_bytes(value, default=_NO_DEFAULT):
    """'256mb' -> 268435456. Invalid input raises, or returns `default` if given."""
    match = _SIZE.match(str(value)) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if not match:
        if default is not _NO_DEFAULT:
            return default
        raise AnsibleFilterError(
            "%r is not a Redis size (a whole number of bytes, or with a unit "
            "k, kb, m, mb, g, gb, for example 256mb)" % (value,))
    return int(match.group(1)) * _UNITS[(match.group(2) or "").lower()]


def redis_memory_plan(host_mb):
    """Default maxmemory of each instance for a host with `host_mb` MB of RAM."""
    host_mb = int(host_mb)
    return {
        "cache": "%dmb" % (host_mb * PLAN_CACHE_PERCENT // 100),
        "queue": "%dmb" % int(host_mb * PLAN_QUEUE_PERCENT // 100),
    }


def redis_memory_budget(host_mb):
    """Bytes that cache + 2 x queue may take on a host with `host_mb` MB."""
    return int(host_mb) * 1024 * 1024 * PLAN_LIMIT_PERCENT // 100


class FilterModule:
    def filters(self):
        return {
            "redis_bytes": redis_bytes,
            "redis_memory_plan": redis_memory_plan,
            "redis_memory_budget": redis_memory_budget,
        }
