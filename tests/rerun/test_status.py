"""The health report (playbooks/status.yml) on provisioned hosts: read-only, its
figures are the server's, and its verdicts follow the article's thresholds. Each
run reports on every host of the scenario at once."""
import json
import re

import pytest
from helpers import INVENTORY, REPO, changed_count, fill, playbook, settled_used_memory

pytestmark = [pytest.mark.skipif(not INVENTORY, reason="needs a molecule scenario's inventory"),
              pytest.mark.every_platform]   # the report on every platform
STATUS = REPO / "playbooks" / "status.yml"


def report(tmp_path):
    """Run the report on every host; (output, {host: {instance: health}})."""
    path = tmp_path / "status.json"
    # The output settings of the project's ansible.cfg (molecule writes its own).
    rc, out = playbook("-e", "redis_status_json=%s" % path, path=STATUS,
                       env={"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default", "ANSIBLE_CALLBACK_RESULT_FORMAT": "yaml"})
    assert rc == 0, out[-3000:]
    assert changed_count(out) == 0, out[-3000:]
    return out, {name: {h["name"]: h for h in data} for name, data in json.loads(path.read_text()).items()}


def name_of(host):
    return host.backend.get_hostname()


def test_report_is_read_only_and_its_hit_rate_is_the_servers(every_host, tmp_path):
    expected = {}
    for host, redis, _ in every_host:
        redis.run("cache", "SET", "status:hit", "1", user="default")
        for key in ("status:hit", "status:hit", "status:miss"):
            redis.run("cache", "GET", key, user="default")
        stats = redis.info("cache", "stats")
        expected[name_of(host)] = int(stats["keyspace_hits"]), int(stats["keyspace_misses"])
    out, health = report(tmp_path)
    for host, redis, _ in every_host:
        hits, misses = expected[name_of(host)]
        cache = health[name_of(host)]["cache"]
        assert (cache["keyspace_hits"], cache["keyspace_misses"]) == (hits, misses)
        assert cache["hit_rate"] == round(hits / (hits + misses), 4)
        assert "hit rate %.1f%%" % (100 * hits / (hits + misses)) in out
        assert health[name_of(host)]["queue"]["engine"] == redis.info("queue", "server").get("server_name", "redis")
        for secret in redis.credentials.values():
            assert secret not in out
    assert out.count("msg: |-") == len(every_host), "the report must be one literal block a host, never folded"


def test_queue_above_80_percent_of_maxmemory_warns(every_host, tmp_path):
    original = {}
    for host, redis, _ in every_host:
        original[name_of(host)] = redis.config("queue", "maxmemory")
        filled = fill(host, redis, "queue", "status:fill", count=2000, size=1000)
        assert "errors: 0" in filled, filled
        used = settled_used_memory(redis, "queue")
        redis.run("queue", "CONFIG", "SET", "maxmemory", str(int(used / 0.85)))
    try:
        out, health = report(tmp_path)
        for host, _, _ in every_host:
            assert health[name_of(host)]["queue"]["memory_ratio"] > 0.8
        assert len(re.findall(r"WARN queue uses 8\d% of its maxmemory", out)) == len(every_host), out[-3000:]
    finally:
        for host, redis, _ in every_host:
            redis.run("queue", "CONFIG", "SET", "maxmemory", original[name_of(host)])
            redis.run("queue", "EVAL", "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end",
                      "0", "status:fill:*")
    _, health = report(tmp_path)
    for host, _, _ in every_host:
        assert not [v for v in health[name_of(host)]["queue"]["verdicts"] if v[0] != "OK"]


def test_a_stopped_instance_is_reported_down_without_failing_the_run(every_host, tmp_path):
    for host, redis, _ in every_host:
        host.run_test("systemctl stop %s" % redis.instances["cache"]["service"])
    try:
        out, health = report(tmp_path)
        for host, _, _ in every_host:
            assert not health[name_of(host)]["cache"]["up"] and health[name_of(host)]["queue"]["up"]
        assert out.count("cache: DOWN") == len(every_host) and re.search(r"CRIT cache is DOWN", out), out[-2000:]
    finally:
        for host, redis, _ in every_host:
            host.run_test("systemctl start %s" % redis.instances["cache"]["service"])
