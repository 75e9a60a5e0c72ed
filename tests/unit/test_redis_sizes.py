import pytest
from ansible.errors import AnsibleFilterError
from redis_sizes import redis_bytes, redis_memory_budget, redis_memory_plan


@pytest.mark.parametrize("text, expected", [
    ("268435456", 268435456), (268435456, 268435456),
    ("1k", 1000), ("1kb", 1024), ("256m", 256_000_000), ("256mb", 256 * 2 ** 20),
    ("1g", 10 ** 9), ("1GB", 2 ** 30), (" 64 mb ", 64 * 2 ** 20),
])
def test_sizes_use_redis_units(text, expected):
    assert redis_bytes(text) == expected


@pytest.mark.parametrize("bad", ["", "lots", "-1mb", "1.5gb", "256 MiB", "1tb", None, True, [], "0x10"])
def test_bad_sizes_are_refused_or_defaulted(bad):
    with pytest.raises(AnsibleFilterError, match="not a Redis size"):
        redis_bytes(bad)
    assert redis_bytes(bad, -1) == -1


@pytest.mark.parametrize("ram, cache, queue", [(960, "240mb", "120mb"), (1024, "256mb", "128mb"),
                                               (2000, "500mb", "250mb"), (4000, "1000mb", "500mb")])
def test_memory_plan(ram, cache, queue):
    assert redis_memory_plan(ram) == {"cache": cache, "queue": queue}


@pytest.mark.parametrize("ram", [512, 960, 1024, 2048, 3900, 4096])
def test_plan_fits_with_the_queue_fork_and_leaves_half_the_ram(ram):
    plan = {k: redis_bytes(v) for k, v in redis_memory_plan(ram).items()}
    worst_case = plan["cache"] + 2 * plan["queue"]
    assert worst_case <= ram * 2 ** 20 // 2
    assert worst_case <= redis_memory_budget(ram)
