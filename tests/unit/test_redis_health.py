import pytest
from ansible_collections.redis_vps.server.plugins.filter.redis_health import (doctor_verdict, human, redis_health,
                                                                     redis_health_lines)

NOW = 1_800_000_000
CACHE = {"name": "cache", "config": {"appendonly": "no", "save": "", "unixsocket": "/run/redis-cache/redis-server.sock"}}
QUEUE = {"name": "queue", "config": {"appendonly": "yes", "save": "3600 1", "unixsocket": "/run/redis-queue/redis-server.sock"}}


def info(**over):
    base = {
        "redis_version": "8.0.2", "uptime_in_seconds": "7200", "role": "master",
        "used_memory": str(100 * 2 ** 20), "maxmemory": str(200 * 2 ** 20), "used_memory_peak": str(120 * 2 ** 20),
        "mem_fragmentation_ratio": "1.10", "maxmemory_policy": "allkeys-lru", "evicted_keys": "0",
        "expired_keys": "3", "keyspace_hits": "9500", "keyspace_misses": "500", "connected_clients": "4",
        "blocked_clients": "1", "rejected_connections": "0", "instantaneous_ops_per_sec": "120",
        "db0": "keys=12,expires=2,avg_ttl=100", "db3": "keys=4,expires=4,avg_ttl=9", "aof_enabled": "0",
        "aof_last_write_status": "ok", "aof_last_bgrewrite_status": "ok", "aof_rewrite_in_progress": "0",
        "rdb_last_bgsave_status": "ok", "rdb_last_save_time": str(NOW - 600), "rdb_changes_since_last_save": "0",
    }
    base.update(over)
    return base


def health(record, **over):
    return redis_health({"item": record, "info": info(**over), "memory_doctor": "Sam, I can't find any memory issue",
                         "slowlog_len": 2, "applied": {}, "restart_required": []}, now=NOW)


def levels(h):
    return [(level, text.split(" ")[0]) for level, text in h["verdicts"]]


def test_figures_follow_info():
    h = health(CACHE)
    assert h["hit_rate"] == 0.95 and h["memory_ratio"] == 0.5
    assert h["keys"] == {"db0": 12, "db3": 4}
    assert (h["engine"], h["version"], h["rdb_last_save_age_seconds"]) == ("redis", "8.0.2", 600)
    assert h["memory_doctor"] == "no memory issue found"
    assert h["verdicts"] == [("OK", "cache hit rate 95.0% (at least 80%)")]


def test_valkey_reports_its_own_version():
    h = health(CACHE, server_name="valkey", redis_version="7.2.4", valkey_version="8.1.1")
    assert (h["engine"], h["version"]) == ("valkey", "8.1.1")


def test_low_cache_hit_rate_warns_only_with_enough_traffic():
    assert ("WARN", "cache") in levels(health(CACHE, keyspace_hits="700", keyspace_misses="300"))
    quiet = health(CACHE, keyspace_hits="7", keyspace_misses="3")
    assert [level for level, _ in quiet["verdicts"]] == ["OK"] and "not judged" in quiet["verdicts"][0][1]


def test_queue_memory_eviction_and_oom_verdicts():
    assert levels(health(QUEUE, aof_enabled="1")) == [("OK", "queue")]
    full = health(QUEUE, aof_enabled="1", used_memory=str(170 * 2 ** 20), evicted_keys="5",
                  errorstat_OOM="count=7")
    assert ("CRIT", "queue") in levels(full)
    texts = " ".join(text for _, text in full["verdicts"])
    assert "evicted 5 keys" in texts and "refused 7 writes with OOM" in texts and "uses 85% of its maxmemory" in texts


def test_cache_evicting_is_fine():
    assert levels(health(CACHE, evicted_keys="5000"))[0][0] == "OK"


def test_failed_persistence_is_critical():
    h = health(QUEUE, aof_enabled="1", rdb_last_bgsave_status="err", aof_last_write_status="err")
    assert [level for level, _ in h["verdicts"]] == ["CRIT", "CRIT"]


def test_a_down_instance_is_reported_not_raised():
    h = redis_health({"item": QUEUE, "running": False}, now=NOW)
    assert not h["up"] and h["verdicts"][0][0] == "CRIT" and "DOWN" in h["verdicts"][0][1]
    assert redis_health_lines(h)[0].startswith("queue: DOWN")


def test_drift_lists_what_a_rerun_would_change():
    h = redis_health({"item": CACHE, "info": info(), "applied": {"maxmemory": {}}, "restart_required": ["port"]}, now=NOW)
    assert h["drift"] == ["maxmemory", "port"]


def test_report_lines_are_short_and_complete():
    lines = redis_health_lines(health(QUEUE, aof_enabled="1"))
    assert all(len(line) <= 100 for line in lines), lines
    text = "\n".join(lines)
    for part in ("100.00M of 200.00M (50.0%)", "peak 120.00M", "fragmentation 1.10", "db0=12 db3=4",
                 "9500 hits, 500 misses, hit rate 95.0%", "4 connected, 1 blocked, 0 rejected; 120 ops/s",
                 "RDB last save ok, 10m ago; AOF on, last write ok", "2 entries"):
        assert part in text, part


@pytest.mark.parametrize("size, text", [(512, "512B"), (1536, "1.50K"), (100 * 2 ** 20, "100.00M"), (3 * 2 ** 30, "3.00G")])
def test_human_sizes(size, text):
    assert human(size) == text


def test_doctor_verdict_is_one_short_line():
    assert doctor_verdict("Hi Sam, this instance is empty or is using very little memory, my issues detector") \
        == "too little data to judge"
    long = doctor_verdict("Sam, I detected a few issues in this Redis instance memory implants:\n\n * High fragmentation")
    assert long.startswith("issues found:") and len(long) < 120


def test_metrics_line_and_a_stopped_exporter_warns():
    record = dict(QUEUE, exporter={"service": "redis-exporter@queue.service", "port": 9122})
    result = {"item": record, "info": info(aof_enabled="1"), "units": {"redis-exporter@queue.service": {"active": True}}}
    h = redis_health(result, now=NOW)
    assert h["metrics"] == "redis-exporter@queue.service on port 9122: running"
    assert redis_health_lines(h)[-1] == "  metrics      redis-exporter@queue.service on port 9122: running"
    result["units"] = {"redis-exporter@queue.service": {"active": False}}
    assert ("WARN", "queue's") in levels(redis_health(result, now=NOW))


def test_replication_of_a_primary_and_of_a_replica():
    primary = health(QUEUE, aof_enabled="1", connected_slaves="2",
                     slave0="ip=10.0.0.2,port=6380,state=online,offset=10,lag=0",
                     slave1="ip=10.0.0.3,port=6380,state=wait_bgsave,offset=0,lag=9")
    assert primary["replication"]["role"] == "primary" and len(primary["replication"]["replicas"]) == 2
    assert ("WARN", "queue:") in levels(primary)
    assert "primary of 10.0.0.2:6380 (online, 0 s behind), 10.0.0.3:6380 (wait_bgsave, 9 s behind)" in \
        "\n".join(redis_health_lines(primary))
    replica = health(QUEUE, aof_enabled="1", role="slave", master_host="10.0.0.1", master_port="6380",
                     master_link_status="down", master_last_io_seconds_ago="-1")
    assert replica["replication"] == {"role": "replica", "primary": "10.0.0.1:6380", "link": "down", "last_io_seconds": -1}
    assert ("CRIT", "queue:") in levels(replica)
    assert health(CACHE)["replication"] is None


QUEUE_WITH_BACKUP = dict(QUEUE, backup={"dir": "/var/backups/redis/queue", "status_file": "/var/backups/redis/queue/status.json"})


def backed_up(status):
    return redis_health({"item": QUEUE_WITH_BACKUP, "info": info(), "backup": status, "applied": {},
                         "restart_required": [], "slowlog_len": 0}, now=NOW)


def test_backup_age_and_offsite_copy_are_reported():
    h = backed_up({"last_success": NOW - 720, "last_snapshot": "queue-20270115T080000Z", "local_snapshots": 5,
                   "warn_after_seconds": 10800, "offsite_repository": "sftp:b@h:/r",
                   "offsite": {"snapshot": "1a2b3c4d", "last_success": NOW - 700}})
    assert h["backup"]["age_seconds"] == 720 and not h["backup"]["failed"]
    lines = redis_health_lines(h)
    assert "  backup       queue-20270115T080000Z, 12m ago, 5 kept in /var/backups/redis/queue" in lines
    assert "  off-site     sftp:b@h:/r: 1a2b3c4d, 11m ago" in lines
    assert [level for level, _ in h["verdicts"]] == ["OK"]


def test_an_old_or_failed_backup_is_a_verdict_and_none_yet_is_not():
    old = backed_up({"last_success": NOW - 4 * 3600, "last_snapshot": "q", "warn_after_seconds": 10800})
    assert ("WARN", "queue:") in levels(old) and "4h old" in old["verdicts"][0][1]
    failed = backed_up({"last_success": NOW - 3600, "last_failure": NOW - 60, "last_error": "BGSAVE: boom",
                        "warn_after_seconds": 10800})
    assert ("CRIT", "queue:") in levels(failed)
    assert any(line.startswith("  backup       LAST RUN FAILED (BGSAVE: boom)") for line in redis_health_lines(failed))
    none_yet = backed_up(None)
    assert none_yet["backup"]["age_seconds"] is None and [level for level, _ in none_yet["verdicts"]] == ["OK"]
    assert "  backup       none yet" in " ".join(redis_health_lines(none_yet))
    assert health(QUEUE)["backup"] is None and not [line for line in redis_health_lines(health(QUEUE)) if "backup" in line]
