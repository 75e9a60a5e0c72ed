"""The memory plan under faults (issue 20): an HA primary's replication buffers sized from the
queue and counted; the health report's word on a binary that a package upgrade replaced."""
import pytest
from ansible_collections.redis_vps.server.plugins.filter import redis_health
from ansible_collections.redis_vps.server.plugins.filter.redis_plan import (redis_bytes, redis_memory_budget, redis_memory_plan,
                                                                   redis_replication_plan)

MB = 1024 * 1024


def test_replication_buffers_follow_the_queue_and_are_counted_per_replica():
    plan = redis_replication_plan("120mb", 2)
    assert plan["repl-backlog-size"] == str(15 * MB)
    assert plan["client-output-buffer-limit"] == "normal 0 0 0 slave %d %d 60 pubsub 33554432 8388608 60" % (30 * MB, 15 * MB)
    assert plan["bytes"] == 15 * MB + 2 * 30 * MB
    assert redis_replication_plan("120mb", 4)["bytes"] == 15 * MB + 4 * 30 * MB
    small = redis_replication_plan("4mb", 2)             # floors: a backlog of 1 MB, 8 MB per replica
    assert small["repl-backlog-size"] == str(MB) and small["bytes"] == MB + 2 * 8 * MB


@pytest.mark.parametrize("host_mb", [960, 1024, 2048, 4096])
def test_the_default_plan_with_three_ha_hosts_fits_the_budget(host_mb):
    plan = redis_memory_plan(host_mb)
    cache, queue = redis_bytes(plan["cache"]), redis_bytes(plan["queue"])
    total = cache + 2 * queue + redis_replication_plan(plan["queue"], 2)["bytes"]
    assert total <= redis_memory_budget(host_mb)
    # On 1 GB the whole worst case stays under two thirds of the RAM.
    assert total <= host_mb * MB * 2 // 3


def test_a_queue_that_fits_alone_can_be_refused_in_ha():
    host_mb = 1024
    cache, queue = redis_bytes("200mb"), redis_bytes("270mb")
    assert cache + 2 * queue <= redis_memory_budget(host_mb)
    assert cache + 2 * queue + redis_replication_plan("270mb", 2)["bytes"] > redis_memory_budget(host_mb)


def health_of(restart_required, name="queue", persistent=True):
    record = {"name": name, "config": {"appendonly": "yes" if persistent else "no", "save": ""}}
    info = {"role": "master", "server_name": "redis", "redis_version": "8.0.2", "rdb_last_bgsave_status": "ok",
            "aof_last_write_status": "ok", "aof_last_bgrewrite_status": "ok", "aof_enabled": "1" if persistent else "0"}
    return redis_health.redis_health({"item": record, "info": info, "restart_required": restart_required}, now=100)


def test_the_health_report_says_which_instance_runs_a_replaced_binary_and_what_to_do():
    queue = health_of(["upgraded"])
    assert queue["binary_replaced"]
    assert any(level == "WARN" and "package upgrade replaced" in text and "quiet time" in text
               for level, text in queue["verdicts"])
    cache = health_of(["upgraded"], name="cache", persistent=False)
    assert any("systemctl restart redis-server@cache" in text for _, text in cache["verdicts"])
    assert not health_of([])["binary_replaced"]
    assert not any("package upgrade" in text for _, text in health_of(["maxclients"])["verdicts"])
