"""The Prometheus exporters: one per instance, on loopback, logged in as the read-only
`monitor` user, serving the server's own figures."""
import re

import pytest
from helpers import INSTANCES

FETCH = "python3 -c \"import urllib.request,sys; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())\""


@pytest.fixture(scope="module")
def exporters(hostvars, instances):
    """name -> the instance's exporter record (service, port, env_file, ...)."""
    if not hostvars.get("redis_exporter", True):
        pytest.skip("redis_exporter is off on this host")
    return {name: instances[name]["exporter"] for name in INSTANCES}


def metrics(host, port):
    out = host.run("%s http://127.0.0.1:%d/metrics" % (FETCH, port))
    assert out.rc == 0, out.stderr
    values = {}
    for line in out.stdout.splitlines():
        match = re.match(r"^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$", line)
        if match:
            values[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return values


@pytest.mark.parametrize("name", INSTANCES)
def test_exporter_runs_and_sees_its_instance_up(host, exporters, name):
    unit = exporters[name]["service"]
    assert host.service(unit).is_running and host.service(unit).is_enabled
    values = metrics(host, exporters[name]["port"])
    assert values["redis_up"] == 1
    assert values["redis_memory_max_bytes"] > 0


def test_package_single_exporter_is_masked(host, exporters):
    assert host.run("systemctl is-enabled prometheus-redis-exporter.service").stdout.strip() == "masked"


def test_a_hit_and_a_miss_move_the_counters_by_one(host, redis, exporters):
    port = exporters["cache"]["port"]
    redis.run("cache", "SET", "metrics:hit", "1", user="default")
    before = metrics(host, port)
    redis.run("cache", "GET", "metrics:hit", user="default")
    redis.run("cache", "GET", "metrics:no-such-key", user="default")
    after = metrics(host, port)
    assert after["redis_keyspace_hits_total"] - before["redis_keyspace_hits_total"] == 1
    assert after["redis_keyspace_misses_total"] - before["redis_keyspace_misses_total"] == 1


def test_exporters_and_redis_listen_on_loopback_only(host, hostvars, exporters):
    if hostvars.get("redis_exporter_allow_from"):
        pytest.skip("the metrics are opened to a monitoring address on this host")
    listening = host.run("ss -Hltn").stdout.splitlines()
    for name in INSTANCES:
        port = exporters[name]["port"]
        local = [line.split()[3] for line in listening if line.split()[3].endswith(":%d" % port)]
        assert local and all(address.startswith("127.0.0.1:") for address in local), local


MONITOR_DENIED = [["GET", "k"], ["SET", "k", "v"], ["SCAN", "0"], ["KEYS", "*"], ["CONFIG", "SET", "maxmemory", "1"],
                  ["FLUSHALL"], ["DEL", "k"], ["ACL", "LIST"], ["SUBSCRIBE", "c"], ["EVAL", "return 1", "0"],
                  # CONFIG GET returns masterauth and requirepass in clear (issue 20).
                  ["CONFIG", "GET", "maxmemory"], ["CONFIG", "GET", "masterauth"]]
MONITOR_ALLOWED = [["INFO"], ["SLOWLOG", "GET"], ["SLOWLOG", "LEN"],
                   ["LATENCY", "LATEST"], ["CLIENT", "LIST"], ["PING"]]


@pytest.mark.parametrize("name", INSTANCES)
def test_monitor_user_reads_figures_but_no_key_and_changes_nothing(redis, exporters, name):
    for command in MONITOR_DENIED:
        dry = redis.run(name, "ACL", "DRYRUN", "monitor", *command, check=False)
        assert "no permissions" in dry or "NOPERM" in dry, (command, dry)
    for command in MONITOR_ALLOWED:
        assert redis.run(name, "ACL", "DRYRUN", "monitor", *command) == "OK", command


def test_monitor_password_stays_off_command_lines_and_in_root_only_files(host, credentials, exporters):
    assert credentials["monitor"] not in host.run("ps -eo args=").stdout
    for name in INSTANCES:
        for path in (exporters[name]["env_file"], exporters[name]["password_file"]):
            f = host.file(path)
            assert f.user == "root" and f.mode == 0o600, path
    log = host.run("journalctl -b --no-pager -u '*-exporter@*'").stdout
    assert credentials["monitor"] not in log
    assert "NOPERM" not in log and "no permissions" not in log, log[-2000:]
