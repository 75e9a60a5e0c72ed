"""The health report (playbooks/status.yml) on a provisioned host: read-only, its
figures are the server's, and its verdicts follow the article's thresholds."""
import json
import re

import pytest
from helpers import INVENTORY, REPO, changed_count, fill

pytestmark = pytest.mark.skipif(not INVENTORY, reason="needs a molecule scenario's inventory")
STATUS = REPO / "playbooks" / "status.yml"


def report(host, play, tmp_path):
    """Run the report on the host; (output, its JSON for this host by instance name)."""
    path = tmp_path / "status.json"
    rc, out = play("-e", "redis_status_json=%s" % path, path=STATUS)
    assert rc == 0, out[-3000:]
    assert changed_count(out) == 0, out[-3000:]
    data = json.loads(path.read_text())[host.backend.get_hostname()]
    return out, {h["name"]: h for h in data}


def test_report_is_read_only_and_its_hit_rate_is_the_servers(host, redis, play, tmp_path):
    redis.run("cache", "SET", "status:hit", "1", user="default")
    for key in ("status:hit", "status:hit", "status:miss"):
        redis.run("cache", "GET", key, user="default")
    stats = redis.info("cache", "stats")
    hits, misses = int(stats["keyspace_hits"]), int(stats["keyspace_misses"])
    out, health = report(host, play, tmp_path)
    assert health["cache"]["keyspace_hits"] == hits and health["cache"]["keyspace_misses"] == misses
    assert health["cache"]["hit_rate"] == round(hits / (hits + misses), 4)
    assert "hit rate %.1f%%" % (100 * hits / (hits + misses)) in out
    assert health["queue"]["engine"] == redis.info("queue", "server").get("server_name", "redis")
    for secret in redis.credentials.values():
        assert secret not in out
    assert "msg: |-" in out, "the report must be one literal block, never folded by the callback"


def test_queue_above_80_percent_of_maxmemory_warns(host, redis, play, tmp_path):
    original = redis.config("queue", "maxmemory")
    report_text = fill(host, redis, "queue", "status:fill", count=2000, size=1000)
    assert "errors: 0" in report_text, report_text
    used = int(redis.info("queue", "memory")["used_memory"])
    redis.run("queue", "CONFIG", "SET", "maxmemory", str(int(used / 0.85)))
    try:
        out, health = report(host, play, tmp_path)
        assert health["queue"]["memory_ratio"] > 0.8
        assert re.search(r"WARN queue uses 8\d% of its maxmemory", out), out[-2000:]
    finally:
        redis.run("queue", "CONFIG", "SET", "maxmemory", original)
        redis.run("queue", "EVAL", "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end",
                  "0", "status:fill:*")
    _, health = report(host, play, tmp_path)
    assert not [v for v in health["queue"]["verdicts"] if v[0] != "OK"]


def test_a_stopped_instance_is_reported_down_without_failing_the_run(host, redis, play, tmp_path):
    unit = redis.instances["cache"]["service"]
    host.run_test("systemctl stop %s" % unit)
    try:
        out, health = report(host, play, tmp_path)
        assert not health["cache"]["up"] and health["queue"]["up"]
        assert "cache: DOWN" in out and re.search(r"CRIT cache is DOWN", out), out[-2000:]
    finally:
        host.run_test("systemctl start %s" % unit)
