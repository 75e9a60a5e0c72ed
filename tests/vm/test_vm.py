"""What only a real kernel shows, on the 1 GB VM (tools/vm test runs these twice,
REDIS_VPS_PHASE=before, then after a reboot)."""
import json
import os
import pathlib
import re
import shlex

import pytest
from helpers import INSTANCES, fill, php_session, session_command

PHASE = os.environ.get("REDIS_VPS_PHASE", "before")
STATE = pathlib.Path(os.environ.get("REDIS_VPS_VM_STATE", "/tmp/redis-vps-vm-state.json"))
FIGURES = pathlib.Path(os.environ.get("REDIS_VPS_VM_FIGURES", "/tmp/redis-vps-vm-figures.txt"))
before_reboot = pytest.mark.skipif(PHASE != "before", reason="before the reboot only")
after_reboot = pytest.mark.skipif(PHASE != "after", reason="after the reboot only")
KERNEL_WARNINGS = ("overcommit_memory", "Memory overcommit must be enabled", "Transparent Huge Pages",
                   "TCP backlog setting")


def test_kernel_tuning_is_in_force(host):
    assert host.sysctl("vm.overcommit_memory") == 1
    assert host.sysctl("net.core.somaxconn") >= 511
    for knob in ("enabled", "defrag"):
        assert "[never]" in host.file("/sys/kernel/mm/transparent_hugepage/" + knob).content_string


@pytest.mark.parametrize("name", INSTANCES)
def test_redis_started_without_kernel_warnings(host, instances, name):
    log = host.file(instances[name]["config"]["logfile"]).content_string
    last_start = re.split(r"(?:Redis|Valkey) is starting", log)[-1]
    assert "Ready to accept connections" in last_start
    for warning in KERNEL_WARNINGS:
        assert warning not in last_start, warning


@before_reboot
def test_write_data_that_must_survive_a_reboot(host, redis):
    redis.run("queue", "SET", "reboot:queue", "kept", user="default")
    redis.run("cache", "SET", "reboot:cache", "dropped", user="default")
    cookie, count = vm_session(host)
    STATE.write_text(json.dumps({"cookie": cookie, "count": count}))


@after_reboot
def test_data_after_the_reboot(host, redis, instances):
    for name in INSTANCES:
        assert host.service(instances[name]["service"]).is_enabled
        assert host.service(instances[name]["service"]).is_running
    assert redis.run("queue", "GET", "reboot:queue", user="default") == "kept"
    assert redis.run("cache", "DBSIZE") == "0", "the cache must come back empty"
    saved = json.loads(STATE.read_text())
    _, count = vm_session(host, saved["cookie"])
    assert count == saved["count"] + 1, "the PHP session did not survive the reboot"


@before_reboot
def test_memory_pressure_on_one_gigabyte(host, redis):
    """Cache full, queue near full, an AOF rewrite under a burst of PHP requests: no OOM kill."""
    cache_max = int(redis.config("cache", "maxmemory"))
    queue_max = int(redis.config("queue", "maxmemory"))
    for instance, size, count in (("cache", 100_000, cache_max * 12 // 10 // 100_000),
                                  ("queue", 10_000, queue_max * 8 // 10 // 10_000)):
        report = fill(host, redis, instance, "fill:" + instance, count=count, size=size)
        assert "errors: 0" in report, report
    assert int(redis.info("cache", "stats")["evicted_keys"]) > 0
    host.run_test("dmesg --clear || true")
    php = php_burst_command(host, 300)
    burst = host.run("( %s > /tmp/burst.out 2>&1 & ) ; echo started" % php)
    assert burst.rc == 0
    redis.run("queue", "BGREWRITEAOF")
    host.run_test("for i in $(seq 1 600); do %s INFO persistence | grep -q 'aof_rewrite_in_progress:0' "
                  "&& break; sleep 0.5; done" % redis.cli("queue", "admin", redis.credentials["admin"]))
    host.run_test("for i in $(seq 1 600); do pgrep -f '[f]cgi_request.py' >/dev/null || break; sleep 0.5; done")
    kernel = host.run("dmesg").stdout + host.run("journalctl -k -b --no-pager").stdout
    assert not re.search(r"Out of memory|oom-kill|Killed process", kernel), kernel[-2000:]
    for name in INSTANCES:
        assert redis.run(name, "PING", user="default") == "PONG"
    assert "Traceback" not in host.file("/tmp/burst.out").content_string
    rss = host.run("ps -eo rss=,comm=,args= | grep -E '(redis|valkey)-server|php-fpm' | grep -v grep").stdout
    used = {name: redis.info(name, "memory")["used_memory_human"] for name in INSTANCES}
    with FIGURES.open("a") as figures:
        figures.write("used_memory: %s\nRSS (kB) after the fill and the AOF rewrite:\n%s\n%s"
                      % (used, rss, host.run("free -m").stdout))


def vm_session(host, cookie=""):
    return php_session(host, "/var/www/vm", cookie)


def php_burst_command(host, requests):
    cookie, _ = vm_session(host)
    return "%s %s %d" % (session_command(host, "/var/www/vm"), shlex.quote(cookie), requests)
